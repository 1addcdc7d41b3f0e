//! The test harness for `#[linkem::test]`: `cargo test` (and `cargo nextest`) collect
//! every such test in a test binary, run namespace tests one at a time unless a test
//! opts into `parallel`, and decide privileges once, before any thread starts.
//!
//! Setup, in the crate's `Cargo.toml`:
//!
//! ```toml
//! [[test]]
//! name = "net"
//! harness = false
//! ```
//!
//! and in `tests/net.rs`:
//!
//! ```ignore
//! linkem_test::main!();
//!
//! #[linkem::test(peers = 2, link(1, 2, latency = "20ms"))]
//! async fn pings(peer: linkem::Peer) { /* ... */ }
//! ```
//!
//! Standard libtest flags work (filters, `--exact`, `--skip`, `--ignored`,
//! `--include-ignored`, `--list`, `--format terse`, `--test-threads`).

use std::process::ExitCode;
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use linkem::testing::runner::{self, Failure};
use linkem::testing::spec::TestDef;

pub mod lock;
pub mod privileges;

pub use privileges::Privileges;

/// Why a test that needs sch_netem is ignored on this kernel.
const NO_NETEM: &str = "needs sch_netem, which this kernel lacks (modprobe sch_netem; on \
Ubuntu it is in linux-modules-extra; or run the suite in scripts/kernel-lane)";

/// Defines `main` for a test binary with `harness = false`.
#[macro_export]
macro_rules! main {
    () => {
        fn main() -> ::std::process::ExitCode {
            $crate::run()
        }
    };
}

/// Decides privileges, collects every `#[linkem::test]` of the binary, runs them and
/// returns the exit code (never `process::exit`, so destructors run).
pub fn run() -> ExitCode {
    // First, while the process is single-threaded: entering a user namespace needs it.
    let real_uid = nix::unistd::getuid().as_raw();
    let privileges = privileges::acquire();
    let args = Arguments::from_args();
    // Known before any test starts, so that tests this kernel cannot serve are listed
    // as ignored: under `cargo nextest` (a process per test) a test that ignores itself
    // at run time would count as passed.
    let netem = match privileges.missing() {
        Some(_) => true, // every namespace test is ignored for that reason already
        None => linkem::tc::netem_available().unwrap_or(false),
    };
    let trials = collect(
        linkem::__private::TESTS.iter(),
        &privileges,
        netem,
        real_uid,
    );
    // Tests that cannot run here are listed as ignored; say why once.
    if let Some(reason) = privileges.missing() {
        eprintln!("linkem-test: every namespace test is ignored: {reason}");
    } else if !netem {
        eprintln!("linkem-test: a test that {NO_NETEM} is ignored");
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// The trials for a set of test definitions.
pub fn collect(
    defs: impl Iterator<Item = &'static TestDef>,
    privileges: &Privileges,
    netem: bool,
    uid: u32,
) -> Vec<Trial> {
    let mut trials: Vec<Trial> = defs
        .map(|def| trial(def, privileges.clone(), netem, uid))
        .collect();
    trials.sort_by(|a, b| a.name().cmp(b.name()));
    trials
}

fn trial(def: &'static TestDef, privileges: Privileges, netem: bool, uid: u32) -> Trial {
    let spec = (def.spec)();
    let lacks_netem = spec.needs_netem() && !netem;
    // Listed as ignored when it cannot run here, so that `--list --ignored` (what
    // nextest asks) says so; the run then gives the reason.
    let ignored = spec.is_ignored() || privileges.missing().is_some() || lacks_netem;
    Trial::ignorable_test(def.path(), move || {
        if let Some(reason) = privileges.missing() {
            return Ok(Completion::ignored_with(reason));
        }
        if lacks_netem {
            return Ok(Completion::ignored_with(NO_NETEM));
        }
        let spec = (def.spec)();
        let _serial = (!spec.is_parallel()).then(|| lock::serialize(&lock::lock_path(uid)));
        // A runtime of its own per test: tests cannot disturb each other through it,
        // and it is gone (with its threads) when the test ends.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot start the test's runtime: {e}")))?;
        let started = Instant::now();
        let outcome = runtime.block_on(runner::run(spec));
        drop(runtime);
        match outcome {
            Ok(()) => Ok(Completion::Completed),
            Err(Failure::Unsupported(reason)) => Ok(Completion::ignored_with(reason)),
            Err(Failure::Failed(message)) => Err(Failed::from(format!(
                "{message}\n(at {}:{}, after {:.1?})",
                def.file,
                def.line,
                started.elapsed()
            ))),
        }
    })
    .with_ignored_flag(ignored)
}
