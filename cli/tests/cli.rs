//! The `stripe-pipeline` binary: exit codes, messages, and that a bad key writes nothing.

use std::process::Command;
use stripe_sim::SimConfig;

/// The simulator's first live account: its key and its id, and the API base to reach it.
fn first_live_account(sim: &stripe_sim::RunningSim) -> (String, String, String) {
    let key = sim.info().key("secret", "live", 0).unwrap();
    (key, sim.info().accounts[0].id.clone(), sim.base_url())
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stripe-pipeline"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_key_exits_2_naming_the_account_and_writes_nothing() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let good = sim.info().key("secret", "test", 0).unwrap();
    let base = sim.base_url();
    let out2 = out.clone();
    let output = tokio::task::spawn_blocking(move || {
        bin()
            .args(["sync", "--quiet", "--api-base", &base, "--output-dir"])
            .arg(&out2)
            .env(
                "STRIPE_PIPELINE_KEYS",
                format!("good={good},broken=sk_test_thisisnotakey0000"),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("account 'broken'") && stderr.contains("invalid"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("thisisnotakey"),
        "the key is not echoed: {stderr}"
    );
    assert!(!out.exists(), "nothing is written when a key is invalid");
}

/// `stripe-pipeline tables | head -1`: a reader that stops reading ends the CLI quietly (by SIGPIPE, as
/// Unix tools end), not with a panic message.
#[cfg(unix)]
#[test]
fn a_reader_that_stops_reading_ends_the_cli_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = bin().arg("tables").stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(13),
        "ended by SIGPIPE: {stderr}"
    );
}

#[test]
fn bad_configuration_exits_2_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "rate_budget = 3\n[[accounts]]\nname = \"x\"\nkey_env = \"NOPE_NOT_SET\"\n",
    )
    .unwrap();
    let output = bin()
        .args(["sync", "--quiet", "--config"])
        .arg(&cfg)
        .env_remove("STRIPE_PIPELINE_KEYS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rate_budget") && stderr.contains("NOPE_NOT_SET"),
        "{stderr}"
    );
    let output = bin().args(["sync", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("--demo"));
}

#[test]
fn the_environment_configures_the_cli_over_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "concurrency = 4\n").unwrap();
    let sync = |concurrency: &str| {
        let output = bin()
            .args(["sync", "--quiet", "--config"])
            .arg(&cfg)
            .env("STRIPE_PIPELINE_KEYS", "acme=sk_test_123")
            .env("STRIPE_PIPELINE_CONCURRENCY", concurrency)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        stderr
    };
    // A variable that does not parse names itself and stops the run before anything is read.
    let stderr = sync("many");
    assert!(
        stderr.contains("STRIPE_PIPELINE_CONCURRENCY must be a whole number, got 'many'"),
        "{stderr}"
    );
    // One that parses replaces the file's value, and is checked like it.
    let stderr = sync("500");
    assert!(
        stderr.contains("concurrency must be between 1 and 64, got 500"),
        "{stderr}"
    );
    assert!(!stderr.contains("sk_test_123"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_status_reports_tables_per_account() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, merchant, base) = first_live_account(&sim);
    let out = dir.path().to_path_buf();
    let (sync, status) = tokio::task::spawn_blocking(move || {
        let sync = bin()
            .args([
                "sync",
                "--quiet",
                "--dataset",
                "customers",
                "--dataset",
                "charges",
                "--api-base",
                &base,
                "--output-dir",
            ])
            .arg(&out)
            .env("STRIPE_PIPELINE_KEYS", format!("acme={key}"))
            .output()
            .unwrap();
        let status = bin()
            .args(["status", "--output-dir"])
            .arg(&out)
            .output()
            .unwrap();
        (sync, status)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert_eq!(
        sync.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(
        stdout.contains("API calls") && stdout.contains("charges"),
        "{stdout}"
    );
    let status = String::from_utf8_lossy(&status.stdout);
    let line = status
        .lines()
        .find(|l| l.contains(" charges ") && l.contains(&merchant))
        .unwrap_or_else(|| panic!("{status}"));
    let truth = sim.sim().ids(&merchant, true, "charges").unwrap().len();
    assert!(
        line.contains(&format!(" {truth} ")),
        "{line} should show {truth} rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_lists_a_dataset_again_in_full_on_the_next_sync() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, merchant, base) = first_live_account(&sim);
    let out = dir.path().to_path_buf();
    let run = move |args: &[&str]| {
        bin()
            .args(args)
            .arg("--output-dir")
            .arg(&out)
            .env("STRIPE_PIPELINE_KEYS", format!("acme={key}"))
            .env("STRIPE_PIPELINE_API_BASE", &base)
            .env("STRIPE_PIPELINE_DATASETS", "customers,charges")
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let (first, resync, second, unknown, bad_dataset) = tokio::task::spawn_blocking(move || {
        let first = run(&["sync", "--quiet"]);
        let resync = run(&["resync", "--account", "acme", "--dataset", "customers"]);
        let second = run(&["sync", "--quiet"]);
        let unknown = run(&["resync", "--account", "nobody"]);
        let bad_dataset = run(&["resync", "--account", "acme", "--dataset", "nope"]);
        (first, resync, second, unknown, bad_dataset)
    })
    .await
    .unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let said = text(&resync);
    assert_eq!(resync.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&merchant) && said.contains("customers marked for a full list"),
        "{said}"
    );
    // The next sync lists customers in full again; charges only get their changes.
    let summary = text(&second);
    assert_eq!(second.status.code(), Some(0), "{summary}");
    let line = |dataset: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(dataset))
            .unwrap_or_else(|| panic!("{summary}"))
            .to_string()
    };
    assert!(line("customers").contains("(backfill)"), "{summary}");
    assert!(!line("charges").contains("(backfill)"), "{summary}");
    // Mistakes are named, with what exists.
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("no account named 'nobody'") && text(&unknown).contains("acme"),
        "{}",
        text(&unknown)
    );
    assert_eq!(bad_dataset.status.code(), Some(2));
    assert!(
        text(&bad_dataset).contains("unknown dataset 'nope'"),
        "{}",
        text(&bad_dataset)
    );
}

use stripe_pipeline_testkit::postgres as postgres_server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_postgres_syncs_and_status_reads_it() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = sim.info().key("secret", "test", 0).unwrap();
    let merchant = sim.info().accounts[0].id.clone();
    let base = sim.base_url();
    let out = dir.path().to_path_buf();
    let url = postgres_server::server().database("cli");
    let (sync, status, refused) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str], url: &str| {
            bin()
                .args(args)
                .args(["--destination", "postgres", "--output-dir"])
                .arg(&out)
                .env("STRIPE_PIPELINE_KEYS", format!("acme={key}"))
                .env("STRIPE_PIPELINE_POSTGRES_URL", url)
                .output()
                .unwrap()
        };
        let sync = run(
            &[
                "sync",
                "--quiet",
                "--dataset",
                "charges",
                "--api-base",
                &base,
            ],
            &url,
        );
        let status = run(&["status"], &url);
        // A server that is not there: exit 3, naming it, never the password.
        let refused = run(
            &[
                "sync",
                "--quiet",
                "--dataset",
                "charges",
                "--api-base",
                &base,
            ],
            "postgres://loader:hunter2-secret@127.0.0.1:1/warehouse?sslmode=disable",
        );
        (sync, status, refused)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert_eq!(
        sync.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(
        stdout.contains("Warehouse: PostgreSQL postgres@127.0.0.1"),
        "{stdout}"
    );
    let status = String::from_utf8_lossy(&status.stdout);
    let line = status
        .lines()
        .find(|l| l.contains(" charges ") && l.contains(&merchant) && l.contains("stripe_testmode"))
        .unwrap_or_else(|| panic!("{status}"));
    let truth = sim.sim().ids(&merchant, false, "charges").unwrap().len();
    assert!(
        line.contains(&format!(" {truth} ")),
        "{line} should show {truth} rows"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("loader@127.0.0.1:1/warehouse") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_export_writes_stripes_layout_and_export_runs_alone() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = sim.info().key("secret", "live", 0).unwrap();
    let base = sim.base_url();
    let out = dir.path().to_path_buf();
    let (sync, dates, again) = tokio::task::spawn_blocking(move || {
        let sync = bin()
            .args([
                "sync",
                "--quiet",
                "--export",
                "--destination",
                "none",
                "--dataset",
                "charges",
                "--api-base",
                &base,
                "--output-dir",
            ])
            .arg(&out)
            .env("STRIPE_PIPELINE_KEYS", format!("acme={key}"))
            .output()
            .unwrap();
        // The run dates the sync wrote, before the second export can add a later minute.
        let dates = run_dates(&out.join("lake/export/livemode"));
        let again = bin()
            .args(["export", "--destination", "none", "--output-dir"])
            .arg(&out)
            .output()
            .unwrap();
        (sync, dates, again)
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert_eq!(
        sync.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    assert!(stdout.contains("Export "), "{stdout}");
    // The sync exported one live run date, complete, with the charges of the account.
    assert_eq!(dates.len(), 1, "{dates:?}");
    assert!(dates[0].join("coreapi_SUCCESS").is_file());
    let charges: Vec<_> = std::fs::read_dir(dates[0].join("charges"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let merchant = &sim.info().accounts[0].id;
    assert!(
        charges
            .iter()
            .any(|f| f.starts_with(merchant.as_str()) && f.ends_with(".parquet")),
        "{charges:?}"
    );
    assert!(
        !dir.path().join("lake/export/testmode").exists(),
        "no test-mode data, no export"
    );
    // Alone: the same run date is already complete, or a later one is built on it.
    let stdout = String::from_utf8_lossy(&again.stdout);
    let status = bin()
        .args(["status", "--destination", "none", "--output-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(
        listed.contains("livemode/") && listed.contains("complete"),
        "{listed}"
    );
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("already complete") || stdout.contains("files copied"),
        "{stdout}"
    );
}

/// The run-date folders of an export tree (named by the UTC minute of their run).
fn run_dates(mode: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(mode)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn an_unsupported_export_url_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "export = true\nexport_url = \"ftp://host/x\"\n[[accounts]]\nname = \"x\"\nkey = \"sk_test_x\"\n",
    )
    .unwrap();
    let output = bin()
        .args(["sync", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("export_url") && stderr.contains("gs://"),
        "{stderr}"
    );
}

#[test]
fn an_unusable_export_store_stops_the_sync_before_it_reads_anything() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "export = true\nexport_url = \"{}/exports\"\noutput_dir = \"{}\"\n[[accounts]]\nname = \"x\"\nkey = \"sk_test_x\"\n",
            blocker.display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let output = bin()
        .args(["sync", "--quiet", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("export store") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/lake").exists(), "nothing synced");
}

/// A sync into Snowflake (fakesnow) with debug logs on, its key in an environment variable: it loads,
/// and nothing it prints holds the key or a login token. A key that is not one stops the run naming
/// the variable, without its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snowflake_sync_with_debug_logs_never_shows_the_key() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let fakesnow = stripe_pipeline_testkit::snowflake::Fakesnow::start();
    let (key, _, base) = first_live_account(&sim);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "destination = \"snowflake\"\ndatasets = [\"customers\"]\n[snowflake]\naccount = \"emulator\"\nuser = \"LOADER\"\ndatabase = \"ANALYTICS\"\nprivate_key_env = \"SF_LOADER_KEY\"\nurl = \"{}\"\n",
            fakesnow.base_url
        ),
    )
    .unwrap();
    let pem = include_str!("../../shared/pipeline/src/warehouse/snowflake/testdata/rsa_key.p8");
    let out = dir.path().to_path_buf();
    let run = move |pem: &str| {
        bin()
            .args(["sync", "--api-base", &base, "--config"])
            .arg(&cfg)
            .arg("--output-dir")
            .arg(&out)
            .env("STRIPE_PIPELINE_KEYS", format!("acme={key}"))
            .env("STRIPE_PIPELINE_LOG", "debug")
            .env("SF_LOADER_KEY", pem)
            .output()
            .unwrap()
    };
    let (good, bad) = tokio::task::spawn_blocking(move || {
        (
            run(pem),
            run("-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5\n-----END PRIVATE KEY-----\n"),
        )
    })
    .await
    .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(good.status.code(), Some(0), "{printed}");
    assert!(printed.contains("Snowflake"), "{printed}");
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!printed.contains(line), "a line of the key was printed");
    }
    // A JWT (and Snowflake's session token) would start with a base64 JSON header.
    assert!(!printed.contains("eyJ"), "a token was printed");
    assert!(
        !printed.contains("Snowflake Token"),
        "a session token was printed"
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("SF_LOADER_KEY"), "{stderr}");
    assert!(!stderr.contains("bm90LWEta2V5"), "{stderr}");
}

/// `check` against a good set-up: every part ok, exit 0. Against a broken one — a revoked key, a
/// restricted key without one permission, an output directory that is a file, a PostgreSQL that does
/// not answer — each part is named with what to fix, exit 1, and no password is shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_part_that_works_and_each_to_fix() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let (key, merchant, base) = first_live_account(&sim);
    let limited =
        stripe_pipeline_testkit::acceptance::key_without(&sim, &merchant, true, "charges");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let (good, bad) = tokio::task::spawn_blocking(move || {
        let check = |keys: String| {
            let mut c = bin();
            c.args(["check", "--dataset", "charges", "--dataset", "customers"])
                .args(["--api-base", &base])
                .env("STRIPE_PIPELINE_KEYS", keys);
            c
        };
        let good = check(format!("acme={key}"))
            .arg("--output-dir")
            .arg(&out)
            .output()
            .unwrap();
        let bad = check(format!(
            "broken=sk_live_thisisnotakey0000,limited={limited}"
        ))
        .arg("--output-dir")
        .arg(&blocker)
        .args(["--destination", "postgres"])
        .env(
            "STRIPE_PIPELINE_POSTGRES_URL",
            "postgres://loader:hunter2@127.0.0.1:1/analytics?sslmode=disable",
        )
        .output()
        .unwrap();
        (good, bad)
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let printed = text(&good);
    assert_eq!(good.status.code(), Some(0), "{printed}");
    let line = |printed: &str, part: &str| {
        printed
            .lines()
            .find(|l| l.starts_with(part))
            .unwrap_or_else(|| panic!("no line for {part}: {printed}"))
            .to_string()
    };
    let key_line = line(&printed, "key of acme");
    assert!(
        key_line.contains(" ok ") && key_line.contains(&format!("live mode, account {merchant}")),
        "{key_line}"
    );
    assert!(
        line(&printed, "acme: datasets").contains("2 of 2 readable"),
        "{printed}"
    );
    assert!(line(&printed, "lake ").contains(" ok "), "{printed}");
    assert!(
        line(&printed, "warehouse DuckDB").contains(" ok "),
        "{printed}"
    );

    let printed = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{printed}");
    assert!(
        line(&printed, "key of broken").contains("FAILED"),
        "{printed}"
    );
    assert!(
        line(&printed, "key of broken").contains("invalid or revoked"),
        "{printed}"
    );
    assert!(
        line(&printed, "key of limited").contains(" ok "),
        "{printed}"
    );
    let charges = line(&printed, "limited: charges");
    assert!(
        charges.contains("FAILED") && charges.contains("rak_charge_read"),
        "{charges}"
    );
    assert!(
        line(&printed, "limited: datasets").contains("1 of 2 readable"),
        "{printed}"
    );
    assert!(line(&printed, "lake ").contains("FAILED"), "{printed}");
    let warehouse = line(&printed, "warehouse");
    assert!(
        warehouse.contains("FAILED") && warehouse.contains("loader@127.0.0.1:1/analytics"),
        "{warehouse}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");
}

/// A running `stripe-pipeline serve-webhooks`: its stdout lines as they come, its stderr at the end.
struct Daemon {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Daemon {
    fn start(mut command: Command) -> Daemon {
        use std::io::{BufRead, Read};
        use std::process::Stdio;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Waits (at most `secs`) until the lines printed so far satisfy `done`.
    fn wait_for(&mut self, secs: u64, what: &str, done: impl Fn(&[String]) -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !done(&self.seen) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{what}: not within {secs} s; printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Events applied so far, from the `pushed: N events …` lines.
    fn pushed(lines: &[String]) -> u64 {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("pushed: "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Stops it as Ctrl-C does; its stderr.
    fn stop(mut self) -> String {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        assert!(status.success(), "{status}: {stderr}");
        stderr
    }
}

/// `serve-webhooks` keeps DuckDB equal to Stripe with no poll: Stripe's signed deliveries of two
/// accounts (one whose events come in another API version, so they are read again by id), delayed,
/// reordered and some made twice, are applied within seconds. Every kind of bad delivery is refused
/// with a 4xx, nothing of it applied and nothing of its body logged. Pushes that are lost are caught
/// by the next whole sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_keep_duckdb_equal_and_a_sync_catches_the_lost_ones() {
    use stripe_pipeline::catalog::Catalog;
    use stripe_pipeline::warehouse::duckdb::DuckDb;
    use stripe_pipeline_testkit::acceptance::{
        bad_deliveries, evented_changes, good_delivery, pushes_settled, BadDelivery, NEVER_LOGGED,
    };
    use stripe_pipeline_testkit::moto::http_with_headers;
    use stripe_sim::push::{PushConfig, Target};
    const SECRET: &str = "whsec_pipeline_test_0123456789abcdef";
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let info = sim.info();
    let accounts = [("acme", 0), ("globex", 1)];
    let keys: Vec<String> = accounts
        .iter()
        .map(|(name, n)| format!("{name}={}", info.key("secret", "live", *n).unwrap()))
        .collect();
    let merchants: Vec<String> = accounts
        .iter()
        .map(|(_, n)| info.accounts[*n].id.clone())
        .collect();
    let names = ["customers", "products", "charges", "invoices"];
    let datasets: Vec<_> = names
        .iter()
        .map(|n| Catalog::get().dataset(n).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let command = |what: &str| {
        let mut c = bin();
        c.arg(what)
            .args(names.iter().flat_map(|n| ["--dataset", n]))
            .args(["--api-base", &sim.base_url(), "--output-dir"])
            .arg(&out)
            .env("STRIPE_PIPELINE_KEYS", keys.join(","))
            .env(
                "STRIPE_PIPELINE_WEBHOOK_SECRET",
                format!("whsec_rolled_out_0000,{SECRET}"),
            );
        c
    };
    let mut serve = command("serve-webhooks");
    serve.args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--sync-every",
        "3600",
    ]);
    let mut daemon = Daemon::start(serve);
    daemon.wait_for(300, "the first sync", |l| {
        l.iter().any(|l| l.starts_with("sync: done"))
    });

    // Every kind of bad delivery: refused, and its body (which holds a marker) never logged.
    let acme = format!("http://127.0.0.1:{port}/webhooks/acme");
    let (url, other) = (
        acme.as_str(),
        format!("http://127.0.0.1:{port}/webhooks/initech"),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (event, signature) = good_delivery(SECRET, now);
    let mut cases: Vec<(String, BadDelivery)> = bad_deliveries(SECRET, now)
        .into_iter()
        .map(|c| (url.to_string(), c))
        .collect();
    cases.push((
        other.clone(),
        BadDelivery {
            what: "an account not configured",
            method: "POST",
            signature: Some(signature),
            body: event,
            status: 404,
        },
    ));
    for (url, case) in cases {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(s) = &case.signature {
            headers.push(("stripe-signature", s.as_str()));
        }
        let (got, answer) =
            http_with_headers(case.method, &url, &headers, case.body.into_bytes()).await;
        assert_eq!(
            got,
            case.status,
            "{}: {}",
            case.what,
            String::from_utf8_lossy(&answer)
        );
    }

    // Pushes from now on: delayed, reordered, some twice; each change in a second of its own.
    let target = |(name, n): &(&str, usize)| Target::Webhook {
        account: info.accounts[*n].id.clone(),
        livemode: None,
        url: format!("http://127.0.0.1:{port}/webhooks/{name}"),
        secret: SECRET.into(),
    };
    let pushes = |loss_rate: f64| PushConfig {
        targets: accounts.iter().map(target).collect(),
        delay_ms: 50,
        jitter_ms: 400,
        duplicate_rate: 0.3,
        loss_rate,
    };
    sim.sim().set_pushes(pushes(0.0));
    let changes = |sim: &stripe_sim::RunningSim| {
        let mut created = Vec::new();
        for m in &merchants {
            created.extend(evented_changes(sim, m, true));
        }
        created
    };
    changes(&sim);
    let [delivered, duplicated, lost, failed] = pushes_settled(&sim).await;
    assert!(
        delivered > 10 && duplicated > 0,
        "{delivered} delivered, {duplicated} twice"
    );
    assert_eq!((lost, failed), (0, 0));
    daemon.wait_for(60, "every delivery applied", |l| {
        Daemon::pushed(l) >= delivered
    });
    // Each delivery once: none of the refused ones was queued.
    assert_eq!(Daemon::pushed(&daemon.seen), delivered, "{:?}", daemon.seen);
    let stderr = daemon.stop();
    assert!(!stderr.contains(NEVER_LOGGED), "{stderr}");
    let scopes: Vec<(String, bool)> = merchants.iter().map(|m| (m.clone(), true)).collect();
    stripe_pipeline_testkit::acceptance::assert_scopes_equal(&out, &sim, &scopes, &datasets).await;

    // The lost round: no push arrives, so its changes are not in the tables until a sync reads them.
    sim.sim().set_pushes(pushes(1.0));
    let unseen = changes(&sim);
    let [_, _, lost, _] = pushes_settled(&sim).await;
    assert!(lost > 0);
    {
        let db = DuckDb::open(&out.join("stripe_pipeline.duckdb")).unwrap();
        let have = db.query_strings("SELECT id FROM stripe.customers").unwrap();
        for id in &unseen {
            assert!(
                !have.iter().any(|row| row[0].as_deref() == Some(id)),
                "{id} arrived"
            );
        }
    }
    // The feed reads up to a lag behind Stripe's now (late events): past it.
    sim.sim().advance(120);
    let mut sync = command("sync");
    sync.arg("--quiet");
    let synced = tokio::task::spawn_blocking(move || sync.output().unwrap())
        .await
        .unwrap();
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    stripe_pipeline_testkit::acceptance::assert_scopes_equal(&out, &sim, &scopes, &datasets).await;
}
