//! The seam between what a network is asked to do and how it is done: one internal
//! interface that every data plane implements.
//!
//! [`Network`](crate::Network) owns the namespaces (hub and peers), the veth pair of
//! every peer, addresses and routes, the peers' threads and commands, and the record of
//! what the user asked for (`network::intent`: every link's impairment and cut, checked
//! and deduplicated). Everything that *realises* that record is a [`Backend`]: the
//! kernel one (bridge, tc trees, IFB devices, the netem probe, qdisc counters) and,
//! later, a userspace one (a forwarding engine in the test process). The public API and
//! the harness see only [`BackendKind`].
//!
//! # Contract
//!
//! The network calls the backend in this order, and serialises changes (it holds its
//! record's lock across each call; changes of different source peers may run
//! concurrently, changes of one source never do):
//!
//! 1. [`Backend::start`], once, after the hub namespace exists and before any peer.
//!    The backend prepares the hub (kernel: creates the bridge `br0`). On error nothing
//!    of the backend is left in the hub.
//! 2. [`Backend::hub_port_controller`], for every peer before its veth pair is made:
//!    the ifindex of the hub device the hub-side end `p<n>` is enslaved to at creation
//!    (kernel: `Some(br0)`; a backend that forwards itself: `None`, the port stays a
//!    plain interface). The hub end is up either way.
//! 3. [`Backend::add_peer`], once the veth pair exists, the peer's `eth0` (MAC
//!    [`peer_mac`]) has its address and is up. The backend may open what it needs on the
//!    hub end (`PeerPort::hub_ifindex`, `PeerPort::hub_ifname`, in the hub namespace).
//!    On error the backend keeps nothing of the peer; the same id may be added again
//!    (the network deletes the half-made pair first).
//! 4. Any number of [`Backend::check_supported`], [`Backend::set_impairment`],
//!    [`Backend::set_cut`] and [`Backend::link_stats`], only for links between added
//!    peers (never a self-link) with impairments that passed
//!    [`LinkImpairment::validate`]. The network calls them only for real changes:
//!    `from != to` for an impairment, a flipped state for a cut.
//! 5. Drop, after every peer thread has been joined, before the peers' and the hub's
//!    namespaces close and before the netlink driver stops. Drop returns only when the
//!    backend's threads and descriptors are gone (so a dropped network has nothing left).
//!
//! What each call guarantees:
//! - `check_link` refuses, synchronously and before anything changes, a link between
//!   added peers that this backend cannot realise at all (kernel: a destination id above
//!   the 32765 tc handles of a device, [`Error::TcPlan`](crate::Error::TcPlan)); the
//!   network calls it for every link a request names before the first change.
//! - `check_supported` refuses, before anything changes, an impairment this backend
//!   cannot realise on this machine ([`Error::Unsupported`](crate::Error::Unsupported),
//!   saying what is missing).
//! - `set_impairment(link, from, to, cut, seed)` makes `to` the link's impairment. It
//!   applies to the next packet that enters the link; packets already queued keep the
//!   fate they were given. `from` is what the link has now (as recorded by the network),
//!   `cut` whether the link is cut: a cut link stays cut and starts carrying `to` when
//!   healed. `seed` seeds the link's random stream when `to.seed` is `None` (derived per
//!   link by the network; the kernel backend hands it to netem, which honours it from
//!   Linux 6.6 on). On error the link's previous impairment (`from`) stays
//!   in force, and no other link is disturbed.
//! - `set_cut(link, cut, impairment)` drops every packet of the link from the next one
//!   on (`cut`), or lets it carry `impairment` again. On error the previous state stays.
//! - `link_stats(link, impairment, cut)` reads the link's counters: packets and bytes
//!   that left it, packets it dropped (by loss, a full queue, or the cut), and what is
//!   queued now. `Ok(None)` when the backend keeps no counters for that link (kernel: a
//!   plain wire has no qdisc of its own). Counters restart when the link's realisation
//!   is rebuilt (kernel: a link goes from impaired to plain and back).

pub(crate) mod kernel;
pub(crate) mod userspace;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::capture::CaptureConfig;
use crate::error::{Error, Result};
use crate::impairment::LinkImpairment;
use crate::link::{Link, PeerId};
use crate::namespace::NetNs;
use crate::netlink::Rtnl;

/// Which data plane realises a network's links.
///
/// Chosen per network ([`NetworkBuilder::backend`](crate::network::NetworkBuilder::backend))
/// or for a whole run ([`BACKEND_ENV`], `LINKEM_BACKEND=kernel|userspace|auto`, which
/// applies to networks that ask for `Auto`). [`Auto`](BackendKind::Auto) is a request only: a
/// running network reports the backend it chose
/// ([`Network::backend`](crate::Network::backend)).
///
/// Both take the same [`LinkImpairment`] in the same units; where a field cannot mean
/// exactly the same on both, its doc says how they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum BackendKind {
    /// Linux traffic control in each peer's namespace (netem, HTB, TBF, u32), and a
    /// bridge in the hub.
    Kernel,
    /// A switch in the test process, between the peers' veth ends in the hub (one
    /// AF_PACKET socket per port, one thread per network), deciding every wire packet's
    /// fate with netem's and TBF's algorithms. Needs no qdisc: it works on kernels
    /// without sch_netem and in an unprivileged user namespace.
    Userspace,
    /// Kernel where sch_netem works (probed once per process), else userspace.
    #[default]
    Auto,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel",
            BackendKind::Userspace => "userspace",
            BackendKind::Auto => "auto",
        })
    }
}

/// Counters of one link, as its backend counts them.
///
/// Packets are wire packets (at most one MTU each) and bytes whole Ethernet frames, as
/// tc counts them. The kernel backend reads its qdisc's counters (`tc -s qdisc`); the
/// userspace backend counts every link, impaired or not, and also says what happened
/// to each packet ([`LinkStats::fates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Packets that left the link's queue (delivered).
    pub packets: u32,
    /// Bytes that left the link's queue.
    pub bytes: u64,
    /// Packets dropped (loss, queue overflow, partition).
    pub drops: u32,
    /// Packets held back by the shaper (kernel backend only).
    pub overlimits: u32,
    /// Packets waiting now.
    pub qlen: u32,
    /// Bytes waiting now.
    pub backlog: u32,
    /// What happened to the link's packets, cause by cause: the userspace backend
    /// knows it; the kernel's qdiscs count only the totals above (`None`).
    pub fates: Option<FateCounts>,
}

/// What happened to the packets of one link, as the userspace backend counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FateCounts {
    /// Packets that entered the link (before loss, cut or a full queue).
    pub sent_packets: u64,
    /// Bytes that entered the link.
    pub sent_bytes: u64,
    /// Dropped by the loss model (`loss`, `loss_model`).
    pub dropped_loss: u64,
    /// Dropped because the link's queue was full (`limit`, the shaper's queue).
    pub dropped_queue: u64,
    /// Dropped because the link was cut (a partition).
    pub dropped_partition: u64,
    /// Dropped at departure because the destination's interface was gone.
    pub dropped_unreachable: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Copies with a flipped bit.
    pub corrupted: u64,
    /// Packets sent ahead of the delayed ones (reordering).
    pub reordered: u64,
    /// Frames the kernel sends by itself (ARP, neighbour discovery, MLD), passed
    /// unimpaired and not counted above.
    pub control_packets: u64,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fates {
            None => write!(
                f,
                "sent {} pkt ({} B), dropped {}, overlimits {}, backlog {} pkt ({} B)",
                self.packets, self.bytes, self.drops, self.overlimits, self.qlen, self.backlog
            ),
            Some(c) => {
                write!(
                    f,
                    "entered {} pkt, delivered {} pkt ({} B), dropped {} (loss {}, queue {}, \
                     partition {}",
                    c.sent_packets,
                    self.packets,
                    self.bytes,
                    self.drops,
                    c.dropped_loss,
                    c.dropped_queue,
                    c.dropped_partition
                )?;
                if c.dropped_unreachable > 0 {
                    write!(f, ", unreachable {}", c.dropped_unreachable)?;
                }
                write!(
                    f,
                    "), duplicated {}, corrupted {}, reordered {}, queued {} pkt ({} B)",
                    c.duplicated, c.corrupted, c.reordered, self.qlen, self.backlog
                )
            }
        }
    }
}

/// The environment variable that picks the backend for a whole run:
/// `kernel`, `userspace` or `auto`.
pub const BACKEND_ENV: &str = "LINKEM_BACKEND";

thread_local! {
    /// The backend the harness asks for on this thread (one trial per backend).
    static THREAD_DEFAULT: std::cell::Cell<Option<BackendKind>> =
        const { std::cell::Cell::new(None) };
}

/// Sets the backend that networks built on this thread with [`BackendKind::Auto`] use
/// (the harness runs each test once per backend this way, `testing::trial`); returns
/// the previous one.
pub(crate) fn set_thread_default(kind: Option<BackendKind>) -> Option<BackendKind> {
    THREAD_DEFAULT.with(|d| d.replace(kind))
}

/// The backend [`set_thread_default`] set on this thread, if any.
pub(crate) fn thread_default() -> Option<BackendKind> {
    THREAD_DEFAULT.with(|d| d.get())
}

/// What a request for `kind` means here. An explicit choice (builder, attribute) is
/// kept; `Auto` takes the harness's choice for this thread, else the environment
/// variable [`BACKEND_ENV`], else stays `Auto` (kernel where sch_netem works, else
/// userspace, decided by [`Backend::start`]).
pub(crate) fn resolve(kind: BackendKind) -> Result<BackendKind> {
    if kind != BackendKind::Auto {
        return Ok(kind);
    }
    if let Some(kind) = THREAD_DEFAULT.with(|d| d.get()) {
        return Ok(kind);
    }
    match std::env::var(BACKEND_ENV) {
        Ok(value) => value.parse(),
        Err(_) => Ok(BackendKind::Auto),
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(value: &str) -> Result<BackendKind> {
        match value.trim().to_ascii_lowercase().as_str() {
            "kernel" | "tc" => Ok(BackendKind::Kernel),
            "userspace" | "user" | "engine" => Ok(BackendKind::Userspace),
            "auto" | "" => Ok(BackendKind::Auto),
            _ => Err(Error::InvalidSetting {
                setting: BACKEND_ENV,
                value: value.to_string(),
                rule: "kernel, userspace or auto",
            }),
        }
    }
}

/// The MAC address of peer `id`'s `eth0`: locally administered, unicast (`02:`), a
/// fixed `6c` ("l"), then the id in the last four bytes (ids fit: the hub port of peer
/// `n` has ifindex `n + 2`, a `u32`), so a capture names the peer and a backend that
/// forwards by MAC knows every address without learning it.
pub(crate) fn peer_mac(id: PeerId) -> [u8; 6] {
    let n = (id.0 as u32).to_be_bytes();
    [0x02, 0x6c, n[0], n[1], n[2], n[3]]
}

/// The hub namespace, as a backend sees it when it starts.
#[derive(Debug, Clone, Copy)]
// The kernel backend needs only the connection; the namespace is for a backend that
// opens sockets in the hub.
#[allow(dead_code)]
pub(crate) struct Hub<'a> {
    /// The hub namespace.
    pub(crate) ns: &'a Arc<NetNs>,
    /// The network's connection to it.
    pub(crate) rtnl: &'a Rtnl,
    /// The capture to write, if the network has one (checked already).
    pub(crate) capture: Option<&'a CaptureConfig>,
}

/// A peer that was just added, as a backend needs it.
#[derive(Debug, Clone)]
// The kernel backend needs address, device and connection; the rest is for a backend
// that forwards between the hub ports itself.
#[allow(dead_code)]
pub(crate) struct PeerPort {
    /// The peer.
    pub(crate) id: PeerId,
    /// Its address on `eth0`.
    pub(crate) addr: IpAddr,
    /// `eth0`'s MAC address ([`peer_mac`]).
    pub(crate) mac: [u8; 6],
    /// `eth0`'s ifindex, in the peer's namespace.
    pub(crate) ifindex: u32,
    /// The hub-side veth end's ifindex, in the hub namespace.
    pub(crate) hub_ifindex: u32,
    /// The hub-side veth end's name (`p<n>`).
    pub(crate) hub_ifname: String,
    /// The peer's namespace.
    pub(crate) ns: Arc<NetNs>,
    /// The network's connection to the peer's namespace.
    pub(crate) rtnl: Rtnl,
}

/// The data plane of one network (see the module docs for the contract).
#[derive(Debug)]
pub(crate) enum Backend {
    /// Linux traffic control.
    Kernel(kernel::KernelBackend),
    /// The engine in the test process.
    Userspace(userspace::UserspaceBackend),
}

impl Backend {
    /// Starts the backend `kind` asks for in the hub (see [`resolve`] for `Auto`).
    pub(crate) async fn start(kind: BackendKind, hub: Hub<'_>, name: &str) -> Result<Backend> {
        let kind = match resolve(kind)? {
            BackendKind::Auto => {
                if kernel::netem_supported(hub.rtnl).await {
                    BackendKind::Kernel
                } else {
                    BackendKind::Userspace
                }
            }
            chosen => chosen,
        };
        Ok(match kind {
            BackendKind::Userspace => {
                Backend::Userspace(userspace::UserspaceBackend::start(hub, name).await?)
            }
            _ => Backend::Kernel(kernel::KernelBackend::start(hub).await?),
        })
    }

    /// The backend that runs (never `Auto`).
    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            Backend::Kernel(_) => BackendKind::Kernel,
            Backend::Userspace(_) => BackendKind::Userspace,
        }
    }

    /// Whether a network's seed decides its links' fates: always on the userspace
    /// backend; on the kernel backend, whether netem honours `TCA_NETEM_PRNG_SEED`
    /// (Linux >= 6.6), or there is no netem to draw anything.
    pub(crate) fn seeds_reproducible(&self) -> bool {
        match self {
            Backend::Kernel(b) => b.seeds_reproducible(),
            Backend::Userspace(_) => true,
        }
    }

    /// The network was given a seed (builder, attribute or environment): a backend
    /// that cannot honour it says so.
    pub(crate) fn seed_requested(&self) {
        if let Backend::Kernel(b) = self {
            b.seed_requested(None);
        }
    }

    /// The hub device the hub-side veth end of a new peer is enslaved to at creation.
    pub(crate) fn hub_port_controller(&self) -> Option<u32> {
        match self {
            Backend::Kernel(b) => b.hub_port_controller(),
            Backend::Userspace(b) => b.hub_port_controller(),
        }
    }

    /// A peer's veth pair exists and its `eth0` is configured.
    pub(crate) async fn add_peer(&mut self, peer: PeerPort) -> Result<()> {
        match self {
            Backend::Kernel(b) => b.add_peer(peer).await,
            Backend::Userspace(b) => b.add_peer(peer).await,
        }
    }

    /// Refuses a link this backend cannot realise (kernel: a destination beyond the
    /// traffic-control handles of one device), before anything changes.
    pub(crate) fn check_link(&self, link: Link) -> Result<()> {
        match self {
            Backend::Kernel(b) => b.check_link(link),
            Backend::Userspace(b) => b.check_link(link),
        }
    }

    /// Refuses an impairment this backend cannot realise here.
    pub(crate) async fn check_supported(&self, impairment: &LinkImpairment) -> Result<()> {
        match self {
            Backend::Kernel(b) => b.check_supported(impairment).await,
            Backend::Userspace(b) => b.check_supported(impairment).await,
        }
    }

    /// Changes a link's impairment from `from` to `to`.
    pub(crate) async fn set_impairment(
        &self,
        link: Link,
        from: &LinkImpairment,
        to: &LinkImpairment,
        cut: bool,
        seed: u64,
    ) -> Result<()> {
        match self {
            Backend::Kernel(b) => b.set_impairment(link, from, to, cut, seed).await,
            Backend::Userspace(b) => b.set_impairment(link, to, seed).await,
        }
    }

    /// Cuts (`cut`) or heals a link, whose impairment is `impairment`.
    pub(crate) async fn set_cut(
        &self,
        link: Link,
        cut: bool,
        impairment: &LinkImpairment,
    ) -> Result<()> {
        match self {
            Backend::Kernel(b) => b.set_cut(link, cut, impairment).await,
            Backend::Userspace(b) => b.set_cut(link, cut).await,
        }
    }

    /// A link's counters.
    pub(crate) async fn link_stats(
        &self,
        link: Link,
        impairment: &LinkImpairment,
        cut: bool,
    ) -> Result<Option<LinkStats>> {
        match self {
            Backend::Kernel(b) => b.link_stats(link, impairment, cut).await,
            Backend::Userspace(b) => Ok(Some(b.link_stats(link))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_macs_are_local_unicast_and_distinct() {
        assert_eq!(peer_mac(PeerId(1)), [0x02, 0x6c, 0, 0, 0, 1]);
        assert_eq!(peer_mac(PeerId(0x01_02_03_04)), [0x02, 0x6c, 1, 2, 3, 4]);
        let macs: std::collections::HashSet<_> =
            (1..=40_000).map(|i| peer_mac(PeerId(i))).collect();
        assert_eq!(macs.len(), 40_000);
        for mac in macs {
            assert_eq!(mac[0] & 0x03, 0x02, "locally administered, unicast");
        }
    }

    #[test]
    fn auto_is_only_a_request() {
        assert_eq!(BackendKind::default(), BackendKind::Auto);
        assert_eq!(BackendKind::Userspace.to_string(), "userspace");
    }
}
