//! Provides the prebuilt DuckDB library that the `duckdb` feature links, so no build ever compiles
//! DuckDB's C++ (about 25 minutes on 2 cores, and twice when feature sets differ).
//!
//! `libduckdb-sys` links `libduckdb.so` from `DUCKDB_LIB_DIR` (set by the workspace's
//! `.cargo/config.toml`, or by the user). DuckDB's release site cannot be reached from every machine,
//! but the npm registry can, and DuckDB publishes its own release build of the library there, inside
//! `@duckdb/node-bindings-linux-{x64,arm64}`. When the directory does not hold the pinned library yet,
//! this script fetches that package with `npm pack`, checks the library's SHA-256 against the value
//! pinned below, and moves it into place atomically (concurrent builds may race; the last rename wins
//! with identical bytes). Nothing runs when the library is already there, and nothing at all without
//! the `duckdb` feature (the Lambda functions) or with `duckdb-bundled` (DuckDB compiled from source).
//!
//! The binaries find the library at run time through the rpath that `.cargo/config.toml` adds.

use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// DuckDB's version, matching the `duckdb` crate (`1.10506.x` is DuckDB 1.5.6).
const DUCKDB_VERSION: &str = "1.5.6";
/// The npm release of DuckDB's Node bindings that carries that library.
const NPM_VERSION: &str = "1.5.6-r.1";
/// Per target architecture: the npm package and the SHA-256 of the `libduckdb.so` it carries.
const PREBUILT: &[(&str, &str, &str)] = &[
    (
        "x86_64",
        "@duckdb/node-bindings-linux-x64",
        "3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633",
    ),
    (
        "aarch64",
        "@duckdb/node-bindings-linux-arm64",
        "23686593dba4ec22c6e581bb1c843b3964e84c4bc4d0063d8b4daddd2e20e30a",
    ),
];
const LIBRARY: &str = "libduckdb.so";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if env::var_os("CARGO_FEATURE_DUCKDB").is_none()
        || env::var_os("CARGO_FEATURE_DUCKDB_BUNDLED").is_some()
    {
        return;
    }
    if let Err(message) = provide() {
        // A build script reports through panics; the message is the whole story.
        panic!("\n\nThe prebuilt DuckDB library is missing.\n{message}\n");
    }
}

fn provide() -> Result<(), String> {
    let Some(dir) = env::var_os("DUCKDB_LIB_DIR").map(PathBuf::from) else {
        return Err(
            "DUCKDB_LIB_DIR is not set (the workspace's .cargo/config.toml sets it): set it to \
                    a directory for libduckdb.so, or build with the feature duckdb-bundled"
                .into(),
        );
    };
    let library = dir.join(LIBRARY);
    // Rerun when the library is replaced or removed (a missing path always reruns).
    println!("cargo:rerun-if-changed={}", library.display());

    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let Some((_, package, sha256)) = PREBUILT.iter().find(|(a, _, _)| *a == arch) else {
        return Err(format!(
            "no prebuilt DuckDB is pinned for {os}/{arch}: put DuckDB {DUCKDB_VERSION}'s {LIBRARY} in \
             {} yourself, or build with the feature duckdb-bundled",
            dir.display()
        ));
    };
    if os != "linux" {
        return Err(format!(
            "the pinned prebuilt DuckDB is for Linux, this build is for {os}: put DuckDB \
             {DUCKDB_VERSION}'s library in {} yourself, or build with the feature duckdb-bundled",
            dir.display()
        ));
    }
    if library.exists() {
        match sha256_of(&library) {
            Ok(found) if found == *sha256 => return Ok(()),
            Ok(_) if !is_ours(&dir) => {
                // A library the user put there: theirs to choose; the link will tell if it is unusable.
                println!(
                    "cargo:warning=using {} as is (not the pinned DuckDB {DUCKDB_VERSION})",
                    library.display()
                );
                return Ok(());
            }
            _ => {} // Ours but damaged (or for another architecture): fetch it again.
        }
    }
    fetch(&dir, package, sha256)
}

/// Whether the directory was filled by this script (it leaves a marker beside the library).
fn is_ours(dir: &Path) -> bool {
    dir.join(MARKER).exists()
}
const MARKER: &str = ".fetched-by-stripe-pipeline";

fn fetch(dir: &Path, package: &str, sha256: &str) -> Result<(), String> {
    let spec = format!("{package}@{NPM_VERSION}");
    println!(
        "cargo:warning=fetching DuckDB {DUCKDB_VERSION} ({spec}, npm) into {}",
        dir.display()
    );
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let result = fetch_into(&work, dir, &spec, sha256);
    let _ = fs::remove_dir_all(&work);
    result
}

fn fetch_into(work: &Path, dir: &Path, spec: &str, sha256: &str) -> Result<(), String> {
    run(
        Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(work)
            .arg(spec),
        &format!("npm pack {spec}"),
        "install Node.js and npm (Debian: apt-get install npm)",
    )?;
    let tarball = fs::read_dir(work)
        .map_err(|e| format!("cannot read {}: {e}", work.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "tgz"))
        .ok_or_else(|| format!("npm pack {spec} wrote no .tgz into {}", work.display()))?;
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(work)
            .arg(format!("package/{LIBRARY}")),
        &format!("tar -xzf {}", tarball.display()),
        "check the disk has room (the library is 71 MB)",
    )?;
    let extracted = work.join("package").join(LIBRARY);
    let found = sha256_of(&extracted)?;
    if found != sha256 {
        return Err(format!(
            "{LIBRARY} from {spec} has SHA-256 {found}, the pinned value is {sha256}: the package \
             changed or the download is damaged; nothing was installed"
        ));
    }
    // The library keeps the archive's timestamp, so cargo sees it unchanged on the next build.
    fs::write(dir.join(MARKER), format!("{spec}\n"))
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    fs::rename(&extracted, dir.join(LIBRARY))
        .map_err(|e| format!("cannot move {LIBRARY} into {}: {e}", dir.display()))?;
    Ok(())
}

fn run(command: &mut Command, what: &str, fix: &str) -> Result<(), String> {
    match command.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{what}` failed ({}): {}\nTo fix: {fix}; or put DuckDB {DUCKDB_VERSION}'s {LIBRARY} into \
             DUCKDB_LIB_DIR yourself.",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{what}`: {e}\nTo fix: {fix}.")),
    }
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
