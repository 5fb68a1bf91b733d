//! The Snowflake emulator for tests: fakesnow's server mode from the test venv, on a free loopback
//! port (Snowflake's REST protocol over an in-memory DuckDB). Each test starts its own; it stops when
//! dropped.

use crate::moto::{start_server, venv_bin, ChildServer};
use std::process::{Command, Stdio};

/// A fakesnow server, killed when dropped.
pub struct Fakesnow {
    _server: ChildServer,
    /// Where a client logs in (`http://127.0.0.1:PORT`).
    pub base_url: String,
}

impl Fakesnow {
    pub fn start() -> Fakesnow {
        let bin = venv_bin("fakesnow", "fakesnow[server]");
        let server = start_server("fakesnow", |port| {
            let mut fakesnow = Command::new(&bin);
            fakesnow
                .args(["-s", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            fakesnow
        });
        Fakesnow {
            base_url: format!("http://127.0.0.1:{}", server.port),
            _server: server,
        }
    }
}
