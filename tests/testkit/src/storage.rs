//! Cloud-storage emulators for tests, each on a free loopback port and stopped when dropped:
//! gcp-storage-emulator (PyPI; started through `tests/emulators/gcs_xml.py`, which adds the XML API
//! calls object_store makes) and Azurite (npm). `tests/run` installs both.

use crate::moto::{emulator_script, http, http_json, start_server, venv_bin, ChildServer};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A server without output: the emulators are quiet unless a test fails on what they answer.
fn quiet(mut command: Command) -> Command {
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// gcp-storage-emulator, in memory.
pub struct GcsEmulator {
    _server: ChildServer,
    pub endpoint: String,
}

impl GcsEmulator {
    pub fn start() -> GcsEmulator {
        let python = venv_bin("python", "gcp-storage-emulator");
        let script = emulator_script("gcs_xml.py");
        let server = start_server("gcp-storage-emulator", |port| {
            let mut gcs = Command::new(&python);
            gcs.arg(&script).args([
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--in-memory",
                "-q",
            ]);
            quiet(gcs)
        });
        GcsEmulator {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            _server: server,
        }
    }

    /// Creates a bucket (JSON API; object_store cannot).
    pub async fn create_bucket(&self, bucket: &str) {
        let (status, body) = http_json(
            "POST",
            &format!("{}/storage/v1/b", self.endpoint),
            &serde_json::json!({ "name": bucket }),
        )
        .await;
        assert!(
            status < 300,
            "creating bucket {bucket}: HTTP {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// object_store settings for this emulator: its URL and no OAuth.
    pub fn lake_options(&self) -> Vec<(String, String)> {
        vec![
            ("google_base_url".into(), self.endpoint.clone()),
            ("google_bearer_token".into(), "emulator".into()),
        ]
    }
}

/// Azurite's Blob service, in memory, with the emulator's well-known account.
pub struct Azurite {
    _server: ChildServer,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

/// The emulator account's published key (the same in every Azurite).
const DEVSTORE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// An account SAS of the emulator account (signed with [`DEVSTORE_KEY`], valid until 2099): lets a
/// plain HTTP request create a container.
const DEVSTORE_SAS: &str = "sv=2021-08-06&ss=b&srt=sco&sp=rwdlacup&st=2020-01-01T00:00:00Z&se=2099-12-31T00:00:00Z&spr=https%2Chttp&sig=bwMrgnGAl5MGrEKrdyXW7Q1e8OQy%2FNglDHbH6T9%2FJmg%3D";

impl Azurite {
    pub fn start() -> Azurite {
        let npm = std::env::var("STRIPE_PIPELINE_NPM")
            .unwrap_or_else(|_| "/var/tmp/stripe-pipeline-npm".into());
        let bin = PathBuf::from(npm).join("node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "{} not found: run tests/run, which installs Azurite with npm",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let server = start_server("Azurite", |port| {
            let mut azurite = Command::new(&bin);
            azurite.current_dir(dir.path()).args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--disableTelemetry",
            ]);
            quiet(azurite)
        });
        Azurite {
            endpoint: format!("http://127.0.0.1:{}/devstoreaccount1", server.port),
            _server: server,
            _dir: dir,
        }
    }

    pub async fn create_container(&self, container: &str) {
        let (status, body) = http(
            "PUT",
            &format!(
                "{}/{container}?restype=container&{DEVSTORE_SAS}",
                self.endpoint
            ),
            Vec::new(),
        )
        .await;
        assert!(
            status < 300,
            "creating container {container}: HTTP {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// object_store settings for this emulator.
    pub fn lake_options(&self) -> Vec<(String, String)> {
        [
            ("azure_storage_account_name", "devstoreaccount1"),
            ("azure_storage_account_key", DEVSTORE_KEY),
            ("azure_storage_endpoint", self.endpoint.as_str()),
            ("azure_allow_http", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
