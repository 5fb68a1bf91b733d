//! Key-pair authentication: the JWT a Snowflake login presents instead of a password.
//!
//! Snowflake's recipe: an RS256 token whose issuer is `ACCOUNT.USER.SHA256:<fingerprint>` (the base64
//! SHA-256 of the public key's DER `SubjectPublicKeyInfo`, what `openssl rsa -pubout -outform DER |
//! openssl dgst -sha256 -binary | base64` prints and `DESCRIBE USER` shows as `RSA_PUBLIC_KEY_FP`),
//! subject `ACCOUNT.USER`, valid for at most an hour. Written on `ring`, which the TLS stack already
//! links: a JWT crate would add a second RSA implementation for these sixty lines.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// How long a token is valid: Snowflake accepts at most an hour.
const LIFETIME_SECS: i64 = 59 * 60;

/// An RSA private key and the fingerprint of its public key.
pub struct KeyPairAuth {
    key: RsaKeyPair,
    fingerprint: String,
}

impl std::fmt::Debug for KeyPairAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPairAuth({})", self.fingerprint)
    }
}

impl KeyPairAuth {
    /// Reads an unencrypted RSA private key in PEM (PKCS#8 `BEGIN PRIVATE KEY`, or PKCS#1 `BEGIN RSA
    /// PRIVATE KEY`). The error names the fix and never shows the key.
    pub fn from_pem(pem: &str) -> Result<KeyPairAuth, String> {
        if pem.contains("ENCRYPTED PRIVATE KEY") {
            return Err("the private key is encrypted; give it unencrypted (`openssl pkcs8 -topk8 -nocrypt -in key.p8 -out key.pem`) and keep it in a secret store".into());
        }
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
            format!("the private key is not a PEM RSA private key ({e}); Snowflake's key-pair authentication takes the PKCS#8 file `openssl genrsa 2048 | openssl pkcs8 -topk8 -nocrypt` writes")
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err("the private key is not an RSA key; Snowflake's key-pair authentication takes RSA keys of 2048 bits or more".into()),
        }
        .map_err(|e| format!("the RSA private key was rejected ({e}); use a key of 2048 bits or more"))?;
        let spki = subject_public_key_info(key.public().as_ref());
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Ok(KeyPairAuth {
            key,
            fingerprint: format!("SHA256:{}", STANDARD.encode(digest.as_ref())),
        })
    }

    /// `SHA256:<base64>`: the public key's fingerprint, as Snowflake shows it for the user.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A token for `user` of `account` issued at `now` (Unix seconds).
    pub fn token(&self, account: &str, user: &str, now: i64) -> Result<String, String> {
        let qualified = format!("{}.{}", account_name(account), user.to_uppercase());
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": format!("{qualified}.{}", self.fingerprint),
            "sub": qualified,
            "iat": now,
            "exp": now + LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the login token failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The account as the token and the login name it: upper case, without a region or cloud suffix
/// (`xy12345.us-east-2.aws` → `XY12345`); an organization's account name (`myorg-account1`) stays whole.
pub(super) fn account_name(account: &str) -> String {
    account.split('.').next().unwrap_or(account).to_uppercase()
}

/// The DER `SubjectPublicKeyInfo` of an RSA public key given as PKCS#1 `RSAPublicKey`:
/// `SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { key } }`.
fn subject_public_key_info(rsa_public_key: &[u8]) -> Vec<u8> {
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x00];
    bits.extend_from_slice(rsa_public_key);
    let mut body = RSA_ENCRYPTION.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// One DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// A throwaway 2048-bit key made for these tests (`openssl genrsa 2048 | openssl pkcs8 -topk8
    /// -nocrypt`); its fingerprint below is what `openssl rsa -pubout -outform DER | openssl dgst
    /// -sha256 -binary | base64` printed for it.
    const TEST_KEY: &str = include_str!("testdata/rsa_key.p8");
    const TEST_FINGERPRINT: &str = include_str!("testdata/rsa_key.fingerprint");

    #[test]
    fn the_fingerprint_is_openssls() {
        let auth = KeyPairAuth::from_pem(TEST_KEY).unwrap();
        assert_eq!(
            auth.fingerprint(),
            format!("SHA256:{}", TEST_FINGERPRINT.trim())
        );
    }

    #[test]
    fn the_token_names_account_and_user_and_verifies_with_the_public_key() {
        let auth = KeyPairAuth::from_pem(TEST_KEY).unwrap();
        let token = auth
            .token("xy12345.us-east-2.aws", "loader", 1_800_000_000)
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "XY12345.LOADER");
        assert_eq!(
            claims["iss"],
            format!("XY12345.LOADER.{}", auth.fingerprint())
        );
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3540
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public =
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, auth.key.public().as_ref());
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
        assert!(public.verify(b"something else", &signature).is_err());
    }

    #[test]
    fn keys_it_cannot_use_are_named_without_being_shown() {
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkq\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = KeyPairAuth::from_pem(encrypted).unwrap_err();
        assert!(e.contains("encrypted") && e.contains("-nocrypt"), "{e}");
        let e = KeyPairAuth::from_pem("not a key at all").unwrap_err();
        assert!(e.contains("PEM"), "{e}");
        assert!(!e.contains("not a key at all"), "{e}");
        assert_eq!(account_name("myorg-account1"), "MYORG-ACCOUNT1");
    }
}
