//! A private PostgreSQL server for tests, started from the machine's PostgreSQL binaries (`tests/run`
//! installs the Debian package when they are missing) on a free loopback port, with trust
//! authentication and one fresh database per test.
//!
//! One server per test process. It runs under a small shell that waits on a pipe from this process:
//! when the process ends, however it ends, the pipe closes and the shell stops the server and removes
//! its data directory, so no server outlives its tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct PgServer {
    pub port: u16,
    bin: PathBuf,
    /// Holds the pipe the watchdog shell waits on.
    _watchdog: Mutex<Child>,
}

/// The directory of `initdb` and `postgres`: `$PG_BIN`, else `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian puts them there, off `PATH`).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
    }) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found (initdb, postgres): run tests/run, which installs the Debian package postgresql, or set PG_BIN")
    })
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
fn as_server_user(program: &Path) -> Command {
    if output(Command::new("id").arg("-u")) == "0" {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start() -> PgServer {
    let bin = bin_dir();
    let data = tempfile::Builder::new()
        .prefix("stripe-pipeline-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    if output(Command::new("id").arg("-u")) == "0" {
        let uid = output(Command::new("id").args(["-u", "postgres"]))
            .parse()
            .ok();
        let gid = output(Command::new("id").args(["-g", "postgres"]))
            .parse()
            .ok();
        std::os::unix::fs::chown(&data, uid, gid).expect("chown the data directory to postgres");
    }
    output(
        as_server_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let script = r#""$3/postgres" -D "$1" -p "$2" -k "$1" -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off >"$1.log" 2>&1 &
pid=$!
cat >/dev/null
kill -INT $pid
wait $pid
rm -rf "$1" "$1.log""#;
    let mut cmd = as_server_user(Path::new("/bin/sh"));
    let child = cmd
        .args(["-c", script, "sh"])
        .arg(&data)
        .arg(port.to_string())
        .arg(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the PostgreSQL watchdog shell starts");
    let started = Instant::now();
    while !listens(port) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "PostgreSQL did not listen on port {port} within 60 s; see {}.log",
            data.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    PgServer {
        port,
        bin,
        _watchdog: Mutex::new(child),
    }
}

/// The test process's server (started on first use).
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

impl PgServer {
    /// Creates a new, empty database and returns its connection URL.
    pub fn database(&self, label: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{label}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        // Debian keeps psql on PATH, not always beside the server.
        let psql = Some(self.bin.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        output(
            Command::new(psql)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
                .arg(format!("CREATE DATABASE \"{name}\"")),
        );
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }
}

/// Whether a server listens on `port` of 127.0.0.1. A connection whose local port is `port` itself
/// does not count: while nothing listens there, Linux can pair a connecting socket with itself when
/// it happens to pick the target port as its source port (a TCP "self-connect"), and a test would
/// then think a server is ready that has not bound its port yet.
pub fn listens(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .and_then(|stream| stream.local_addr())
        .is_ok_and(|local| local.port() != port)
}
