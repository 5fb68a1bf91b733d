//! The local, crash-safe state store.
//!
//! One JSON file per key, replaced by write-to-temp, fsync, rename: a `kill -9` at any instant leaves
//! either the old or the new version, never a torn file. Every write is conditional on the version read
//! (compare-and-swap), so a stale writer is refused instead of overwriting newer progress.

use super::{typed, Lease, StateBackend, StateError, Versioned};
use crate::clock::Clock;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The local, crash-safe state store.
#[derive(Debug, Clone)]
pub struct LocalState {
    dir: PathBuf,
}

fn now_secs() -> i64 {
    crate::clock::SystemClock.now_secs()
}

impl LocalState {
    pub fn open(dir: &Path) -> Result<LocalState, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(LocalState {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, key: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", key.replace('/', "__")))
    }

    /// The document under `key`, if there is one.
    fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StateError> {
        let path = self.file(key, "json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io { path, source }),
        }
    }

    /// The state of `key` as `T`, read without a runtime (local mode's `status` reads it so).
    pub fn get<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<Versioned<T>, StateError> {
        typed(self.read(key)?, || self.file(key, "json"))
    }

    fn write(&self, key: &str, expected: u64, value: &Value) -> Result<u64, StateError> {
        let current = self.read(key)?.map_or(0, |d| d.version);
        if current != expected {
            return Err(StateError::Conflict {
                key: key.to_string(),
                expected,
                found: current,
            });
        }
        let next = Versioned {
            version: expected + 1,
            value,
        };
        let path = self.file(key, "json");
        let body = serde_json::to_vec_pretty(&next).unwrap_or_default();
        atomic_write(&path, &body)?;
        Ok(expected + 1)
    }

    /// All keys with state.
    pub fn keys(&self) -> Result<Vec<String>, StateError> {
        let io = |source| StateError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix(".json") {
                keys.push(stem.replace("__", "/"));
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn acquire(&self, key: &str, owner: &str, ttl_secs: i64) -> Result<Lease, StateError> {
        let path = self.file(key, "lease");
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        for _ in 0..3 {
            let body = format!("{owner}\n{}\n{}\n", now_secs() + ttl_secs, holder_process());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(body.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    return Ok(Lease {
                        key: key.to_string(),
                        owner: owner.to_string(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut lines = text.lines();
                    let holder = lines.next().unwrap_or_default().to_string();
                    let until: i64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
                    let process = lines.next().unwrap_or_default();
                    if holder != owner && until > now_secs() && !process_is_gone(process) {
                        return Err(StateError::Leased {
                            key: key.to_string(),
                            owner: holder,
                            until,
                            path,
                        });
                    }
                    // Expired, left by a process of this machine that died (`kill -9`), or ours from a
                    // crashed attempt: move it aside atomically and retry.
                    let tomb = self.file(&format!("{key}.{owner}.{}", now_secs()), "expired-lease");
                    let _ = std::fs::rename(&path, &tomb);
                    let _ = std::fs::remove_file(&tomb);
                }
                Err(source) => return Err(StateError::Io { path, source }),
            }
        }
        Err(StateError::Leased {
            key: key.to_string(),
            owner: "another run".into(),
            until: now_secs() + ttl_secs,
            path,
        })
    }

    fn release(&self, lease: &Lease) {
        let path = self.file(&lease.key, "lease");
        if std::fs::read_to_string(&path)
            .is_ok_and(|t| t.lines().next() == Some(lease.owner.as_str()))
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The files are small and local: read and written in place, not on a blocking thread.
#[async_trait::async_trait]
impl StateBackend for LocalState {
    async fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StateError> {
        LocalState::read(self, key)
    }

    async fn write(&self, key: &str, expected: u64, value: &Value) -> Result<u64, StateError> {
        LocalState::write(self, key, expected, value)
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_secs: i64) -> Result<Lease, StateError> {
        LocalState::acquire(self, key, owner, ttl_secs)
    }

    async fn release(&self, lease: &Lease) {
        LocalState::release(self, lease)
    }

    fn location(&self, key: &str) -> PathBuf {
        self.file(key, "json")
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// `pid@host` of this process, recorded in its leases.
fn holder_process() -> String {
    format!("{}@{}", std::process::id(), hostname())
}

/// Whether the process that took a lease is known to be dead: it ran on this machine (Linux, where
/// `/proc` lists live processes) and its pid is gone. A lease from another machine only expires.
fn process_is_gone(process: &str) -> bool {
    let Some((pid, host)) = process.split_once('@') else {
        return false;
    };
    let here = hostname();
    !here.is_empty()
        && host == here
        && pid.parse::<u32>().is_ok()
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid).exists()
}

/// Write-to-temp, fsync, rename, fsync the directory.
fn atomic_write(path: &Path, body: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DatasetState;

    #[test]
    fn stale_commits_are_rejected_and_recommits_are_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalState::open(dir.path()).unwrap();
        let v = s.get::<DatasetState>("acct/live/charges").unwrap();
        assert_eq!(v.version, 0);
        let mut st = v.value.clone();
        st.rows = 5;
        let st = serde_json::to_value(&st).unwrap();
        assert_eq!(s.write("acct/live/charges", 0, &st).unwrap(), 1);
        assert!(matches!(
            s.write("acct/live/charges", 0, &st),
            Err(StateError::Conflict { .. })
        ));
        assert_eq!(
            s.get::<DatasetState>("acct/live/charges")
                .unwrap()
                .value
                .rows,
            5
        );
        assert_eq!(s.keys().unwrap(), vec!["acct/live/charges".to_string()]);
    }

    #[test]
    fn leases_are_exclusive_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalState::open(dir.path()).unwrap();
        let a = s.acquire("k", "run-a", 60).unwrap();
        assert!(matches!(
            s.acquire("k", "run-b", 60),
            Err(StateError::Leased { .. })
        ));
        s.release(&a);
        let b = s.acquire("k", "run-b", -1).unwrap();
        // b's lease is already expired: a may take it over.
        assert!(s.acquire("k", "run-a", 60).is_ok());
        s.release(&b);
    }

    #[test]
    fn a_lease_of_a_dead_local_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalState::open(dir.path()).unwrap();
        // A process that has exited: its pid no longer exists.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let far = now_secs() + 3600;
        std::fs::write(
            dir.path().join("k.lease"),
            format!("run-dead\n{far}\n{pid}@{}\n", hostname()),
        )
        .unwrap();
        assert!(s.acquire("k", "run-new", 60).is_ok());
        // A live holder (this process) keeps its lease.
        std::fs::write(
            dir.path().join("j.lease"),
            format!("run-live\n{far}\n{}\n", holder_process()),
        )
        .unwrap();
        assert!(matches!(
            s.acquire("j", "run-new", 60),
            Err(StateError::Leased { .. })
        ));
    }

    #[test]
    fn a_corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalState::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("k.json"), b"{not json").unwrap();
        assert!(matches!(
            s.get::<DatasetState>("k"),
            Err(StateError::Corrupt { .. })
        ));
    }
}
