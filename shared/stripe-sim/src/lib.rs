//! A stateful Stripe API simulator.
//!
//! Unlike Stripe's stateless `stripe-mock`, it keeps objects, so lists page, cursors expire, filters
//! filter, objects change and disappear, events are emitted and age out, and rate limits and faults push
//! back. Tests, the CLI's demo mode and benchmarks run against it over real HTTP.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = stripe_sim::start(stripe_sim::SimConfig::tiny()).await?;
//! let key = sim.info().key("secret", "test", 0).unwrap();
//! println!("GET {}/v1/charges with {key}", sim.base_url());
//! # Ok(()) }
//! ```

mod body;
mod clock;
mod connect;
mod control;
pub mod error;
mod expand;
mod generate;
pub mod limits;
mod list;
pub mod push;
pub mod resources;
mod rng;
mod scope;
mod server;
mod table;
mod templates;
mod world;

pub use clock::DEFAULT_START;
pub use limits::{FaultKind, FaultRule, RateLimits};
pub use resources::Res;
pub use scope::{EventPolicy, EVENT_RETENTION_SECS};
pub use world::{Account, AccountKind, ControlError, KeyInfo, PINNED_API_VERSION};

use clock::Clock;
use limits::{Faults, Limiter, RateMeter};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use world::World;

/// Named data sizes: the base number of objects per resource in each account and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// About 1,800 objects in all: unit-style conformance tests.
    Tiny,
    /// About 10,500 objects.
    Small,
    /// About 113,000 objects: the CLI's demo.
    Demo,
    /// About 1,000,000 objects: benchmarks.
    Large,
}

impl Profile {
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "tiny" => Some(Profile::Tiny),
            "small" => Some(Profile::Small),
            "demo" => Some(Profile::Demo),
            "large" => Some(Profile::Large),
            _ => None,
        }
    }

    /// The base count per resource of one standard account and mode.
    pub fn objects(self) -> usize {
        match self {
            Profile::Tiny => 24,
            Profile::Small => 160,
            Profile::Demo => 1_700,
            Profile::Large => 15_500,
        }
    }
}

/// How a simulator is built.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Same seed, same accounts, keys and objects.
    pub seed: u64,
    /// Base number of objects per resource in each standard account and mode (see [`Profile`]).
    pub objects: usize,
    /// Simulated time at start (Unix seconds); history lies before it.
    pub start: i64,
    pub rate_limits: RateLimits,
    /// Latency added to every API request.
    pub latency_ms: u64,
    pub faults: Vec<FaultRule>,
    pub events: EventPolicy,
    /// Generate objects only in this keyed account (by position, as in [`StartInfo::key`]) and mode
    /// (`true` = live); the other scopes stay empty. For benchmarks that need one large account.
    pub only: Option<(usize, bool)>,
}

impl SimConfig {
    /// Tiny data, no rate limits, no faults: fast conformance tests.
    pub fn tiny() -> SimConfig {
        SimConfig {
            seed: 42,
            objects: Profile::Tiny.objects(),
            start: DEFAULT_START,
            rate_limits: RateLimits::off(),
            latency_ms: 0,
            faults: Vec::new(),
            events: EventPolicy::default(),
            only: None,
        }
    }

    pub fn with_profile(mut self, profile: Profile) -> SimConfig {
        self.objects = profile.objects();
        self
    }
}

/// What the simulator prints on start: where it listens and the keys of its accounts.
#[derive(Debug, Clone, Serialize)]
pub struct StartInfo {
    pub base_url: String,
    pub seed: u64,
    pub objects: usize,
    pub api_version: &'static str,
    pub accounts: Vec<Account>,
    pub keys: Vec<KeyInfo>,
}

impl StartInfo {
    /// The `kind` (`secret`/`restricted`) key in `mode` (`test`/`live`) of the `n`-th keyed account.
    pub fn key(&self, kind: &str, mode: &str, n: usize) -> Option<String> {
        let account = self
            .accounts
            .iter()
            .filter(|a| a.kind != AccountKind::Connected)
            .nth(n)?;
        self.keys
            .iter()
            .find(|k| {
                k.account == account.id && k.kind == kind && k.mode == mode && k.allow.is_none()
            })
            .map(|k| k.key.clone())
    }

    pub fn account(&self, kind: AccountKind) -> Option<&Account> {
        self.accounts.iter().find(|a| a.kind == kind)
    }
}

/// Request counters, for asserting API budgets in tests.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub rate_limited: u64,
    pub faults: u64,
    /// Requests per `"<account> <mode> <endpoint>"`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Responses per status code.
    pub by_status: BTreeMap<u16, u64>,
    /// The most requests per `"<account> <mode>"` in any one second (sliding), 429s included: what
    /// the account's rate limit saw. The account is the key's (a platform's, for Connect requests).
    pub peak_per_sec: BTreeMap<String, u64>,
}

/// The simulator's state, shared by the HTTP server and the library control calls.
pub struct Simulator {
    world: RwLock<World>,
    clock: Clock,
    limiter: Limiter,
    meter: RateMeter,
    limits: RwLock<RateLimits>,
    faults: Faults,
    latency_ms: AtomicU64,
    /// `true` while the API is paused: `/v1` requests other than the key check wait for `resume`
    /// before they are served, so a test can hold one client mid-run at a point it chooses (instead of
    /// racing it with latency) while a second client still starts.
    paused: tokio::sync::watch::Sender<bool>,
    stats: Mutex<Stats>,
    requests: AtomicU64,
    seed: u64,
    /// Where events are pushed as they happen (none by default).
    pusher: RwLock<Option<Arc<push::Pusher>>>,
    push_counts: Arc<push::PushCounts>,
}

/// `live` or `test`.
pub fn mode_name(livemode: bool) -> &'static str {
    if livemode {
        "live"
    } else {
        "test"
    }
}

impl Simulator {
    /// Generates the data (this is where the time goes: about 2 s per 100,000 objects).
    pub fn new(config: SimConfig) -> Arc<Simulator> {
        let mut world = World::generate(
            config.seed,
            config.objects,
            config.start,
            config.events,
            config.only,
        );
        // The history is not pushed: it happened before any endpoint existed.
        world.take_pushes();
        Arc::new(Simulator {
            world: RwLock::new(world),
            clock: Clock::new(config.start),
            limiter: Limiter::default(),
            meter: RateMeter::default(),
            limits: RwLock::new(config.rate_limits),
            faults: Faults::new(config.faults, config.seed),
            latency_ms: AtomicU64::new(config.latency_ms),
            paused: tokio::sync::watch::Sender::new(false),
            stats: Mutex::new(Stats::default()),
            requests: AtomicU64::new(0),
            seed: config.seed,
            pusher: RwLock::new(None),
            push_counts: Arc::default(),
        })
    }

    /// Simulated now (Unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Moves simulated time forward; returns the new now.
    /// A control operation now, with a request id of its own (events name it).
    fn op(&self) -> world::Op {
        world::Op {
            now: self.now(),
            request: self.next_request_id(),
        }
    }

    pub fn advance(&self, seconds: i64) -> i64 {
        self.clock.advance(seconds)
    }

    pub fn info(&self, base_url: &str) -> StartInfo {
        let w = self.world.read();
        let mut keys: Vec<KeyInfo> = w.keys.values().cloned().collect();
        keys.sort_by(|a, b| {
            (&a.account, a.mode, a.kind, &a.key).cmp(&(&b.account, b.mode, b.kind, &b.key))
        });
        StartInfo {
            base_url: base_url.to_string(),
            seed: self.seed,
            objects: w.object_count(),
            api_version: PINNED_API_VERSION,
            accounts: w.accounts.clone(),
            keys,
        }
    }

    fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut rng = rng::Rng::new(self.seed ^ n, n);
        format!("req_{}{}", rng.alnum(10), base36(n))
    }

    fn resource(name: &str) -> Result<Res, ControlError> {
        Res::from_path(name).ok_or_else(|| ControlError::UnknownResource(name.to_string()))
    }

    /// Creates `count` objects of `resource` (path name, as `charges`) now; returns their ids.
    pub fn create(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
        count: usize,
    ) -> Result<Vec<String>, ControlError> {
        let res = Self::resource(resource)?;
        let op = self.op();
        self.change(|w| w.create(account, livemode, res, count, op))
    }

    /// Updates `count` random objects (or `ids`), emitting `*.updated` events where Stripe has them.
    pub fn update(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
        count: usize,
        ids: &[String],
    ) -> Result<Vec<String>, ControlError> {
        let res = Self::resource(resource)?;
        let op = self.op();
        self.change(|w| w.update(account, livemode, res, count, ids, op))
    }

    /// Sets top-level `fields` of one object, emitting its `*.updated` event where Stripe has one.
    pub fn set_fields(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
        id: &str,
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ControlError> {
        let res = Self::resource(resource)?;
        let op = self.op();
        self.change(|w| w.set_fields(account, livemode, res, id, fields, op))
    }

    /// Deletes `count` random objects (or `ids`) of a resource that Stripe can delete.
    pub fn delete(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
        count: usize,
        ids: &[String],
    ) -> Result<Vec<String>, ControlError> {
        let res = Self::resource(resource)?;
        let op = self.op();
        self.change(|w| w.delete(account, livemode, res, count, ids, op))
    }

    /// Cancels `count` random active subscriptions (or `ids`).
    pub fn cancel_subscriptions(
        &self,
        account: &str,
        livemode: bool,
        count: usize,
        ids: &[String],
    ) -> Result<Vec<String>, ControlError> {
        let op = self.op();
        self.change(|w| w.cancel_subscriptions(account, livemode, count, ids, op))
    }

    /// Every object of a resource in one account and mode, deleted ones flagged, nested lists complete:
    /// `[{"id", "deleted", "object"}]`.
    pub fn truth(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
    ) -> Result<Vec<Value>, ControlError> {
        let res = Self::resource(resource)?;
        self.read_scope(account, livemode, |scope| scope.truth(res))
    }

    /// Ids of the objects a full list would return, in list order (newest first), without the objects.
    pub fn ids(
        &self,
        account: &str,
        livemode: bool,
        resource: &str,
    ) -> Result<Vec<String>, ControlError> {
        let res = Self::resource(resource)?;
        self.read_scope(account, livemode, |scope| {
            scope
                .table(res)
                .live_ids()
                .iter()
                .rev()
                .map(|id| id.to_string())
                .collect()
        })
    }

    fn read_scope<T>(
        &self,
        account: &str,
        livemode: bool,
        read: impl FnOnce(&scope::Scope) -> T,
    ) -> Result<T, ControlError> {
        let w = self.world.read();
        let scope = w
            .scopes
            .get(&(account.to_string(), livemode))
            .ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?;
        Ok(read(scope))
    }

    /// Mints a restricted key that may read only the listed resources.
    pub fn mint_restricted_key(
        &self,
        account: &str,
        livemode: bool,
        allow: &[&str],
    ) -> Result<KeyInfo, ControlError> {
        self.world.write().mint_key(
            account,
            livemode,
            allow.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Connects `count` new accounts to the Connect platform `platform`, each with `objects` as its
    /// base count per resource in both modes (see [`Profile::objects`]); returns their ids.
    pub fn connect_accounts(
        &self,
        platform: &str,
        count: usize,
        objects: usize,
    ) -> Result<Vec<String>, ControlError> {
        let now = self.now();
        let mut world = self.world.write();
        let ids = world.connect_accounts(platform, count, objects, now);
        // A new connected account's history happened before its platform's endpoints saw it.
        world.take_pushes();
        ids
    }

    /// The connected account `account` revokes its platform's access: the platform lists it no more
    /// and its requests for it get 403.
    pub fn deauthorize(&self, account: &str) -> Result<(), ControlError> {
        self.change(|w| w.deauthorize(account))
    }

    /// A change to the world; the events it emitted are pushed (when pushes are set).
    fn change<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let (out, events) = {
            let mut world = self.world.write();
            let out = f(&mut world);
            (out, world.take_pushes())
        };
        if let Some(pusher) = self.pusher.read().as_ref() {
            pusher.send(events);
        }
        out
    }

    /// Pushes every event from now on to `config`'s targets (replacing any earlier setting).
    pub fn set_pushes(&self, config: push::PushConfig) {
        let pusher = push::Pusher::new(config, self.seed, self.push_counts.clone());
        *self.pusher.write() = Some(Arc::new(pusher));
    }

    /// Deliveries so far: made, made twice, lost, failed.
    pub fn push_counts(&self) -> [u64; 4] {
        let c = &self.push_counts;
        [&c.delivered, &c.duplicated, &c.lost, &c.failed].map(|n| n.load(Ordering::Relaxed))
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.faults.set(rules);
    }

    pub fn set_rate_limits(&self, limits: RateLimits) {
        *self.limits.write() = limits;
    }

    pub fn set_latency_ms(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Holds every `/v1` request that arrives from now on until `resume` (those already being answered
    /// finish), except the key check `GET /v1/account`; the control API keeps answering.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Serves the requests held by `pause`, and every later one at once.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Waits while the API is paused.
    async fn unpaused(&self) {
        let mut paused = self.paused.subscribe();
        // The sender lives as long as the simulator, so this cannot fail while a request is served.
        let _ = paused.wait_for(|p| !p).await;
    }

    pub fn set_event_policy(&self, policy: EventPolicy) {
        self.world.write().set_event_policy(policy);
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    pub fn reset_stats(&self) {
        self.meter.reset();
        *self.stats.lock() = Stats::default();
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![DIGITS[(n % 36) as usize]];
    n /= 36;
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A simulator serving HTTP on a loopback port; dropping it stops the server.
pub struct RunningSim {
    sim: Arc<Simulator>,
    addr: SocketAddr,
    info: StartInfo,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn sim(&self) -> &Arc<Simulator> {
        &self.sim
    }

    pub fn info(&self) -> &StartInfo {
        &self.info
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Generates the data and serves it on `127.0.0.1` at an ephemeral port.
pub async fn start(config: SimConfig) -> std::io::Result<RunningSim> {
    start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Generates the data and serves it on `addr`.
pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let sim = tokio::task::spawn_blocking(move || Simulator::new(config))
        .await
        .map_err(std::io::Error::other)?;
    serve(sim, addr).await
}

/// Serves an existing simulator on `addr`.
pub async fn serve(sim: Arc<Simulator>, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let info = sim.info(&format!("http://{addr}"));
    let task = tokio::spawn(server::accept_loop(listener, sim.clone()));
    Ok(RunningSim {
        sim,
        addr,
        info,
        task,
    })
}
