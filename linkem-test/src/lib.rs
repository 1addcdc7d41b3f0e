//! The test harness for `#[linkem::test]`: `cargo test` (and `cargo nextest`) collect
//! every such test in a test binary, run namespace tests one at a time unless a test
//! opts into `parallel`, and decide privileges once, before any thread starts.
//!
//! Setup, a block in the crate's `Cargo.toml` (linkem is not on crates.io: see the
//! README for the dependency lines):
//!
//! ```toml
//! [[test]]
//! name = "net"
//! harness = false
//! ```
//!
//! and in `tests/net.rs`:
//!
//! ```no_run
//! linkem_test::main!();
//!
//! #[linkem::test(peers = 2, link(1, 2, latency = "20ms"))]
//! async fn pings(_peer: linkem::Peer) { /* ... */ }
//! ```
//!
//! Standard libtest flags work (filters, `--exact`, `--skip`, `--ignored`,
//! `--include-ignored`, `--list`, `--format terse`, `--test-threads`).
//!
//! # One trial per backend
//!
//! A test runs once on each backend ([`BackendKind`]) available, and its trial's name
//! says which: `pings::kernel` and `pings::userspace` (the test's path, then `::` and
//! the backend; a suffix rather than a prefix, so a filter on the test's path still
//! selects both, `::userspace` selects one backend's trials, and `--exact` names one).
//! The userspace backend is available wherever the privileges are; the kernel backend
//! too, but the kernel trial of a test that needs sch_netem is listed ignored, with the
//! reason, on a kernel without it. `LINKEM_BACKEND=kernel` (or `userspace`) runs only
//! that backend's trials. A test pinned with `backend = "kernel"` has the one trial.
//!
//! A trial runs on one thread, on a current-thread runtime, and sets its backend and
//! seed there (`linkem::testing::trial`): the network the harness builds, and every
//! network a test builds itself with [`BackendKind::Auto`] (`Network::new`) on that
//! thread, use the trial's backend. A network built on another thread (a thread the
//! test spawns, a runtime of its own) gets `LINKEM_BACKEND` or Auto instead.
//!
//! # Seeds and replay
//!
//! Every trial has a seed: the attribute's `seed`, else a random one. The networks of
//! the trial that set no seed of their own get it (the harness-built one through its
//! builder), and `LINKEM_SEED` overrides it for every network of a run. A failing test
//! prints its seed, each network's, and the command that replays it:
//!
//! ```text
//! LINKEM_SEED=<seed> LINKEM_BACKEND=<backend> cargo test -p <package> --test <target> -- --exact <trial>
//! ```
//!
//! A test that captures (the attribute's `capture`, or `LINKEM_CAPTURE=<dir>` for the
//! run) also names each network's capture file in that report; with `capture =
//! "failed"` or `LINKEM_CAPTURE_KEEP=failed` a passing trial's files are removed.
//!
//! A passing test prints nothing. What a replay reproduces is each link's sequence of
//! fates (lost, duplicated, corrupted, reordered, the delay drawn) for the same
//! traffic; the package and target come from [`main!`] (a target whose name has a
//! `-` and a custom `path` is printed with `_`, as cargo names its crate).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use linkem::capture::CaptureKeep;
use linkem::network::{BackendKind, BACKEND_ENV, CAPTURE_ENV, SEED_ENV};
use linkem::testing::capture::{self, Capture};
use linkem::testing::spec::{TestDef, TestSpec};
use linkem::testing::trial::{self, NetworkRecord, TrialCapture};
use linkem::testing::{runner, Failure};

pub mod lock;
pub mod privileges;

pub use privileges::Privileges;

/// Why a test that needs sch_netem is ignored on this kernel.
const NO_NETEM: &str = "needs sch_netem, which this kernel lacks";

/// Defines `main` for a test binary with `harness = false`.
///
/// It records which cargo target the binary is (for the replay command a failing test
/// prints) and calls [`run_target`].
#[macro_export]
macro_rules! main {
    () => {
        fn main() -> ::std::process::ExitCode {
            $crate::run_target($crate::Target {
                package: ::core::env!("CARGO_PKG_NAME"),
                crate_name: ::core::env!("CARGO_CRATE_NAME"),
                bin: ::core::option_env!("CARGO_BIN_NAME"),
                manifest_dir: ::core::env!("CARGO_MANIFEST_DIR"),
            })
        }
    };
}

/// The cargo target a test binary was built from, as [`main!`] captures it at compile
/// time: what the replay command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The package (`cargo test -p <package>`).
    pub package: &'static str,
    /// The crate's name: the target's name with `-` made `_`.
    pub crate_name: &'static str,
    /// The binary's name, when the target is a `[[bin]]`.
    pub bin: Option<&'static str>,
    /// The package's directory, to tell a `tests/my-test.rs` target from
    /// `tests/my_test.rs`.
    pub manifest_dir: &'static str,
}

impl Target {
    /// The cargo command that runs this binary, up to and including `--`.
    pub fn cargo_command(&self) -> String {
        match self.bin {
            Some(bin) => format!("cargo run -p {} --bin {bin} --", self.package),
            None => format!(
                "cargo test -p {} --test {} --",
                self.package,
                self.test_name()
            ),
        }
    }

    /// The test target's name: cargo gives the crate its name with `-` made `_`, so a
    /// name with `_` may have been written with `-`; the file cargo found it by says
    /// which (`tests/<name>.rs` or `tests/<name>/main.rs`).
    fn test_name(&self) -> String {
        let dashed = self.crate_name.replace('_', "-");
        if dashed == self.crate_name {
            return dashed;
        }
        let tests = std::path::Path::new(self.manifest_dir).join("tests");
        let found = |name: &str| {
            tests.join(format!("{name}.rs")).is_file() || tests.join(name).join("main.rs").is_file()
        };
        if found(&dashed) && !found(self.crate_name) {
            dashed
        } else {
            self.crate_name.to_string()
        }
    }
}

/// [`run_target`] for a binary whose cargo target is unknown: a failing test's replay
/// command names the binary itself.
pub fn run() -> ExitCode {
    run_with(None)
}

/// Decides privileges, collects every `#[linkem::test]` of the binary, runs each on
/// every backend of the run and returns the exit code (never `process::exit`, so
/// destructors run).
///
/// A passing test is quiet: the panics of its threads and its peers' threads are kept
/// and shown only when it fails (see `linkem::testing::capture` for what stable Rust
/// cannot capture: `println!` output, child processes); `--nocapture` shows them as
/// they happen.
pub fn run_target(target: Target) -> ExitCode {
    run_with(Some(target))
}

fn run_with(target: Option<Target>) -> ExitCode {
    // First, while the process is single-threaded: entering a user namespace needs it.
    let real_uid = nix::unistd::getuid().as_raw();
    let privileges = privileges::acquire();
    let args = Arguments::from_args();
    let backends = match backends_of_run() {
        Ok(backends) => backends,
        Err(e) => {
            eprintln!("linkem-test: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.nocapture {
        capture::install_panic_hook();
    }
    // Known before any test starts, so that tests this kernel cannot serve are listed
    // as ignored: under `cargo nextest` (a process per test) a test that ignores itself
    // at run time would count as passed.
    let netem = match privileges.missing() {
        Some(_) => true, // every namespace test is ignored for that reason already
        None if !backends.contains(&BackendKind::Kernel) => true, // nothing asks
        None => linkem::tc::netem_available().unwrap_or(false),
    };
    let context = Context {
        privileges,
        netem,
        uid: real_uid,
        flag_ignored: args.list || args.ignored || args.include_ignored,
        run_ignored: args.ignored || args.include_ignored,
        backends,
        target,
    };
    let trials = collect(linkem::__private::TESTS.iter(), &context);
    // Tests that cannot run here say why, each; the fix is said once.
    if let Some(reason) = context.privileges.missing() {
        eprintln!("linkem-test: every namespace test is ignored: {reason}");
    } else if context.lacks_netem_count(linkem::__private::TESTS.iter()) > 0 {
        eprintln!(
            "linkem-test: this kernel lacks sch_netem, so the kernel-backend trials of the \
             tests that need it are ignored (their userspace trials run); to run them, {}",
            linkem::error::NETEM_HINT
        );
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// The backends whose trials this run has: the one `LINKEM_BACKEND` names, else both.
fn backends_of_run() -> Result<Vec<BackendKind>, linkem::Error> {
    let requested = match std::env::var(BACKEND_ENV) {
        Ok(value) => value.parse()?,
        Err(_) => BackendKind::Auto,
    };
    Ok(match requested {
        BackendKind::Auto => vec![BackendKind::Kernel, BackendKind::Userspace],
        one => vec![one],
    })
}

/// What the harness knows before any test runs.
#[derive(Debug, Clone)]
pub struct Context {
    /// How namespace tests run, or why they cannot.
    pub privileges: Privileges,
    /// Whether this kernel has sch_netem.
    pub netem: bool,
    /// The real user id, for the serial lock's file.
    pub uid: u32,
    /// Whether tests that will not run are flagged ignored for libtest-mimic: when
    /// listing (nextest reads `--list --ignored`) and when `--ignored` or
    /// `--include-ignored` selects by the flag. Otherwise such a test runs and reports
    /// itself ignored with its reason, because libtest-mimic shows a flagged test as a
    /// bare "ignored".
    pub flag_ignored: bool,
    /// Whether tests declared `ignore` are to run (`--ignored`, `--include-ignored`).
    pub run_ignored: bool,
    /// The backends a test runs on (each its own trial), in order.
    pub backends: Vec<BackendKind>,
    /// The cargo target of the binary, for the replay command.
    pub target: Option<Target>,
}

impl Context {
    /// How many kernel trials are ignored for a missing sch_netem.
    fn lacks_netem_count(&self, defs: impl Iterator<Item = &'static TestDef>) -> usize {
        if self.netem || !self.backends.contains(&BackendKind::Kernel) {
            return 0;
        }
        defs.map(|def| (def.spec)())
            .filter(|spec| spec.needs_netem() && spec.backend() != Some(BackendKind::Userspace))
            .count()
    }

    /// The backends `spec` runs on in this run: its pinned one, else every one.
    fn backends_for(&self, spec: &linkem::testing::TestSpec) -> Vec<BackendKind> {
        match spec.backend() {
            Some(pinned) => self
                .backends
                .iter()
                .copied()
                .filter(|&b| b == pinned)
                .collect(),
            None => self.backends.clone(),
        }
    }

    /// The command that runs trial `name` again with `seed` on `backend`.
    fn replay_command(&self, seed: &str, backend: BackendKind, name: &str) -> String {
        let program = match &self.target {
            Some(target) => target.cargo_command(),
            None => std::env::args()
                .next()
                .unwrap_or_else(|| "<test binary>".into()),
        };
        format!("{SEED_ENV}={seed} {BACKEND_ENV}={backend} {program} --exact {name}")
    }
}

/// The trials for a set of test definitions: one per test and backend, sorted by name.
pub fn collect(defs: impl Iterator<Item = &'static TestDef>, context: &Context) -> Vec<Trial> {
    let mut trials: Vec<Trial> = defs
        .flat_map(|def| {
            let spec = (def.spec)();
            context
                .backends_for(&spec)
                .into_iter()
                .map(move |backend| trial(def, backend, context.clone()))
        })
        .collect();
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials
}

/// The name of `def`'s trial on `backend`: its path, `::`, the backend.
pub fn trial_name(def: &TestDef, backend: BackendKind) -> String {
    format!("{}::{backend}", def.path())
}

fn trial(def: &'static TestDef, backend: BackendKind, context: Context) -> Trial {
    let spec = (def.spec)();
    let name = trial_name(def, backend);
    // Why the test cannot run here at all, even when ignored tests are asked for.
    let cannot_run: Option<String> = match context.privileges.missing() {
        Some(reason) => Some(reason.to_string()),
        None => (backend == BackendKind::Kernel && spec.needs_netem() && !context.netem)
            .then(|| NO_NETEM.to_string()),
    };
    let declared = spec.is_ignored().then(|| spec.ignore_reason());
    let flagged = context.flag_ignored && (cannot_run.is_some() || declared.is_some());
    Trial::ignorable_test(name.clone(), move || {
        if let Some(reason) = cannot_run {
            return Ok(Completion::ignored_with(reason));
        }
        if let (Some(reason), false) = (declared, context.run_ignored) {
            return Ok(reason.map_or_else(Completion::ignored, Completion::ignored_with));
        }
        let _serial = (!spec.is_parallel()).then(|| lock::serialize(&lock::lock_path(context.uid)));
        // The panics of this test, shown if it fails.
        let captured = Capture::new();
        let capturing = captured.enter();
        // The backend and seed of every network built on this thread.
        let seed = spec.seed().unwrap_or_else(random_seed);
        let (capture, keep) = trial_capture(&spec, &name).map_err(Failed::from)?.unzip();
        let on_trial = trial::enter(backend, seed, capture);
        // A runtime of its own per test, on this thread (so the trial's settings reach
        // every network the test builds): tests cannot disturb each other through it,
        // and it is gone (with its threads) when the test ends.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot start the test's runtime: {e}")))?;
        let started = Instant::now();
        let outcome = runtime.block_on(runner::run(&spec));
        drop(runtime);
        let networks = on_trial.networks();
        if keep == Some(CaptureKeep::Failed) && !matches!(outcome, Err(Failure::Failed(_))) {
            // A passing or ignored trial keeps no capture; a file that cannot be removed
            // is said, since it would be taken for a failure's.
            if let Err(e) = on_trial.remove_captures() {
                eprintln!("linkem: {name}: cannot remove its capture: {e}");
            }
        }
        drop(on_trial);
        drop(capturing);
        match outcome {
            Ok(()) => Ok(Completion::Completed),
            Err(Failure::Unsupported(reason)) => Ok(Completion::ignored_with(reason)),
            Err(Failure::Failed(message)) => {
                let mut text = format!(
                    "{message}\n(at {}:{}, after {:.1?})",
                    def.file,
                    def.line,
                    started.elapsed()
                );
                text.push_str("\n\n");
                text.push_str(&replay(&context, backend, seed, &networks, &name));
                let panics = captured.take();
                if !panics.is_empty() {
                    text.push_str("\n\npanics during the test:\n");
                    text.push_str(panics.trim_end());
                }
                Err(Failed::from(text))
            }
        }
    })
    .with_ignored_flag(flagged)
}

/// Where the trial's captures go, and which it keeps, if it captures: `LINKEM_CAPTURE`
/// makes every trial capture, the attribute's `capture` its own test's;
/// `LINKEM_CAPTURE_KEEP` wins over the attribute's mode. The directory is created, and
/// named absolutely so that a failure report's path can be opened from anywhere.
fn trial_capture(
    spec: &TestSpec,
    name: &str,
) -> Result<Option<(TrialCapture, CaptureKeep)>, String> {
    let keep_env = CaptureKeep::from_env().map_err(|e| e.to_string())?;
    let (dir, keep) = match (std::env::var_os(CAPTURE_ENV), spec.capture()) {
        (Some(dir), mode) => (dir.into(), keep_env.or(mode).unwrap_or(CaptureKeep::Always)),
        (None, Some(mode)) => (spec.capture_dir(), keep_env.unwrap_or(mode)),
        (None, None) => return Ok(None),
    };
    let dir: std::path::PathBuf = dir;
    std::fs::create_dir_all(&dir)
        .and_then(|()| dir.canonicalize())
        .map(|dir| Some((TrialCapture::new(dir, name), keep)))
        .map_err(|e| format!("cannot create the capture directory {}: {e}", dir.display()))
}

/// What a failing trial says about its seeds: the seed, each network's, and the command
/// that replays the trial.
fn replay(
    context: &Context,
    backend: BackendKind,
    trial_seed: u64,
    networks: &[NetworkRecord],
    name: &str,
) -> String {
    use std::fmt::Write as _;
    // Under LINKEM_SEED every network had its value; the replay gives it again.
    let (seed, from_env) = match std::env::var(SEED_ENV) {
        Ok(value) => (value.trim().to_string(), true),
        Err(_) => (trial_seed.to_string(), false),
    };
    let mut out = format!(
        "seed {seed} ({}), on the {backend} backend; replay with:\n  {}",
        if from_env {
            "set by LINKEM_SEED"
        } else {
            "the test's"
        },
        context.replay_command(&seed, backend, name)
    );
    for net in networks {
        let _ = write!(
            out,
            "\n  network {}: {} on the {} backend, seed {}",
            net.id, net.subnet, net.backend, net.seed
        );
        if !from_env && net.seed != trial_seed {
            let _ = write!(
                out,
                " (set by its builder; {SEED_ENV} replaces it in the replay)"
            );
        }
        if let Some(path) = &net.capture {
            let _ = write!(out, "\n    captured in {}", path.display());
        }
    }
    out
}

/// A seed for a trial whose test sets none: different in every trial and run.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static TRIALS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(TRIALS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(crate_name: &'static str, bin: Option<&'static str>, dir: &'static str) -> Target {
        Target {
            package: "my-pkg",
            crate_name,
            bin,
            manifest_dir: dir,
        }
    }

    #[test]
    fn the_replay_names_the_cargo_target() {
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            target("net", None, here).cargo_command(),
            "cargo test -p my-pkg --test net --"
        );
        assert_eq!(
            target("my_fixture", Some("my-fixture"), here).cargo_command(),
            "cargo run -p my-pkg --bin my-fixture --"
        );
    }

    #[test]
    fn a_dashed_test_target_is_found_by_its_file() {
        let dir = std::env::temp_dir().join(format!("linkem-test-target-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tests/two-words")).unwrap();
        std::fs::write(dir.join("tests/one-word.rs"), "").unwrap();
        std::fs::write(dir.join("tests/two-words/main.rs"), "").unwrap();
        std::fs::write(dir.join("tests/under_score.rs"), "").unwrap();
        let dir_str: &'static str = Box::leak(dir.to_string_lossy().into_owned().into_boxed_str());
        let name = |crate_name| target(crate_name, None, dir_str).test_name();
        assert_eq!(name("one_word"), "one-word");
        assert_eq!(name("two_words"), "two-words");
        assert_eq!(name("under_score"), "under_score");
        assert_eq!(
            name("elsewhere_path"),
            "elsewhere_path",
            "a custom path: as cargo names the crate"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_has_the_backends_linkem_backend_names() {
        // The variable is the process's; only its absence is safe to rely on here.
        if std::env::var_os(BACKEND_ENV).is_none() {
            assert_eq!(
                backends_of_run().unwrap(),
                [BackendKind::Kernel, BackendKind::Userspace]
            );
        }
        let one: BackendKind = "userspace".parse().unwrap();
        assert_eq!(one, BackendKind::Userspace);
        assert!("netem".parse::<BackendKind>().is_err());
    }
}

// The README's examples are compiled (and those that need no privileges run) as this
// crate's doc-tests: it depends on both linkem and the harness, as a user's tests do.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}
