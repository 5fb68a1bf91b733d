//! Snowflake's SQL over HTTPS: the REST protocol its drivers speak (`/session/v1/login-request`,
//! `/queries/v1/query-request`), so one client serves Snowflake and the emulator the tests run
//! (fakesnow serves this protocol, not the SQL API v2).
//!
//! A session logs in once (key-pair JWT or password) and runs statements one after another; it is
//! stateful (`BEGIN` … `COMMIT` span requests). Results come as JSON or as Arrow; both are read as text
//! ([`super::rows`]). Checked crates: `snowflake-connector-rs` 1.1 rejects Arrow results and
//! `snowflake-api` 0.14 is on another Arrow major and a fixed host, hence this client, on the hyper and
//! ring the build already has.

use super::jwt::KeyPairAuth;
use super::rows::{self, Column};
use crate::config::Secret;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::time::Duration;

/// How the session proves who it is.
pub enum Credential {
    /// Key-pair authentication (what Snowflake recommends for services).
    KeyPair(Box<KeyPairAuth>),
    Password(Secret),
}

/// Where and as whom to log in.
pub struct Login {
    /// `https://<account>.snowflakecomputing.com`, or the emulator's address.
    pub base_url: String,
    /// The account identifier (`myorg-account1`, or a locator `xy12345.us-east-2.aws`).
    pub account: String,
    pub user: String,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub database: String,
    pub credential: Credential,
}

/// A failure, with Snowflake's code and message and the query's id when it had one.
#[derive(Debug, thiserror::Error)]
#[error("{message} (Snowflake code {code}{})", query_id.as_ref().map(|q| format!(", query {q}")).unwrap_or_default())]
pub struct SnowflakeError {
    pub code: String,
    pub message: String,
    pub query_id: Option<String>,
    /// Whether running it again may succeed (the service or the network failed, not the statement).
    pub retryable: bool,
}

impl SnowflakeError {
    /// A failure that running the request again cannot fix.
    fn fatal(code: &str, message: impl Into<String>) -> SnowflakeError {
        SnowflakeError {
            code: code.into(),
            message: message.into(),
            query_id: None,
            retryable: false,
        }
    }

    fn transport(message: String) -> SnowflakeError {
        SnowflakeError {
            code: "network".into(),
            message,
            query_id: None,
            retryable: true,
        }
    }
}

/// A statement's result: its id, its columns and its rows as text (`None` for SQL NULL).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub query_id: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// How Snowflake sent the rows.
    pub format: ResultFormat,
}

/// The two formats Snowflake answers in: DML counts and small results as JSON, query results
/// mostly as Arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    Json,
    Arrow,
}

/// Snowflake's codes for a statement still running when the request returned: its result is polled.
const STILL_RUNNING: [&str; 2] = ["333333", "333334"];
/// Snowflake's codes for an expired or unknown session token: log in again and send the statement again.
const SESSION_GONE: [&str; 3] = ["390104", "390112", "390114"];
/// How long a request waits for its answer's head, and again for its body.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts of a request that failed in the network or with a 5xx/429.
const ATTEMPTS: u32 = 4;

/// One logged-in session.
pub struct Session {
    http: crate::https::HttpsClient<Full<Bytes>>,
    login: Login,
    token: Secret,
    sequence: u64,
    /// A `BEGIN` ran and no `COMMIT` or `ROLLBACK` has succeeded since: the transaction lives in the
    /// server's session, so an expired one is not logged into again then (its open work is gone).
    in_transaction: bool,
}

impl Session {
    /// Logs in.
    pub async fn open(login: Login) -> Result<Session, SnowflakeError> {
        let mut session = Session {
            http: crate::https::client(),
            login,
            token: Secret::new(""),
            sequence: 0,
            in_transaction: false,
        };
        session.token = session.log_in().await?;
        Ok(session)
    }

    async fn log_in(&self) -> Result<Secret, SnowflakeError> {
        let l = &self.login;
        let mut data = serde_json::json!({
            "CLIENT_APP_ID": "stripe-pipeline",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": super::jwt::account_name(&l.account),
            "LOGIN_NAME": l.user,
            // Timestamps in UTC whatever the account's default, as Stripe's data is.
            "SESSION_PARAMETERS": {"TIMEZONE": "UTC", "AUTOCOMMIT": true},
        });
        match &l.credential {
            Credential::KeyPair(key) => {
                let now = crate::clock::Clock::now_secs(&crate::clock::SystemClock);
                let token = key
                    .token(&l.account, &l.user, now)
                    .map_err(|message| SnowflakeError::fatal("key", message))?;
                data["AUTHENTICATOR"] = "SNOWFLAKE_JWT".into();
                data["TOKEN"] = token.into();
            }
            Credential::Password(p) => data["PASSWORD"] = p.expose().into(),
        }
        let mut query = vec![("databaseName", l.database.clone())];
        if let Some(w) = &l.warehouse {
            query.push(("warehouse", w.clone()));
        }
        if let Some(r) = &l.role {
            query.push(("roleName", r.clone()));
        }
        query.push(("request_id", uuid::Uuid::new_v4().to_string()));
        let url = self.url("/session/v1/login-request", &query);
        let body = serde_json::json!({ "data": data });
        let resp = self
            .post(&url, None, &body)
            .await
            .map_err(|e| SnowflakeError {
                message: format!(
                    "logging in as {} to account {}: {}",
                    l.user, l.account, e.message
                ),
                ..e
            })?;
        resp["data"]["token"]
            .as_str()
            .map(Secret::new)
            .ok_or_else(|| protocol("the login succeeded without a session token"))
    }

    /// Runs one statement and reads its whole result: the rows in the answer, then those of each
    /// chunk Snowflake split a large result into.
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, SnowflakeError> {
        let resp = self.request(sql).await?;
        let (mut result, columns) = decode(&resp)?;
        let data = &resp["data"];
        let Some(chunks) = data["chunks"].as_array().filter(|c| !c.is_empty()) else {
            return Ok(result);
        };
        let headers = chunk_headers(data);
        let with_id = |e: SnowflakeError| SnowflakeError {
            query_id: Some(result.query_id.clone()),
            ..e
        };
        for chunk in chunks {
            let url = chunk["url"]
                .as_str()
                .ok_or_else(|| with_id(protocol("a result chunk without a URL")))?;
            let bytes = retrying(|| download(&self.http, url, &headers))
                .await
                .map_err(with_id)?;
            let rows = rows::from_chunk(bytes, result.format == ResultFormat::Json, &columns)
                .map_err(|e| with_id(protocol(&e)))?;
            result.rows.extend(rows);
        }
        tracing::debug!(query_id = %result.query_id, chunks = chunks.len(), rows = result.rows.len(), "read a Snowflake result in chunks");
        Ok(result)
    }

    /// Uploads a file to an internal stage with `PUT` (`stage` such as `@"DB"."S"."UPLOADS"/load-1/`),
    /// as the file `name`. Snowflake answers a `PUT` with where to send the bytes; this client sends
    /// them where that place is a plain HTTPS upload URL (a GCS-style presigned URL without
    /// client-side encryption, which is what the emulator gives). Snowflake's own internal stages
    /// encrypt on the client with a per-query key, which this client does not do yet: with one of
    /// those the error says to load from an external stage instead.
    pub async fn put(
        &mut self,
        stage: &str,
        name: &str,
        bytes: Bytes,
    ) -> Result<(), SnowflakeError> {
        if name.contains(['/', '\\', '\'']) {
            return Err(SnowflakeError::fatal(
                "put",
                format!("{name:?} is not a plain file name"),
            ));
        }
        let resp = self
            .request(&format!(
                "PUT 'file:///{name}' {stage} AUTO_COMPRESS = FALSE OVERWRITE = TRUE"
            ))
            .await?;
        let data = &resp["data"];
        let info = &data["stageInfo"];
        let location = info["locationType"].as_str().unwrap_or("?");
        let url = info["presignedUrl"].as_str().filter(|u| !u.is_empty());
        let encrypted = !data["encryptionMaterial"].is_null();
        match url {
            Some(url) if !encrypted => self.upload(url, bytes).await,
            _ => Err(SnowflakeError::fatal(
                "put",
                format!(
                    "Snowflake's internal stage is on {location} storage with client-side encryption, which this client cannot upload to yet; put the lake on S3 and set storage_integration in [snowflake], so that Snowflake reads the files from an external stage"
                ),
            )),
        }
    }

    /// Whether a transaction is open in this session ([`Session::query`] follows `BEGIN`, `COMMIT`
    /// and `ROLLBACK`): one a failure left open must be rolled back before anything else runs, since
    /// Snowflake commits an open transaction at the next DDL.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Sends a statement and waits for its answer; follows whether a transaction is open.
    async fn request(&mut self, sql: &str) -> Result<Value, SnowflakeError> {
        let verb = sql.trim().to_ascii_uppercase();
        let resp = self.request_once(sql).await;
        if resp.is_ok() {
            match verb.as_str() {
                "BEGIN" => self.in_transaction = true,
                "COMMIT" | "ROLLBACK" => self.in_transaction = false,
                _ => {}
            }
        }
        resp
    }

    /// Sends a statement, logging in again once if the session expired — unless a transaction was
    /// open in it, whose work the expired session took with it: that is an error.
    async fn request_once(&mut self, sql: &str) -> Result<Value, SnowflakeError> {
        let mut relogged = false;
        loop {
            self.sequence += 1;
            let body = serde_json::json!({
                "sqlText": sql,
                "asyncExec": false,
                "sequenceId": self.sequence,
                "querySubmissionTime": crate::clock::Clock::now_micros(&crate::clock::SystemClock) / 1000,
            });
            let url = self.url(
                "/queries/v1/query-request",
                &[("requestId", uuid::Uuid::new_v4().to_string())],
            );
            match self.post(&url, Some(&self.token), &body).await {
                Ok(resp) => return self.finish(resp).await,
                Err(e) if SESSION_GONE.contains(&e.code.as_str()) && self.in_transaction => {
                    self.in_transaction = false;
                    return Err(SnowflakeError {
                        message: format!(
                            "the session expired inside a transaction, which Snowflake ended with it ({}); the work is run again",
                            e.message
                        ),
                        retryable: true,
                        ..e
                    });
                }
                Err(e) if SESSION_GONE.contains(&e.code.as_str()) && !relogged => {
                    tracing::info!(code = %e.code, "the Snowflake session expired; logging in again");
                    self.token = self.log_in().await?;
                    relogged = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A successful answer, polled while the statement still runs.
    async fn finish(&self, mut resp: Value) -> Result<Value, SnowflakeError> {
        let mut delay = Duration::from_millis(100);
        loop {
            let code = resp["code"].as_str().unwrap_or_default();
            if !STILL_RUNNING.contains(&code) {
                break;
            }
            let Some(path) = resp["data"]["getResultUrl"].as_str().map(str::to_string) else {
                return Err(protocol("a running statement without a result URL"));
            };
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            resp = self
                .get(&format!("{}{path}", self.base()), &self.token)
                .await?;
        }
        Ok(resp)
    }

    fn base(&self) -> &str {
        self.login.base_url.trim_end_matches('/')
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        format!("{}{path}?{}", self.base(), q.finish())
    }

    async fn post(
        &self,
        url: &str,
        token: Option<&Secret>,
        body: &Value,
    ) -> Result<Value, SnowflakeError> {
        self.send(Call {
            method: hyper::Method::POST,
            url,
            token,
            body: Bytes::from(body.to_string()),
        })
        .await
    }

    async fn get(&self, url: &str, token: &Secret) -> Result<Value, SnowflakeError> {
        self.send(Call {
            method: hyper::Method::GET,
            url,
            token: Some(token),
            body: Bytes::new(),
        })
        .await
    }

    /// Sends a file's bytes to a stage's upload URL (retried like any request).
    async fn upload(&self, url: &str, bytes: Bytes) -> Result<(), SnowflakeError> {
        retrying(|| self.upload_once(url, bytes.clone())).await
    }

    async fn upload_once(&self, url: &str, bytes: Bytes) -> Result<(), SnowflakeError> {
        let req = hyper::Request::builder()
            .method(hyper::Method::PUT)
            .uri(url)
            .header("content-type", "application/octet-stream")
            .body(Full::new(bytes))
            .map_err(|e| protocol(&format!("cannot build the upload: {e}")))?;
        let (status, _) = exchange(&self.http, req).await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(SnowflakeError {
            code: format!("http {status}"),
            message: format!("the stage's storage refused the upload with HTTP {status}"),
            query_id: None,
            retryable: status == 429 || status >= 500,
        })
    }

    /// One request, sent again on a network failure, a 429 or a 5xx; a `success: false` answer
    /// becomes the error it names.
    async fn send(&self, call: Call<'_>) -> Result<Value, SnowflakeError> {
        retrying(|| self.send_once(&call)).await
    }

    async fn send_once(&self, call: &Call<'_>) -> Result<Value, SnowflakeError> {
        let mut req = hyper::Request::builder()
            .method(call.method.clone())
            .uri(call.url)
            .header("accept", "application/snowflake")
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("stripe-pipeline/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = call.token {
            req = req.header(
                "authorization",
                format!("Snowflake Token=\"{}\"", t.expose()),
            );
        }
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| protocol(&format!("cannot build the request: {e}")))?;
        let (status, bytes) = exchange(&self.http, req).await?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let named = |v: &Value| SnowflakeError {
            code: v["code"].as_str().unwrap_or("-").to_string(),
            message: v["message"].as_str().unwrap_or("no message").to_string(),
            query_id: v["data"]["queryId"].as_str().map(str::to_string),
            retryable: status == 429 || status >= 500,
        };
        match (status, parsed) {
            (200, Some(v)) if v["success"].as_bool() == Some(true) => Ok(v),
            (200, Some(v)) if STILL_RUNNING.contains(&v["code"].as_str().unwrap_or_default()) => {
                Ok(v)
            }
            (_, Some(v)) if v.get("success").is_some() => Err(named(&v)),
            (status, _) => Err(SnowflakeError {
                code: format!("http {status}"),
                message: format!(
                    "Snowflake answered HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
                query_id: None,
                retryable: status == 429 || status >= 500,
            }),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, SnowflakeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SnowflakeError>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Err(e) if e.retryable && n < ATTEMPTS => {
                tracing::info!(attempt = n, error = %e, "Snowflake request failed; sending it again");
                tokio::time::sleep(Duration::from_millis(250 << n)).await;
                n += 1;
            }
            other => return other,
        }
    }
}

/// One request to send (and perhaps send again).
struct Call<'a> {
    method: hyper::Method,
    url: &'a str,
    token: Option<&'a Secret>,
    body: Bytes,
}

/// Sends a request and reads its whole answer: the status and the body, each waited for at most
/// [`TIMEOUT`]; a failure of either is a network failure (retryable).
async fn exchange(
    http: &crate::https::HttpsClient<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), SnowflakeError> {
    let resp = tokio::time::timeout(TIMEOUT, http.request(req))
        .await
        .map_err(|_| SnowflakeError::transport(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| SnowflakeError::transport(format!("{e}")))?;
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| SnowflakeError::transport("the answer's body timed out".into()))?
        .map_err(|e| SnowflakeError::transport(format!("the answer was cut off: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// A finished statement's result as far as the answer holds it, and its columns (for its chunks).
fn decode(resp: &Value) -> Result<(QueryResult, Vec<Column>), SnowflakeError> {
    let data = &resp["data"];
    let query_id = data["queryId"].as_str().unwrap_or("-").to_string();
    let columns: Vec<Column> = serde_json::from_value(data["rowtype"].clone())
        .map_err(|e| protocol(&format!("unreadable rowtype ({e})")))?;
    let format = match data["queryResultFormat"].as_str() {
        Some("arrow") => ResultFormat::Arrow,
        _ => ResultFormat::Json,
    };
    let rows = match format {
        ResultFormat::Arrow => {
            rows::from_arrow(data["rowsetBase64"].as_str().unwrap_or(""), &columns)
        }
        ResultFormat::Json => rows::from_json(&data["rowset"], &columns),
    }
    .map_err(|e| SnowflakeError {
        query_id: Some(query_id.clone()),
        ..protocol(&e)
    })?;
    let result = QueryResult {
        query_id,
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        rows,
        format,
    };
    Ok((result, columns))
}

/// The headers a result chunk is fetched with: those Snowflake names (`chunkHeaders`), else the
/// customer key of the chunks' server-side encryption (`qrmk`).
fn chunk_headers(data: &Value) -> Vec<(String, String)> {
    if let Some(named) = data["chunkHeaders"].as_object().filter(|h| !h.is_empty()) {
        return named
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
    }
    match data["qrmk"].as_str() {
        Some(key) => vec![
            (
                "x-amz-server-side-encryption-customer-algorithm".into(),
                "AES256".into(),
            ),
            (
                "x-amz-server-side-encryption-customer-key".into(),
                key.to_string(),
            ),
        ],
        None => Vec::new(),
    }
}

/// One result chunk from cloud storage (a presigned URL; no session token), gunzipped when it is
/// compressed.
async fn download(
    http: &crate::https::HttpsClient<Full<Bytes>>,
    url: &str,
    headers: &[(String, String)],
) -> Result<Vec<u8>, SnowflakeError> {
    let mut req = hyper::Request::builder()
        .method(hyper::Method::GET)
        .uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| protocol(&format!("cannot build the chunk request: {e}")))?;
    let (status, body) = exchange(http, req).await?;
    if !(200..300).contains(&status) {
        return Err(SnowflakeError {
            code: format!("http {status}"),
            message: format!("the result chunk's storage answered HTTP {status}"),
            query_id: None,
            retryable: status == 429 || status >= 500,
        });
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
            .map_err(|e| protocol(&format!("a compressed result chunk is unreadable ({e})")))?;
        return Ok(out);
    }
    Ok(body.to_vec())
}

fn protocol(message: &str) -> SnowflakeError {
    SnowflakeError::fatal("protocol", message)
}
