//! The emulated network: a hub namespace with a bridge, and one namespace per peer.
//!
//! ```text
//!  hub namespace                      peer n namespace
//!  ┌──────────────────────────┐       ┌─────────────────────────────┐
//!  │ br0 (ifindex 2)          │       │ lo (up)                     │
//!  │  └─ p<n> (ifindex 2+n) ──┼─veth──┼─ eth0 (ifindex 2), host n   │
//!  └──────────────────────────┘       │   root qdisc: per-dest tc   │
//!                                     └─────────────────────────────┘
//! ```
//!
//! Every interface lives in a namespace that belongs to this network alone, so names
//! (`br0`, `p<n>`, `eth0`) can never clash with another network, in this process or
//! another, and the host namespace is never touched. Interface indexes are chosen at
//! creation (both veth ends accept one), which saves a lookup per peer.
//!
//! Namespaces are held by descriptors (see the `namespace` module); dropping the network
//! closes them and the kernel destroys the namespaces, with every veth, bridge and
//! qdisc in them, even if the process dies by SIGKILL.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures::FutureExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::ip::Subnet;
use crate::namespace::NetNs;
use crate::netlink::{map_rtnetlink, Driver, Rtnl};

/// A peer of one network. Ids start at 1 and are per network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub usize);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One direction between two peers: traffic from `source` to `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The sending peer.
    pub source: PeerId,
    /// The receiving peer.
    pub destination: PeerId,
}

impl Link {
    /// The direction `source -> destination`.
    pub fn new(source: PeerId, destination: PeerId) -> Self {
        Link {
            source,
            destination,
        }
    }

    /// The opposite direction.
    pub fn reversed(self) -> Self {
        Link::new(self.destination, self.source)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.source, self.destination)
    }
}

/// The bridge's interface index in the hub.
const BRIDGE_INDEX: u32 = 2;
/// The peer's interface index inside its namespace (lo is 1).
pub(crate) const PEER_IFINDEX: u32 = 2;
/// The peer's interface name inside its namespace.
pub(crate) const PEER_IFNAME: &str = "eth0";

fn hub_port_index(peer: PeerId) -> u32 {
    BRIDGE_INDEX + peer.0 as u32
}

static NEXT_NETWORK: AtomicU64 = AtomicU64::new(1);

/// One peer's namespace and its connection.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub(crate) id: PeerId,
    pub(crate) addr: IpAddr,
    pub(crate) ns: Arc<NetNs>,
    pub(crate) rtnl: Rtnl,
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
/// peers can run (`run_in_namespace`) while impairments change.
#[derive(Debug)]
pub struct Network {
    id: u64,
    subnet: Subnet,
    // Field order is drop order: peer threads are joined first (see Drop), then
    // peers' and the hub's descriptors close, then the driver closes the sockets.
    peers: Vec<PeerState>,
    hub: NetNs,
    hub_rtnl: Rtnl,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// A peer whose `add_peer` sent the veth request but did not finish (cancelled by
    /// dropping its future, or failed after the veth existed): its hub port may still
    /// exist and would make the next `add_peer` fail with EEXIST. Its namespace is kept
    /// open here because the veth request names it by descriptor number: closed early,
    /// the number could be reused before the driver thread sends the request.
    unfinished_peer: Option<(PeerId, Arc<NetNs>)>,
    pub(crate) trees: tokio::sync::Mutex<crate::tc::tree::Trees>,
    driver: Driver,
}

impl Network {
    /// Creates the hub namespace and its bridge. The subnet is checked first.
    pub async fn new(subnet: Subnet) -> Result<Network> {
        subnet.validate()?;
        let id = NEXT_NETWORK.fetch_add(1, Ordering::Relaxed);
        let driver = Driver::start(format!("linkem-net{id}"))?;
        let (hub, socket) = NetNs::create("the hub")?;
        let hub_rtnl = driver.connect(socket)?;
        let bridge = LinkBridge::new("br0").index(BRIDGE_INDEX).up().build();
        hub_rtnl
            .handle()
            .link()
            .add(bridge)
            .execute()
            .await
            .map_err(|e| map_rtnetlink(|| "create the bridge br0 in the hub".into(), e))?;
        tracing::debug!(network = id, %subnet, "network created");
        Ok(Network {
            id,
            subnet,
            peers: Vec::new(),
            hub,
            hub_rtnl,
            threads: Mutex::new(Vec::new()),
            unfinished_peer: None,
            trees: Default::default(),
            driver,
        })
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

    /// Adds a peer: its namespace, a veth pair from the hub's bridge to `eth0` inside
    /// it with the next host address of the subnet, `eth0` and `lo` up.
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
        let peer_end = LinkMessageBuilder::<LinkUnspec>::new()
            .name(PEER_IFNAME.to_string())
            .index(PEER_IFINDEX)
            .setns_by_fd(ns.raw_fd())
            .build();
        let ns = Arc::new(ns);
        self.unfinished_peer = Some((id, Arc::clone(&ns)));
        let veth = LinkVeth::new(&format!("p{id}"), PEER_IFNAME)
            .index(hub_port_index(id))
            .controller(BRIDGE_INDEX)
            .up()
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

        tracing::debug!(network = self.id, peer = %id, %addr, "peer added");
        self.unfinished_peer = None;
        self.peers.push(PeerState { id, addr, ns, rtnl });
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
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        // Dropping `_cancel` (when this future is dropped) ends the peer's code.
        let (_cancel, cancelled) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("linkem-peer{peer}"))
            .spawn(move || {
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

    fn track(&self, thread: JoinHandle<()>) {
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

    pub(crate) fn hub_rtnl(&self) -> &Rtnl {
        &self.hub_rtnl
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
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    fn drop(&mut self) {
        let threads = std::mem::take(self.threads.get_mut().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        tracing::debug!(network = self.id, "network torn down");
    }
}
