//! Pause points for crash tests: the test stops the process at a named step and kills it there.
//!
//! With `STRIPE_PIPELINE_PAUSE_AT=<point>:<n>` set, the n-th time the process reaches `<point>` it
//! prints `paused at <point>` on stderr and blocks that thread forever, so the test can send `SIGKILL`
//! at exactly that step (between a load and its cursor commit, say) instead of at a random instant.
//! Compiled in only with the cargo feature `failpoints` (the CLI's tests turn it on); release and
//! Lambda builds have none, and a point is an empty inline function.

#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// The variable that names the point to pause at.
pub const ENV: &str = "STRIPE_PIPELINE_PAUSE_AT";

/// What to do at the point: pause (and wait to be killed), or panic (a bug, as the engine must report
/// it: `<point>:<n>:panic`).
#[cfg(feature = "failpoints")]
struct Target {
    name: String,
    n: u32,
    panic: bool,
}

#[cfg(feature = "failpoints")]
fn target() -> &'static Option<Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let spec = std::env::var(ENV).ok()?;
        let mut parts = spec.split(':');
        let name = parts.next()?.to_string();
        let n = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        let panic = parts.next() == Some("panic");
        Some(Target { name, n, panic })
    })
}

/// Marks a step; without the feature `failpoints`, nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn point(_name: &str) {}

/// Marks a step; pauses (or panics) there if a crash test asked for it.
#[cfg(feature = "failpoints")]
pub fn point(name: &str) {
    static HITS: AtomicU32 = AtomicU32::new(0);
    let Some(t) = target() else { return };
    if t.name != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != t.n {
        return;
    }
    if t.panic {
        panic!("failpoint {name} asked to panic");
    }
    eprintln!("paused at {name}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
