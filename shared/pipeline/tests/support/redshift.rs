//! The Redshift Data API emulator for tests (`tests/emulators/redshift_data.py`, run by the test venv's
//! Python): the real `aws-sdk-redshiftdata` client talks to it over HTTP, it runs the SQL on the test
//! process's PostgreSQL server and carries out `COPY … FROM 's3://…' FORMAT AS PARQUET` from moto.
#![allow(dead_code)]

use super::moto::{free_port, sdk_at, venv_bin, Moto};
use super::postgres;
use aws_config::SdkConfig;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct RedshiftEmulator {
    child: Child,
    pub endpoint: String,
}

impl Drop for RedshiftEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedshiftEmulator {
    /// Starts the emulator in front of this process's PostgreSQL server, reading S3 from `moto`.
    pub fn start(moto: &Moto) -> RedshiftEmulator {
        let python = venv_bin("python", "psycopg, pyarrow and boto3");
        // The workspace's tests/emulators, found from whichever member's tests include this file.
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|dir| dir.join("tests/emulators/redshift_data.py"))
            .find(|p| p.is_file())
            .expect("tests/emulators/redshift_data.py in the workspace");
        let pg = postgres::server();
        let port = free_port();
        let mut child = Command::new(python)
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
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Redshift Data API emulator starts");
        let started = std::time::Instant::now();
        while !postgres::listens(port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the Redshift Data API emulator exited ({status}); its error is above");
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the Redshift Data API emulator did not listen on port {port} within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        RedshiftEmulator {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
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
