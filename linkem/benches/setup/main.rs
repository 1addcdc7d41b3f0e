//! Setup and teardown cost of an emulated network: linkem against the `ip`/`tc`
//! commands most tools run (one process per command).
//!
//! ```text
//! cargo bench -p linkem --bench setup -- [--peers 2,3,10,50,100,250] [--runs N]
//!     [--quick] [--impair-max N] [--no-ip] [--backend kernel|userspace] [--json]
//! ```
//!
//! For every N it builds the same topology both ways, in alternating order, several
//! times, and prints the median and the range of each phase:
//!
//! - linkem: `Network::builder(..).backend(..)` (hub namespace + bridge on the kernel
//!   backend, the default; the engine's thread on the userspace one), N x `add_peer`,
//!   drop.
//! - ip: `ip netns add` for the hub, `ip -n hub link add br0 type bridge`, `link set
//!   up`; per peer `ip netns add`, a veth created with its far end in the peer's
//!   namespace, the hub end on the bridge and up, the address, `eth0` and `lo` up (six
//!   processes); `ip netns del` for every namespace.
//! - After each teardown the kernel still destroys the namespaces in the background
//!   (cleanup_net() on the "netns" workqueue). The program waits for that before the
//!   next run and reports how long it took, apart from the total.
//! - The impairment phase (full mesh of N x (N-1) shaped links, one link changed many
//!   times, one pair partitioned and healed many times, one peer partitioned from all
//!   others and healed): linkem with `apply_impairment_all`, `apply_impairment`,
//!   `partition`/`heal` and `isolate`/`rejoin`; the `ip` topology with `tc` commands (an
//!   HTB root per peer, a class and a u32 filter per destination, a pfifo of limit 0
//!   to cut). The shaper alone (HTB/TBF) needs no sch_netem, so this runs on any kernel.
//!
//! The `ip` namespaces are named `lkb-<pid>-...` and are deleted on every exit path: at
//! the end of a run, on a panic, on SIGINT/SIGTERM/SIGHUP, and (for a run that was
//! killed outright) at the start of the next run, which deletes those whose process is
//! gone. linkem's own namespaces go with the process in any case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linkem::ip::Subnet;
use linkem::tc::impairment::{LinkImpairment, Rate};
use linkem::{BackendKind, Link, Network, PeerId};

mod args;
mod cleanup;
mod iproute2;
mod links;
mod output;
mod record;
mod with_linkem;

use args::*;
use cleanup::*;
use iproute2::*;
use links::*;
use output::*;
use record::*;
use with_linkem::*;

// ---------------------------------------------------------------------------------
// Phases. Both sides record the same names, so the tables line up by name.

pub(crate) const CREATE: &str = "create network";
pub(crate) const ADD: &str = "add peers";
/// Mean time of one `add_peer` among the first and the last tenth of the peers (10
/// peers or more): whether adding gets slower as the network grows.
pub(crate) const ADD_FIRST_TENTH: &str = "  per peer, first tenth";
pub(crate) const ADD_LAST_TENTH: &str = "  per peer, last tenth";
pub(crate) const IMPAIR_MESH: &str = "impair full mesh";
pub(crate) const IMPAIR_MESH_BATCH: &str = "impair full mesh, tc -batch";
pub(crate) const CHANGE_ONE: &str = "change one link";
/// Partition and heal of one pair of peers (both directions each).
pub(crate) const TOGGLE: &str = "partition toggle (one pair)";
pub(crate) const PARTITION: &str = "partition peer 1";
pub(crate) const HEAL: &str = "heal partition";
pub(crate) const TEARDOWN: &str = "teardown";
/// Sum of CREATE, ADD and TEARDOWN in one run.
pub(crate) const TOTAL: &str = "total (create+add+teardown)";
pub(crate) const CLEANUP: &str = "kernel cleanup (async)";
/// TEARDOWN + CLEANUP: until the kernel is done. The comparable figure: `ip netns del`
/// runs one namespace at a time, so most of its cleanup overlaps its own teardown,
/// while linkem's namespaces all go at once and are cleaned in one batch after.
pub(crate) const SETTLED: &str = "teardown until the kernel is done";

pub(crate) const PHASES: &[&str] = &[
    CREATE,
    ADD,
    ADD_FIRST_TENTH,
    ADD_LAST_TENTH,
    IMPAIR_MESH,
    IMPAIR_MESH_BATCH,
    CHANGE_ONE,
    TOGGLE,
    PARTITION,
    HEAL,
    TEARDOWN,
    TOTAL,
    CLEANUP,
    SETTLED,
];

pub(crate) const LINKEM: &str = "linkem";
pub(crate) const IP: &str = "ip";

/// The subnet of both topologies (a /16, so 250 peers fit with room to spare).
pub(crate) fn subnet() -> Subnet {
    Subnet::new(IpAddr::from([10, 77, 0, 0]), 16)
}

/// The rate every mesh link gets (HTB alone, no netem needed).
pub(crate) const MESH_RATE_MBIT: u64 = 100;
/// The rate "change one link" sets.
pub(crate) const CHANGED_RATE_MBIT: u64 = 50;
/// Samples of "change one link" and of the partition toggle per run (linkem; the tc
/// side takes CHANGES / 10, each a process or two).
pub(crate) const CHANGES: usize = 50;

// ---------------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "this benchmark creates namespaces and interfaces: it needs root \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo"
        );
        return std::process::ExitCode::FAILURE;
    }
    // Before any other thread exists, so every thread inherits the blocked mask.
    if let Err(e) = install_signal_cleanup() {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let outcome = std::panic::catch_unwind(|| bench(&args));
    delete_live_namespaces();
    match outcome {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

fn bench(args: &Args) -> Result<(), String> {
    if args.ip {
        delete_stale_namespaces();
    }
    let mut machine = Machine::probe();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    // Untimed: both topologies carry traffic, and a first run of each warms caches
    // (binaries, /run/netns mount, kernel slabs).
    runtime.block_on(linkem_check(args.backend))?;
    runtime
        .block_on(linkem_run(2, false, args.backend))
        .map_err(|e| e.to_string())?;
    if args.ip {
        ip_check()?;
        ip_run(2, false)?;
    }
    wait_kernel_cleanup();

    let mut results = Results::default();
    for &n in &args.peers {
        let runs = args.runs_for(n);
        let impair = n <= args.impair_max;
        results.runs.insert(n, runs);
        for r in 0..runs {
            // Alternate which side goes first, so drift (thermal, caches, background
            // work) does not favour one side.
            let order: &[&str] = if !args.ip {
                &[LINKEM]
            } else if r % 2 == 0 {
                &[LINKEM, IP]
            } else {
                &[IP, LINKEM]
            };
            let mut line = format!("N={n} run {}/{runs}:", r + 1);
            for &side in order {
                let mut run = if side == LINKEM {
                    runtime
                        .block_on(linkem_run(n, impair, args.backend))
                        .map_err(|e| format!("linkem, {n} peers: {e}"))?
                } else {
                    ip_run(n, impair).map_err(|e| format!("ip, {n} peers: {e}"))?
                };
                if !args.back_to_back {
                    match wait_kernel_cleanup() {
                        Some(took) => run.record_cleanup(took),
                        None => results.cleanup_unseen += 1,
                    }
                }
                let _ = write!(
                    line,
                    " {side} {}",
                    fmt_duration(run.get(TOTAL).unwrap_or_default())
                );
                results.add(n, side, &run);
            }
            eprintln!("{line}");
        }
    }

    machine.load_after = loadavg();
    if args.json {
        print_json(&machine, &results);
    } else {
        print_tables(&machine, &results, args);
    }
    Ok(())
}
