//! The emulated network: a hub namespace, and one namespace per peer, joined by a veth
//! pair each.
//!
//! ```text
//!  hub namespace                      peer n namespace
//!  ┌──────────────────────────┐       ┌─────────────────────────────┐
//!  │ br0 (ifindex 2)          │       │ lo (up)                     │
//!  │  └─ p<n> (ifindex 2+n) ──┼─veth──┼─ eth0 (ifindex 2), host n   │
//!  └──────────────────────────┘       │   MAC 02:6c:<n as 32 bits>  │
//!                                     │   root qdisc: per-dest tc   │
//!                                     └─────────────────────────────┘
//! ```
//!
//! (as the kernel backend builds it: `br0` and the qdiscs are the backend's; the
//! userspace backend leaves the `p<n>` ports plain and switches between them itself,
//! see [`BackendKind`]).
//!
//! Every interface lives in a namespace that belongs to this network alone, so names
//! (`br0`, `p<n>`, `eth0`) can never clash with another network, in this process or
//! another, and the host namespace is never touched. Interface indexes are chosen at
//! creation (both veth ends accept one), which saves a lookup per peer.
//!
//! Namespaces are held by descriptors (see the `namespace` module); dropping the network
//! closes them and the kernel destroys the namespaces, with every veth, bridge and
//! qdisc in them, even if the process dies by SIGKILL.
//!
//! The network owns the namespaces, the veth pairs, addresses, the peers' threads and
//! commands, and the record of what was asked of every link (`intent`). What realises
//! that record (the kernel backend: the bridge `br0` and traffic control; the userspace
//! backend: a switch and per-packet model in the test process) sits behind one internal
//! seam, the `backend` module, which documents its contract. The impairment API lives
//! in `impair`.
//!
//! Every change is traced (target `linkem::network`, level debug): the network created
//! with its backend and seed, each peer added, each impairment applied with a summary,
//! each cut and heal; the kernel backend adds its own (`linkem::backend::kernel`: tree
//! built, IFB created, and every netlink request at level trace). See the crate docs
//! for how to see them.

mod impair;
mod intent;

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use tokio::sync::oneshot;

use crate::backend::{self, Backend, Hub, PeerPort};
use crate::error::{Error, Result};
use crate::ip::Subnet;
use crate::namespace::{NetNs, NsThread, RuntimeThreads};
use crate::netlink::{map_rtnetlink, Driver, Rtnl};

pub use crate::backend::kernel::netem_available;
pub use crate::backend::{BackendKind, FateCounts, LinkStats, BACKEND_ENV};
pub use crate::capture::CaptureConfig;
pub use crate::link::{Link, PeerId};

use intent::Intent;

/// The peer's interface index inside its namespace (lo is 1).
const PEER_IFINDEX: u32 = 2;
/// The peer's interface name inside its namespace.
const PEER_IFNAME: &str = "eth0";

/// The hub-side veth end of peer `n` is `p<n>`, ifindex `n + 2` (`lo` is 1, and 2 is
/// left to the backend: the kernel backend's bridge).
fn hub_port_index(peer: PeerId) -> u32 {
    2u32.saturating_add(u32::try_from(peer.0).unwrap_or(u32::MAX))
}

static NEXT_NETWORK: AtomicU64 = AtomicU64::new(1);

/// One peer: its id, address and namespace.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub(crate) id: PeerId,
    pub(crate) addr: IpAddr,
    pub(crate) ns: Arc<NetNs>,
}

/// What code running for a peer knows about the network.
#[derive(Debug, Clone)]
pub struct PeerContext {
    id: PeerId,
    addrs: Arc<Vec<IpAddr>>,
}

impl PeerContext {
    /// This peer's id.
    pub fn id(&self) -> PeerId {
        self.id
    }
    /// This peer's address.
    pub fn addr(&self) -> IpAddr {
        self.addrs[self.id.0 - 1]
    }
    /// The address of any peer of the network (as it was when the code started).
    pub fn addr_of(&self, peer: PeerId) -> Option<IpAddr> {
        peer.0
            .checked_sub(1)
            .and_then(|i| self.addrs.get(i))
            .copied()
    }
    /// Every peer and its address, this one included.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, IpAddr)> + '_ {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (PeerId(i + 1), *a))
    }
    /// The other peers and their addresses.
    pub fn others(&self) -> impl Iterator<Item = (PeerId, IpAddr)> + '_ {
        let me = self.id;
        self.peers().filter(move |(p, _)| *p != me)
    }
}

/// An emulated network of peers, each in its own network namespace.
///
/// Topology changes (`add_peer`) take `&mut self`; everything else takes `&self`, so
/// peers can run (`run_in_namespace`) while impairments change. Build one with
/// [`Network::new`] (the default backend, a random seed) or [`Network::builder`].
///
/// Dropping it (or [`Network::shutdown`]) ends every peer thread and removes every
/// namespace, interface and qdisc it created; drop returns once they are gone.
#[derive(Debug)]
pub struct Network {
    id: u64,
    subnet: Subnet,
    /// Seeds the random stream of every link whose impairment has no seed of its own.
    seed: u64,
    /// Where the capture goes, when there is one.
    capture: Option<std::path::PathBuf>,
    /// What was asked of every link; its lock serialises changes.
    intent: tokio::sync::Mutex<Intent>,
    // Field order is drop order: peer threads are joined first (see Drop), then the
    // backend goes, then peers' and the hub's descriptors close, then the driver
    // closes the sockets.
    backend: Backend,
    peers: Vec<PeerState>,
    hub: Arc<NetNs>,
    hub_rtnl: Rtnl,
    threads: Mutex<Vec<NsThread<()>>>,
    /// A peer whose `add_peer` sent the veth request but did not finish (cancelled by
    /// dropping its future, or failed after the veth existed): its hub port may still
    /// exist and would make the next `add_peer` fail with EEXIST. Its namespace is kept
    /// open here because the veth request names it by descriptor number: closed early,
    /// the number could be reused before the driver thread sends the request.
    unfinished_peer: Option<(PeerId, Arc<NetNs>)>,
    driver: Driver,
}

/// Builds a [`Network`] with settings beyond its subnet.
///
/// ```no_run
/// # async fn demo() -> linkem::Result<()> {
/// use linkem::network::{BackendKind, Network};
/// let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
/// let net = Network::builder(subnet).backend(BackendKind::Kernel).build().await?;
/// assert_eq!(net.backend(), BackendKind::Kernel);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct NetworkBuilder {
    subnet: Subnet,
    backend: BackendKind,
    seed: Option<u64>,
    capture: Option<CaptureConfig>,
}

impl NetworkBuilder {
    /// The data plane to use. The default, [`BackendKind::Auto`], is the kernel's
    /// traffic control where sch_netem works and the userspace engine elsewhere; the
    /// environment variable [`BACKEND_ENV`] (`LINKEM_BACKEND=kernel|userspace|auto`)
    /// decides for networks that leave it at `Auto`. An explicit choice here wins over
    /// the variable. [`Network::backend`] tells which one runs.
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.backend = kind;
        self
    }

    /// Seeds the random stream of every link whose impairment has no seed of its own
    /// (each link's stream is derived from this seed and the link). Without it the
    /// seed is random; either way [`Network::seed`] tells it, and the environment
    /// variable [`SEED_ENV`] overrides both, so a failure can be replayed without
    /// editing code.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Writes a packet capture of the network (pcapng, see [`crate::capture`]). The
    /// environment variable [`CAPTURE_ENV`] naming a directory turns capture on for
    /// every network of a run.
    pub fn capture(mut self, config: CaptureConfig) -> Self {
        self.capture = Some(config);
        self
    }

    /// Creates the hub namespace and what the backend needs in it (kernel: the bridge
    /// `br0`; userspace: the engine's thread). The subnet, the capture settings and
    /// `LINKEM_SEED` are checked first.
    pub async fn build(self) -> Result<Network> {
        Network::create(self).await
    }
}

/// The environment variable that seeds every network of a run (decimal, or hex with
/// `0x`); it wins over [`NetworkBuilder::seed`] and the test attribute's `seed`.
pub const SEED_ENV: &str = "LINKEM_SEED";

/// The environment variable naming a directory: every network of the run writes its
/// capture there (created if missing). A test's networks are named after its trial
/// (`<test>.<backend>-net<k>.pcapng`), others `linkem-<pid>-net<id>.pcapng`.
pub const CAPTURE_ENV: &str = "LINKEM_CAPTURE";

/// The environment variable saying which captures of a test run the harness keeps:
/// `always` (the default) or `failed` (a passing test's files are removed). It wins over
/// the attribute's `capture = ".."`; see [`CaptureKeep`](crate::capture::CaptureKeep).
pub const CAPTURE_KEEP_ENV: &str = "LINKEM_CAPTURE_KEEP";

/// The seed [`SEED_ENV`] sets, if it is set.
fn seed_from_env() -> Result<Option<u64>> {
    let Ok(value) = std::env::var(SEED_ENV) else {
        return Ok(None);
    };
    let v = value.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map(Some).map_err(|_| Error::InvalidSetting {
        setting: SEED_ENV,
        value,
        rule: "a 64-bit number, decimal or hex with 0x",
    })
}

/// A 64-bit mix (splitmix64's finaliser), so nearby inputs give unrelated seeds.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Network {
    /// Creates a network with the default settings: backend [`BackendKind::Auto`] (or
    /// `LINKEM_BACKEND`), a random seed (or `LINKEM_SEED`), a capture only when
    /// `LINKEM_CAPTURE` names a directory. The subnet is checked first.
    pub async fn new(subnet: Subnet) -> Result<Network> {
        Network::builder(subnet).build().await
    }

    /// A builder, for a network with settings beyond its subnet.
    pub fn builder(subnet: Subnet) -> NetworkBuilder {
        NetworkBuilder {
            subnet,
            backend: BackendKind::Auto,
            seed: None,
            capture: None,
        }
    }

    #[tracing::instrument(
        name = "build network",
        level = "debug",
        skip_all,
        fields(subnet = %settings.subnet)
    )]
    async fn create(settings: NetworkBuilder) -> Result<Network> {
        let subnet = settings.subnet;
        subnet.validate()?;
        let env_seed = seed_from_env()?;
        let id = NEXT_NETWORK.fetch_add(1, Ordering::Relaxed);
        // The builder's capture, else the trial's (named after the test), else the
        // run's directory.
        let capture = match settings.capture {
            Some(config) => Some(config),
            None => match crate::testing::trial::capture_config() {
                Some(config) => Some(config),
                None => match std::env::var_os(CAPTURE_ENV) {
                    Some(dir) => {
                        let dir = std::path::PathBuf::from(dir);
                        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                            op: format!("creating the capture directory {}", dir.display()),
                            source,
                        })?;
                        let file = format!("linkem-{}-net{id}.pcapng", std::process::id());
                        Some(CaptureConfig::new(dir.join(file)))
                    }
                    None => None,
                },
            },
        };
        if let Some(config) = &capture {
            config.validate()?;
        }
        let driver = Driver::start(format!("linkem-net{id}"))?;
        let (hub, socket) = NetNs::create("the hub")?;
        let hub = Arc::new(hub);
        let hub_rtnl = driver.connect(socket)?;
        let backend = Backend::start(
            settings.backend,
            Hub {
                ns: &hub,
                rtnl: &hub_rtnl,
                capture: capture.as_ref(),
            },
            &format!("linkem-net{id}"),
        )
        .await?;
        // Random per network, like netem's own generator, unless a test's trial runs on
        // this thread (its seed is printed when it fails; see `testing::trial`).
        if env_seed.is_some() || settings.seed.is_some() {
            backend.seed_requested();
        }
        let seed = match env_seed {
            Some(seed) => seed,
            None => settings
                .seed
                .or_else(crate::testing::trial::default_seed)
                .unwrap_or_else(|| {
                    use std::hash::{BuildHasher, Hasher};
                    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                    h.write_u64(id);
                    h.finish()
                }),
        };
        tracing::debug!(
            network = id,
            %subnet,
            backend = %backend.kind(),
            requested = %settings.backend,
            seed,
            capture = ?capture.as_ref().map(|c| c.path()),
            "network created"
        );
        crate::testing::trial::record(crate::testing::trial::NetworkRecord {
            id,
            subnet,
            backend: backend.kind(),
            seed,
            capture: capture.as_ref().map(|c| c.path().to_path_buf()),
        });
        Ok(Network {
            id,
            subnet,
            seed,
            capture: capture.map(|c| c.path().to_path_buf()),
            intent: Default::default(),
            backend,
            peers: Vec::new(),
            hub,
            hub_rtnl,
            threads: Mutex::new(Vec::new()),
            unfinished_peer: None,
            driver,
        })
    }

    /// The seed every link's random stream is derived from (see
    /// [`NetworkBuilder::seed`]): run again with `LINKEM_SEED=<this>` to replay the
    /// links' fates.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether this network's seed decides its links' fates, so that a replay with
    /// the same seed (and the same traffic) meets the same losses, duplicates,
    /// corruptions and delays: always on the userspace backend; on the kernel backend
    /// only where netem honours its seed (`TCA_NETEM_PRNG_SEED`, Linux 6.6 and later;
    /// older kernels ignore it silently), or where there is no netem at all (every
    /// impairment that draws random numbers is then refused).
    pub fn seeds_reproducible(&self) -> bool {
        self.backend.seeds_reproducible()
    }

    /// A sentence for a failure report when [`seeds_reproducible`](Self::seeds_reproducible)
    /// is false (`None` when seeds are honoured): which kernel ignores the seeds, and
    /// that the userspace backend's fates are reproducible.
    pub fn seed_note(&self) -> Option<String> {
        (!self.seeds_reproducible()).then(backend::kernel::seeds_ignored_note)
    }

    /// The file this network's capture is written to, if it has one (see
    /// [`NetworkBuilder::capture`]).
    pub fn capture_path(&self) -> Option<&std::path::Path> {
        self.capture.as_deref()
    }

    /// The backend that realises this network's links (never [`BackendKind::Auto`]).
    pub fn backend(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Whether sch_netem exists: a netem is created (and deleted) on the hub's `lo`
    /// (probed once per process).
    pub async fn netem_supported(&self) -> bool {
        backend::kernel::netem_supported(&self.hub_rtnl).await
    }

    /// The subnet peers are numbered in.
    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// The peers, in id order.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.iter().map(|p| p.id)
    }

    /// How many peers there are.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A peer's address.
    pub fn addr(&self, peer: PeerId) -> Result<IpAddr> {
        Ok(self.peer(peer)?.addr)
    }

    /// The inode numbers of the namespaces this network holds (hub first): their
    /// identity in `/proc/*/ns/net`, for checking from the outside that they are gone.
    pub fn namespace_inodes(&self) -> Vec<u64> {
        std::iter::once(self.hub.inode())
            .chain(self.peers.iter().map(|p| p.ns.inode()))
            .collect()
    }

    pub(crate) fn peer(&self, peer: PeerId) -> Result<&PeerState> {
        peer.0
            .checked_sub(1)
            .and_then(|i| self.peers.get(i))
            .ok_or(Error::UnknownPeer(peer))
    }

    /// Adds a peer: its namespace, a veth pair from the hub (`p<n>`, on the bridge for
    /// the kernel backend, a port of the engine for the userspace one) to `eth0` inside
    /// it with the next host address of the subnet, `eth0` and `lo` up. Peer ids count
    /// from 1 in the order peers are added.
    #[tracing::instrument(name = "add peer", level = "debug", skip_all, fields(network = self.id))]
    pub async fn add_peer(&mut self) -> Result<PeerId> {
        let id = PeerId(self.peers.len() + 1);
        let addr = self
            .subnet
            .host(id.0 as u128)
            .ok_or_else(|| Error::SubnetExhausted {
                subnet: self.subnet.to_string(),
                capacity: self.subnet.capacity(),
                peer: id,
            })?;
        if hub_port_index(id) == u32::MAX {
            return Err(Error::UnknownPeer(id));
        }
        if self.unfinished_peer.as_ref().is_some_and(|(p, _)| *p == id) {
            // A previous add_peer of this id stopped halfway (found by the reliability
            // suite: a cancelled add_peer made every later one fail with EEXIST). The
            // pair's peer end dies with its dropped namespace only when the kernel gets
            // round to cleaning it up; deleting the hub end removes the pair now.
            let _ = self
                .hub_rtnl
                .handle()
                .link()
                .del(hub_port_index(id))
                .execute()
                .await;
        }
        let (ns, socket) = NetNs::create(&format!("peer {id}"))?;
        let rtnl = self.driver.connect(socket)?;

        // Both ends in one request: the hub end up and on the bridge, the peer end
        // created directly in the peer's namespace (veth_newlink() honours
        // IFLA_NET_NS_FD and ifi_index in the peer's info). The peer end cannot be
        // brought up in the same request: veth_open() answers ENOTCONN until both ends
        // are linked, so it comes up below, inside its namespace.
        // The peer end's MAC is fixed (backend::peer_mac) so that a backend knows every
        // peer's address from its id, and captures name the peer.
        let mac = backend::peer_mac(id);
        let peer_end = LinkMessageBuilder::<LinkUnspec>::new()
            .name(PEER_IFNAME.to_string())
            .index(PEER_IFINDEX)
            .address(mac.to_vec())
            .setns_by_fd(ns.raw_fd())
            .build();
        let ns = Arc::new(ns);
        self.unfinished_peer = Some((id, Arc::clone(&ns)));
        let hub_ifname = format!("p{id}");
        let veth = LinkVeth::new(&hub_ifname, PEER_IFNAME)
            .index(hub_port_index(id))
            .up();
        let veth = match self.backend.hub_port_controller() {
            Some(controller) => veth.controller(controller),
            None => veth,
        };
        let veth = veth
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_end)))
            .build();
        self.hub_rtnl
            .handle()
            .link()
            .add(veth)
            .execute()
            .await
            .map_err(|e| map_rtnetlink(|| format!("create the veth pair of peer {id}"), e))?;

        self.configure_peer_end(&rtnl, id, addr).await?;
        self.backend
            .add_peer(PeerPort {
                id,
                addr,
                mac,
                ifindex: PEER_IFINDEX,
                hub_ifindex: hub_port_index(id),
                hub_ifname,
                ns: Arc::clone(&ns),
                rtnl,
            })
            .await?;

        tracing::debug!(network = self.id, peer = %id, %addr, "peer added");
        self.unfinished_peer = None;
        self.peers.push(PeerState { id, addr, ns });
        Ok(id)
    }

    /// Gives the peer's `eth0` its address and brings `eth0` and `lo` up: three
    /// requests in flight at once on the peer's connection, one round trip through the
    /// driver thread instead of three. The kernel handles them in the order sent (each
    /// is processed within its sendmsg(2), rtnetlink_rcv()); the first error, in that
    /// order, is the one reported.
    async fn configure_peer_end(&self, rtnl: &Rtnl, id: PeerId, addr: IpAddr) -> Result<()> {
        let mut address = rtnl
            .handle()
            .address()
            .add(PEER_IFINDEX, addr, self.subnet.prefix_len());
        // No duplicate address detection: the subnet is ours alone, and DAD would keep
        // an IPv6 address unusable ("tentative") for about a second.
        address
            .message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        let up = |index| {
            rtnl.handle()
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
        };
        let (address, eth0, lo) = futures::join!(address.execute(), up(PEER_IFINDEX), up(1));
        address.map_err(|e| map_rtnetlink(|| format!("assign {addr} to peer {id}"), e))?;
        eth0.map_err(|e| map_rtnetlink(|| format!("bring up {PEER_IFNAME} of peer {id}"), e))?;
        lo.map_err(|e| map_rtnetlink(|| format!("bring up lo of peer {id}"), e))?;
        Ok(())
    }

    /// What a peer's code is told about the network.
    pub fn context(&self, peer: PeerId) -> Result<PeerContext> {
        self.peer(peer)?;
        Ok(PeerContext {
            id: peer,
            addrs: Arc::new(self.peers.iter().map(|p| p.addr).collect()),
        })
    }

    /// Runs `f` on a new thread inside `peer`'s namespace, with a current-thread tokio
    /// runtime of its own, and returns its output.
    ///
    /// Sockets the code opens belong to the peer's namespace (and keep it after the
    /// code returns only if they outlive it). A panic becomes [`Error::PeerPanicked`];
    /// the network stays usable. Dropping the returned future cancels the code.
    pub async fn run_in_namespace<F, Fut, T>(&self, peer: PeerId, f: F) -> Result<T>
    where
        F: FnOnce(PeerContext) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let ctx = self.context(peer)?;
        let ns = Arc::clone(&self.peer(peer)?.ns);
        tracing::trace!(network = self.id, %peer, "running code in the peer's namespace");
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        // Dropping `_cancel` (when this future is dropped) ends the peer's code.
        let (_cancel, cancelled) = oneshot::channel::<()>();
        // A test's panics are kept until its outcome is known: the peer's go where the
        // caller's go (see `testing::capture`).
        let capture = crate::testing::capture::Capture::current();
        let thread = NsThread::spawn(format!("linkem-peer{peer}"), move || {
            if let Some(c) = &capture {
                c.attach();
            }
            let outcome = run_peer_thread(&ns, peer, ctx, f, cancelled);
            let _ = done_tx.send(outcome);
        })
        .map_err(|e| Error::io(format!("spawn the thread of peer {peer}"), e))?;
        self.track(thread);
        match done_rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::PeerPanicked {
                peer,
                message: "the peer's thread ended without a result".into(),
            }),
        }
    }

    fn track(&self, thread: NsThread<()>) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished threads so a long test does not accumulate handles.
        let (done, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.is_finished());
        for t in done {
            let _ = t.join();
        }
        *threads = running;
        threads.push(thread);
    }

    /// A command that runs `program` inside `peer`'s namespace.
    ///
    /// The child enters the namespace between fork and exec. It keeps the namespace
    /// alive while it runs, so end it before the network goes (`kill_on_drop` is set).
    pub fn command(
        &self,
        peer: PeerId,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<tokio::process::Command> {
        let mut command = std::process::Command::new(program);
        crate::process::enter_before_exec(&mut command, Arc::clone(&self.peer(peer)?.ns));
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        Ok(command)
    }

    /// A blocking [`std::process::Command`] that runs `program` inside `peer`'s
    /// namespace.
    pub fn std_command(
        &self,
        peer: PeerId,
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Result<std::process::Command> {
        let mut command = std::process::Command::new(program);
        crate::process::enter_before_exec(&mut command, Arc::clone(&self.peer(peer)?.ns));
        Ok(command)
    }

    /// Tears the network down: waits for peer threads, closes every namespace and
    /// connection. Dropping the network does the same; this form reports nothing
    /// more today but lets a caller await the teardown explicitly.
    pub async fn shutdown(self) -> Result<()> {
        drop(self);
        Ok(())
    }
}

fn run_peer_thread<F, Fut, T>(
    ns: &NetNs,
    peer: PeerId,
    ctx: PeerContext,
    f: F,
    cancelled: oneshot::Receiver<()>,
) -> Result<T>
where
    F: FnOnce(PeerContext) -> Fut,
    Fut: Future<Output = T> + 'static,
{
    ns.enter()
        .map_err(|e| Error::system(format!("enter the namespace of peer {peer}"), e))?;
    // Threads of the runtime's blocking pool start inside the namespace too.
    let pool = RuntimeThreads::default();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    pool.watch(&mut builder);
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Error::io(format!("start the runtime of peer {peer}"), e))?;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let body = AssertUnwindSafe(f(ctx)).catch_unwind();
            tokio::select! {
                out = body => Some(out),
                _ = cancelled => None,
            }
        })
    }));
    // Tasks the code spawned and left running end here, before the result is sent, so
    // the thread is done when the caller sees the output.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    pool.wait_released();
    match result {
        Ok(Some(Ok(value))) => Ok(value),
        Ok(Some(Err(panic))) | Err(panic) => Err(Error::PeerPanicked {
            peer,
            message: panic_message(&*panic),
        }),
        Ok(None) => Err(Error::PeerPanicked {
            peer,
            message: "cancelled".into(),
        }),
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".into()
    }
}

impl Drop for Network {
    /// Returns once everything is gone: each peer thread is joined and released by the
    /// kernel (see `namespace::NsThread`), then the descriptors close and the driver thread is
    /// joined the same way, so no thread of this network still holds a namespace.
    fn drop(&mut self) {
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        tracing::debug!(network = self.id, "network torn down");
    }
}
