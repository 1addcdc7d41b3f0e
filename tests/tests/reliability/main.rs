//! Reliability: nothing leaks on any way out (panics, timeouts, half-built networks,
//! IFB devices), many networks and processes at once stay apart, a long run of cycles
//! returns to its starting resources, bad input never reaches the kernel, and a
//! refused kernel update leaves the previous state.
//!
//! Leaks are checked from outside: namespaces by scanning /proc, the host's interfaces,
//! the threads and descriptors of this process. No test here is `parallel`: they count
//! what this process holds, and a test running beside them would be counted too (a
//! `parallel` test building sixteen networks made a refused peer seem to create
//! namespaces, 1 run in 5; another's runtime added descriptors). The counts are taken
//! right after the network is dropped, without waiting: dropping returns only once
//! everything is gone, and a test that waited would hide a teardown that does not.
//!
//! The soak runs `LINKEM_SOAK_CYCLES` cycles (100 by default).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkem::ip::Subnet;
use linkem::network::{Link, Network, PeerId};
use linkem::tc::impairment::{LinkImpairment, LossModel, Percent, Rate};
use linkem::Error;
use linkem_tests::{
    eventually, fd_count, fd_targets, interfaces, live_netns_inodes, own_netns_inodes,
    thread_count, thread_names,
};

use linkem_tests::network;
use linkem_tests::probe::{Delivery, Probe};

use linkem_tests::{oracle_command, tc};

linkem_test::main!();

mod bad_input;
mod concurrency;
mod leaks;
mod refusals;
mod scale;
mod soak;

const P1: PeerId = PeerId(1);
const P2: PeerId = PeerId(2);
const P3: PeerId = PeerId(3);

fn subnet() -> Subnet {
    Subnet::new([10, 0, 0, 0].into(), 24)
}

/// Sends `count` datagrams carrying `tag` from `from` to `to` and returns what arrived.
async fn udp_exchange(
    net: &Network,
    from: PeerId,
    to: PeerId,
    tag: &[u8],
    count: u32,
) -> Result<Delivery, Error> {
    Probe::new(count, 7800).tag(tag).run(net, from, to).await
}

/// The network is usable: datagrams cross between 1 and 2 both ways.
async fn assert_usable(net: &Network) -> Result<(), Error> {
    for (a, b) in [(P1, P2), (P2, P1)] {
        let got = udp_exchange(net, a, b, b"usable", 10).await?;
        assert_eq!(
            got.arrived.len(),
            10,
            "{a} -> {b}: the network stays usable"
        );
        assert!(got.all_intact(), "{a} -> {b}: {got:?}");
    }
    Ok(())
}

/// Polls `f` exactly once and drops it: an operation cancelled after its first step.
/// (A timeout would not do: it polls the operation again before it gives up.) Returns
/// whether the operation finished within that one poll: on a single slow CPU
/// (user-mode-linux) the driver thread can answer every request before the poll looks
/// for the answers, so a test must accept that outcome too.
fn poll_once_and_cancel<F: std::future::Future>(f: F) -> bool {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    f.as_mut().poll(&mut cx).is_ready()
}

/// What this process and the host look like before a test.
struct Before {
    threads: BTreeSet<String>,
    fds: Vec<String>,
    own_netns: BTreeSet<u64>,
    host_ifaces: BTreeSet<String>,
}

impl Before {
    fn now() -> Before {
        Before {
            threads: thread_names().into_iter().collect(),
            fds: fd_targets(),
            own_netns: own_netns_inodes(),
            host_ifaces: interfaces(),
        }
    }

    /// Everything is back, now: none of `ours` is referenced by this process (or a
    /// child), this process references no other namespace than before, no thread of
    /// linkem's (or in another namespace) is left, the descriptors are the same, the
    /// host's interfaces are unchanged.
    ///
    /// Threads are compared by who they are, not counted: the test harness starts its
    /// second worker thread whenever the scheduler lets it, maybe during a test.
    fn assert_back(&self, ours: &[u64], what: &str) {
        let live = live_netns_inodes();
        let left: Vec<_> = ours.iter().filter(|i| live.contains(i)).collect();
        assert!(left.is_empty(), "{what}: namespaces still alive: {left:?}");
        let own = own_netns_inodes();
        assert_eq!(
            own, self.own_netns,
            "{what}: this process references other namespaces than before"
        );
        let home = format!("(net:[{}])", home_netns());
        let left: Vec<_> = thread_names()
            .into_iter()
            .filter(|t| !self.threads.contains(t))
            .filter(|t| t.contains(" linkem-") || !t.ends_with(&home))
            .collect();
        assert!(left.is_empty(), "{what}: threads left: {left:#?}");
        let fds = fd_targets();
        assert_eq!(
            fds.len(),
            self.fds.len(),
            "{what}: descriptors {} before, {} after\nbefore: {:#?}\nafter: {fds:#?}",
            self.fds.len(),
            fds.len(),
            self.fds,
        );
        assert_eq!(
            interfaces(),
            self.host_ifaces,
            "{what}: the host's interfaces changed"
        );
    }
}

/// The inode of this process's own network namespace (its main thread's).
fn home_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").unwrap().ino()
}
