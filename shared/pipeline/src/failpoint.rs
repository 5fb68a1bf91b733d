//! Pause points for crash tests: the test stops the process at a named step and kills it there.
//!
//! With `STRIPE_PIPELINE_PAUSE_AT=<point>:<n>` set, the n-th time the process reaches `<point>` it
//! prints `paused at <point>` on stderr and blocks that thread forever, so the test can send `SIGKILL`
//! at exactly that step (between a load and its cursor commit, say) instead of at a random instant.
//! Unset, as in production, a point costs one initialised-once read.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The variable that names the point to pause at.
pub const ENV: &str = "STRIPE_PIPELINE_PAUSE_AT";

fn target() -> &'static Option<(String, u32)> {
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let (name, n) = spec.split_once(':').unwrap_or((&spec, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Marks a step; pauses there if a crash test asked for it.
pub fn point(name: &str) {
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Some((wanted, n)) = target() else { return };
    if wanted != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *n {
        return;
    }
    eprintln!("paused at {name}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
