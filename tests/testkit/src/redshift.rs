//! The Redshift Data API emulator for tests (`tests/emulators/redshift_data.py`, run by the test venv's
//! Python): the real `aws-sdk-redshiftdata` client talks to it over HTTP, it runs the SQL on the test
//! process's PostgreSQL server and carries out `COPY … FROM 's3://…' FORMAT AS PARQUET` from moto.

use crate::moto::{emulator_script, sdk_at, start_server, venv_bin, ChildServer, Moto};
use crate::postgres;
use aws_config::SdkConfig;
use std::process::{Command, Stdio};

pub struct RedshiftEmulator {
    _server: ChildServer,
    pub endpoint: String,
}

impl RedshiftEmulator {
    /// Starts the emulator in front of this process's PostgreSQL server, reading S3 from `moto`.
    pub fn start(moto: &Moto) -> RedshiftEmulator {
        let python = venv_bin("python", "psycopg, pyarrow and boto3");
        let script = emulator_script("redshift_data.py");
        let pg = postgres::server();
        // Its errors go to the test's output.
        let server = start_server("the Redshift Data API emulator", |port| {
            let mut emulator = Command::new(&python);
            emulator
                .arg(&script)
                .args(["--port", &port.to_string()])
                .args([
                    "--postgres",
                    &format!("postgres://postgres@127.0.0.1:{}", pg.port),
                ])
                .args(["--s3-endpoint", &moto.endpoint])
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            emulator
        });
        RedshiftEmulator {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            _server: server,
        }
    }

    /// SDK settings that reach the emulator.
    pub async fn sdk(&self) -> SdkConfig {
        sdk_at(&self.endpoint).await
    }
}

/// A new database on the PostgreSQL server behind the emulator; its name is the Data API's `Database`.
pub fn database(label: &str) -> String {
    let url = postgres::server().database(label);
    let name = url.rsplit('/').next().unwrap_or_default();
    name.split('?').next().unwrap_or_default().to_string()
}
