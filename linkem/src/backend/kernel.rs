//! The kernel backend: a bridge in the hub, and Linux traffic control on every source
//! peer's `eth0`, configured over rtnetlink.
//!
//! Each source peer's `eth0` gets the tree of [`crate::tc::handles`] the first time one
//! of its links is impaired or cut. A change is planned by [`crate::tc::plan`] from the
//! link's recorded impairment to the new one and only touches that destination's
//! subtree; the root qdisc is never deleted, so other links' packets are not disturbed.
//! A cut re-points the destination's filter at the tree's blackhole; a destination that
//! duplicates lives on an IFB device of its own (both in [`crate::tc::handles`]).
//!
//! What the user asked for is recorded by the network, not here: this module keeps only
//! what exists in the kernel (which trees are built, which IFB devices exist, which seed
//! each netem was given).
//!
//! # Seeds
//!
//! Every netem gets its link's seed (`TCA_NETEM_PRNG_SEED`): the impairment's own, else
//! the one the network derives for the link. A shaper-only link has no netem and draws
//! nothing, so it gets none. Kernels before 6.6 drop the attribute silently (see
//! [`crate::tc::netem`]); [`seeds_honoured`] finds out, once per process, by dumping a
//! seeded netem back, and a network that asked for a seed on such a kernel is told so
//! ([`warn_seeds_ignored`]). A seeded netem is re-seeded by every change of its
//! impairment (`netem_change`), so a link's stream starts over when its impairment
//! changes, as on the userspace backend.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoKind, LinkAttribute,
};
use nix::errno::Errno;
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};

use crate::backend::{Hub, LinkStats, PeerPort};
use crate::error::{Error, Result};
use crate::impairment::LinkImpairment;
use crate::link::{Link, PeerId};
use crate::namespace::NetNs;
use crate::netlink::{map_rtnetlink, Driver, Rtnl, CHANGE, DUMP};
use crate::tc::handles::{DestSlot, ROOT};
use crate::tc::plan::{self, Destination, TcOp};
use crate::tc::psched::Psched;

/// The bridge's interface index in the hub (the network numbers hub ports from 3).
const BRIDGE_INDEX: u32 = 2;

/// The kernel data plane of one network.
#[derive(Debug)]
pub(crate) struct KernelBackend {
    hub_rtnl: Rtnl,
    peers: BTreeMap<PeerId, KernelPeer>,
    /// Whether this kernel has sch_netem and it honours `TCA_NETEM_PRNG_SEED`.
    netem: bool,
    seeds_honoured: bool,
    /// Whether this network was already told that its seeds are ignored.
    warned: AtomicBool,
    /// The packet capture, when the network has one, and the hub it taps.
    capture: Option<(capture::KernelCapture, Arc<NetNs>)>,
}

/// One peer, as its tc tree needs it.
#[derive(Debug)]
struct KernelPeer {
    addr: IpAddr,
    /// `eth0` in the peer's namespace: the device the tree hangs on.
    ifindex: i32,
    rtnl: Rtnl,
    /// Changes of one source are serialised by the network; the lock only makes the
    /// state reachable from `&self` while other sources change concurrently.
    tree: tokio::sync::Mutex<PeerTree>,
}

/// What exists of one source's tree in the kernel.
#[derive(Debug, Default)]
struct PeerTree {
    /// The spine of [`plan::plan_tree`] (root, default class, hash tables, blackhole).
    built: bool,
    /// Destinations whose IFB device exists.
    ifbs: BTreeSet<PeerId>,
    /// The seed the network derived for each destination's link, as last handed over
    /// with an impairment that has no seed of its own: what that link's netem carries,
    /// needed to describe it when the next change replaces it (or restores it).
    derived_seeds: BTreeMap<PeerId, u64>,
}

/// `imp` as the kernel realises it: a netem that would draw unseeded gets `seed`.
fn with_link_seed(imp: &LinkImpairment, seed: u64) -> LinkImpairment {
    if imp.seed.is_none() && imp.needs_netem() {
        imp.clone().with_seed(seed)
    } else {
        imp.clone()
    }
}

impl KernelBackend {
    /// Creates the bridge `br0` in the hub.
    pub(crate) async fn start(hub: Hub<'_>) -> Result<KernelBackend> {
        tracing::debug!("creating the bridge br0 in the hub");
        let bridge = LinkBridge::new("br0").index(BRIDGE_INDEX).up().build();
        hub.rtnl
            .handle()
            .link()
            .add(bridge)
            .execute()
            .await
            .map_err(|e| map_rtnetlink(|| "create the bridge br0 in the hub".into(), e))?;
        let netem = netem_supported(hub.rtnl).await;
        let seeds_honoured = netem && seeds_honoured(hub.rtnl).await;
        let capture = match hub.capture {
            Some(config) => Some((capture::KernelCapture::start(config)?, Arc::clone(hub.ns))),
            None => None,
        };
        Ok(KernelBackend {
            capture,
            hub_rtnl: hub.rtnl.clone(),
            peers: BTreeMap::new(),
            netem,
            seeds_honoured,
            warned: AtomicBool::new(false),
        })
    }

    /// Whether the same seeds give the same fates: netem honours its seeds, or there is
    /// no netem (then every impairment that draws random numbers is refused).
    pub(crate) fn seeds_reproducible(&self) -> bool {
        self.seeds_honoured || !self.netem
    }

    /// A seed was asked for: by the network (`link` `None`: builder, attribute or
    /// environment) or by an impairment of `link`. Where netem ignores seeds, says so
    /// (a warning for this network, one line on stderr per process).
    pub(crate) fn seed_requested(&self, link: Option<Link>) {
        if self.seeds_reproducible() || self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let why = match link {
            None => "this network was given a seed".to_string(),
            Some(link) => format!("link {link} has an impairment with a seed"),
        };
        warn_seeds_ignored(&why);
    }

    /// Hub ports are enslaved to `br0` in the request that creates them.
    pub(crate) fn hub_port_controller(&self) -> Option<u32> {
        Some(BRIDGE_INDEX)
    }

    pub(crate) async fn add_peer(&mut self, peer: PeerPort) -> Result<()> {
        let ifindex = i32::try_from(peer.ifindex).map_err(|_| Error::UnknownPeer(peer.id))?;
        if let Some((tap, hub_ns)) = &self.capture {
            let mirror_index =
                capture::hub_mirror_index(peer.id).ok_or(Error::UnknownPeer(peer.id))?;
            if let Err(e) = tap_peer(&self.hub_rtnl, tap, hub_ns, &peer, mirror_index).await {
                // The pair's hub end takes the peer end with it (clsact and its filter
                // go with the peer's namespace, or when the network deletes eth0).
                let _ = self
                    .hub_rtnl
                    .handle()
                    .link()
                    .del(mirror_index)
                    .execute()
                    .await;
                return Err(e);
            }
        }
        self.peers.insert(
            peer.id,
            KernelPeer {
                addr: peer.addr,
                ifindex,
                rtnl: peer.rtnl,
                tree: Default::default(),
            },
        );
        Ok(())
    }

    pub(crate) fn check_link(&self, link: Link) -> Result<()> {
        DestSlot::from_peer(link.destination).map(|_| ())
    }

    pub(crate) async fn check_supported(&self, impairment: &LinkImpairment) -> Result<()> {
        if impairment.needs_netem() && !netem_supported(&self.hub_rtnl).await {
            return Err(Error::Unsupported {
                feature: "this impairment (delay, loss, duplication, corruption or reordering)"
                    .into(),
                module: "sch_netem",
                hint: "load it (modprobe sch_netem; on Ubuntu it is in linux-modules-extra), \
                       or run on a kernel built with CONFIG_NET_SCH_NETEM (the kernel lane: \
                       scripts/kernel-lane); bandwidth limits alone work without it",
            });
        }
        Ok(())
    }

    fn peer(&self, peer: PeerId) -> Result<&KernelPeer> {
        self.peers.get(&peer).ok_or(Error::UnknownPeer(peer))
    }

    /// The link's destination as the plan sees it, with impairment `impairment`.
    fn destination(&self, link: Link, impairment: &LinkImpairment) -> Result<Destination> {
        let addr = self.peer(link.destination)?.addr;
        let slot = DestSlot::from_peer(link.destination)?;
        Ok(Destination::new(slot, addr, impairment.clone()))
    }

    pub(crate) async fn set_impairment(
        &self,
        link: Link,
        from: &LinkImpairment,
        to: &LinkImpairment,
        cut: bool,
        seed: u64,
    ) -> Result<()> {
        let source = self.peer(link.source)?;
        let mut tree = source.tree.lock().await;
        // `from` without a seed of its own carries the derived seed it was built with;
        // the network derives the same one for a link every time.
        let derived = match to.seed {
            None => seed,
            Some(_) => tree
                .derived_seeds
                .get(&link.destination)
                .copied()
                .unwrap_or(seed),
        };
        let old = self.destination(link, &with_link_seed(from, derived))?;
        let new = self.destination(link, &with_link_seed(to, seed))?;
        if to.needs_netem() && to.seed.is_some() {
            self.seed_requested(Some(link));
        }
        let psched = psched();
        ensure_tree(source, &mut tree, link.source, &psched).await?;
        if new.ifb.is_some() {
            ensure_ifb(source, &mut tree, link).await?;
        }
        let ops = plan::plan_link(source.ifindex, &old, &new, cut, &psched)?;
        tracing::debug!(
            %link,
            requests = ops.len(),
            "changing the link's traffic-control subtree"
        );
        if let Err(e) = run(&source.rtnl, &ops, link).await {
            tracing::debug!(
                %link,
                "the kernel refused the change ({e}); restoring the previous subtree"
            );
            let restore = plan::plan_restore(source.ifindex, &old, &new, cut, &psched);
            for op in &restore.cleanup {
                // A refusal means that part of the attempt was not made.
                let _ = run(&source.rtnl, std::slice::from_ref(op), link).await;
            }
            if let Err(e) = run(&source.rtnl, &restore.rebuild, link).await {
                tracing::warn!("could not restore link {link} after a refused change: {e}");
            }
            return Err(e);
        }
        if to.seed.is_none() {
            tree.derived_seeds.insert(link.destination, seed);
        }
        Ok(())
    }

    pub(crate) async fn set_cut(
        &self,
        link: Link,
        cut: bool,
        impairment: &LinkImpairment,
    ) -> Result<()> {
        let source = self.peer(link.source)?;
        let current = self.destination(link, impairment)?;
        let mut tree = source.tree.lock().await;
        ensure_tree(source, &mut tree, link.source, &psched()).await?;
        let op = plan::plan_cut(source.ifindex, current.addr, cut, Some(&current));
        tracing::debug!(
            %link,
            "{}",
            if cut {
                "re-pointing the link's filter at the blackhole"
            } else {
                "re-pointing the link's filter at its own class"
            }
        );
        run(&source.rtnl, &[op], link).await
    }

    pub(crate) async fn link_stats(
        &self,
        link: Link,
        impairment: &LinkImpairment,
        cut: bool,
    ) -> Result<Option<LinkStats>> {
        let source = self.peer(link.source)?;
        let current = self.destination(link, impairment)?;
        let Some((handle, ifindex)) = plan::counters(source.ifindex, Some(&current), cut) else {
            return Ok(None);
        };
        let mut dump = TcMessage::with_index(ifindex);
        dump.header.index = ifindex;
        let replies = source
            .rtnl
            .request(RouteNetlinkMessage::GetQueueDiscipline(dump), DUMP, || {
                format!("read the counters of link {link}")
            })
            .await?;
        Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q)
                if q.header.handle == handle && q.header.index == ifindex =>
            {
                q.attributes.iter().find_map(|a| match a {
                    TcAttribute::Stats(s) => Some(LinkStats {
                        packets: s.packets,
                        bytes: s.bytes,
                        drops: s.drops,
                        overlimits: s.overlimits,
                        qlen: s.qlen,
                        backlog: s.backlog,
                        fates: None,
                    }),
                    _ => None,
                })
            }
            _ => None,
        }))
    }
}

/// Starts capturing peer `peer`: the mirror pair `c<n>` (hub) / `cap0` (peer), the
/// mirror on `eth0`'s egress hook, and the two sockets (see [`capture`]).
async fn tap_peer(
    hub_rtnl: &Rtnl,
    tap: &capture::KernelCapture,
    hub_ns: &Arc<NetNs>,
    peer: &PeerPort,
    mirror_index: u32,
) -> Result<()> {
    use netlink_packet_route::link::{InfoData, InfoVeth};
    use rtnetlink::LinkVeth;
    let id = peer.id;
    let peer_end = LinkMessageBuilder::<LinkUnspec>::new()
        .name(capture::MIRROR_IFNAME.to_string())
        .index(capture::MIRROR_IFINDEX)
        .setns_by_fd(peer.ns.raw_fd())
        .build();
    let pair = LinkVeth::new(&format!("c{id}"), capture::MIRROR_IFNAME)
        .index(mirror_index)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_end)))
        .build();
    hub_rtnl
        .handle()
        .link()
        .add(pair)
        .execute()
        .await
        .map_err(|e| map_rtnetlink(|| format!("create the capture pair of peer {id}"), e))?;
    // The peer end comes up once both ends exist (veth_open answers ENOTCONN before).
    peer.rtnl
        .handle()
        .link()
        .set(
            LinkUnspec::new_with_index(capture::MIRROR_IFINDEX)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| map_rtnetlink(|| format!("bring up the capture end of peer {id}"), e))?;
    // The sockets exist before the mirror, so the first frame mirrored is recorded.
    let mirror = capture::open_socket_in(
        &peer.ns,
        capture::MIRROR_IFINDEX,
        &format!("{} of peer {id}", capture::MIRROR_IFNAME),
    )?;
    let port = capture::open_socket_in(
        hub_ns,
        peer.hub_ifindex,
        &format!("hub port {}", peer.hub_ifname),
    )?;
    let ifindex = i32::try_from(peer.ifindex).map_err(|_| Error::UnknownPeer(id))?;
    let requests = [
        (
            RouteNetlinkMessage::NewQueueDiscipline(crate::tc::clsact::qdisc(ifindex)),
            "add the capture's clsact qdisc",
        ),
        (
            RouteNetlinkMessage::NewTrafficFilter(crate::tc::clsact::mirror_filter(
                ifindex,
                capture::MIRROR_IFINDEX,
            )),
            "add the capture's mirror",
        ),
    ];
    for (message, what) in requests {
        peer.rtnl
            .request(message, plan::CREATE | CHANGE, || {
                format!("peer {id}: {what}")
            })
            .await
            .map_err(|e| match e {
                Error::Netlink {
                    errno: Errno::ENOENT | Errno::EOPNOTSUPP,
                    ..
                } => Error::Unsupported {
                    feature: format!("capture on the kernel backend (peer {id}: {what})"),
                    module: "sch_ingress, cls_u32 and act_mirred",
                    hint: "load them (modprobe sch_ingress cls_u32 act_mirred), or \
                               capture on the userspace backend",
                },
                e => e,
            })?;
    }
    tap.add_peer(id, peer.mac, mirror, port);
    Ok(())
}

/// Builds the spine of a source's tree, once.
async fn ensure_tree(
    source: &KernelPeer,
    tree: &mut PeerTree,
    peer: PeerId,
    psched: &Psched,
) -> Result<()> {
    if tree.built {
        return Ok(());
    }
    let ops = plan::plan_tree(source.ifindex, &[], psched)?;
    if let Err(e) = run(&source.rtnl, &ops, Link::new(peer, peer)).await {
        // Leave no half tree: the root's deletion takes everything under it.
        let del = crate::tc::bare_message(source.ifindex, ROOT, TcHandle::ROOT);
        let _ = source
            .rtnl
            .request(RouteNetlinkMessage::DelQueueDiscipline(del), CHANGE, || {
                String::new()
            })
            .await;
        return Err(match e {
            Error::Netlink { op, errno, message } => Error::Netlink {
                op: format!("build the traffic-control tree of peer {peer}: {op}"),
                errno,
                message,
            },
            e => e,
        });
    }
    tracing::debug!(%peer, requests = ops.len(), "traffic-control tree built on eth0");
    tree.built = true;
    Ok(())
}

/// Creates the IFB device of a duplicating destination, once (it stays, unused, when
/// the link stops duplicating: a later duplication finds it).
///
/// The device gets no IPv6 address (address generation mode `none`, set while it is
/// still down): an IFB that came up with a link-local address would send its own
/// duplicate address detection, MLD reports and router solicitations, and every
/// packet an IFB sends passes its root qdisc, the link's netem, where it would draw
/// from the link's seeded stream and shift every later packet's fate by one, at
/// moments that differ from run to run (the IFB discards them only after the qdisc:
/// measured, a fresh IFB's root qdisc saw one as it came up, one 3.5 to 4.5 s later and
/// one after 11 s).
async fn ensure_ifb(source: &KernelPeer, tree: &mut PeerTree, link: Link) -> Result<()> {
    if tree.ifbs.contains(&link.destination) {
        return Ok(());
    }
    let index = DestSlot::from_peer(link.destination)?.ifb();
    let ifb = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
        .name(format!("ifb{}", link.destination))
        .index(index)
        .build();
    let links = source.rtnl.handle().link();
    links
        .add(ifb)
        .execute()
        .await
        .map_err(|e| map_rtnetlink(|| format!("create the IFB device of link {link}"), e))?;
    // A request of its own, between creation and the one that brings the device up:
    // at creation the device has no IPv6 state yet and the kernel refuses the option
    // (EAFNOSUPPORT), and in the request that sets IFF_UP it comes too late (the
    // link-local address is made as the device goes up). Measured with `ip link`.
    let no_ipv6_address =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]);
    match links
        .set(
            LinkUnspec::new_with_index(index)
                .append_extra_attribute(no_ipv6_address)
                .build(),
        )
        .execute()
        .await
    {
        // A kernel without IPv6 has no inet6 link options, and no IPv6 chatter either.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EAFNOSUPPORT => {}
        other => other.map_err(|e| {
            map_rtnetlink(
                || format!("turn IPv6 addresses off on the IFB device of link {link}"),
                e,
            )
        })?,
    }
    links
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| map_rtnetlink(|| format!("bring up the IFB device of link {link}"), e))?;
    tracing::debug!(%link, ifindex = index, "IFB device ifb{} created", link.destination);
    tree.ifbs.insert(link.destination);
    Ok(())
}

fn psched() -> Psched {
    static PSCHED: OnceLock<Psched> = OnceLock::new();
    *PSCHED.get_or_init(Psched::read)
}

/// Sends the requests of a plan in order; the first refusal stops it.
async fn run(rtnl: &Rtnl, ops: &[TcOp], link: Link) -> Result<()> {
    for op in ops {
        let message = op.message().clone();
        let message = match op {
            TcOp::NewQdisc { .. } => RouteNetlinkMessage::NewQueueDiscipline(message),
            TcOp::DelQdisc { .. } => RouteNetlinkMessage::DelQueueDiscipline(message),
            TcOp::NewClass { .. } => RouteNetlinkMessage::NewTrafficClass(message),
            TcOp::DelClass { .. } => RouteNetlinkMessage::DelTrafficClass(message),
            TcOp::NewFilter { .. } => RouteNetlinkMessage::NewTrafficFilter(message),
            TcOp::DelFilter { .. } => RouteNetlinkMessage::DelTrafficFilter(message),
        };
        tracing::trace!(%link, request = %op.describe(), "netlink request");
        rtnl.request(message, CHANGE | op.flags(), || {
            format!("link {link}: {}", op.describe())
        })
        .await
        .map_err(|e| match e {
            Error::Netlink {
                errno: Errno::ENOENT | Errno::EOPNOTSUPP,
                ref message,
                ..
            } if message
                .as_deref()
                .is_some_and(|m| m.contains("qdisc kind is unknown")) =>
            {
                Error::Unsupported {
                    feature: format!("link {link}: {}", op.describe()),
                    module: "a traffic-control module",
                    hint: "the kernel lacks a qdisc this impairment needs",
                }
            }
            e => e,
        })?;
    }
    Ok(())
}

/// Whether the kernel has sch_netem, probed once per process.
static NETEM: OnceLock<bool> = OnceLock::new();

/// Whether sch_netem exists: a netem is created (and deleted) on `lo` of the namespace
/// `rtnl` talks to (the hub's). Probed once per process.
pub(crate) async fn netem_supported(rtnl: &Rtnl) -> bool {
    if let Some(known) = NETEM.get() {
        return *known;
    }
    let probe = crate::tc::netem::qdisc(1, ROOT, TcHandle::ROOT, &LinkImpairment::default(), 1000);
    let created = rtnl
        .request(
            RouteNetlinkMessage::NewQueueDiscipline(probe),
            plan::CREATE | CHANGE,
            || "probe for sch_netem".into(),
        )
        .await;
    let supported = match created {
        Ok(_) => {
            let del = crate::tc::bare_message(1, ROOT, TcHandle::ROOT);
            let _ = rtnl
                .request(RouteNetlinkMessage::DelQueueDiscipline(del), CHANGE, || {
                    "remove the sch_netem probe".into()
                })
                .await;
            tracing::debug!("sch_netem probe: the kernel has sch_netem");
            true
        }
        Err(e) => {
            tracing::debug!("sch_netem probe: {e}");
            false
        }
    };
    *NETEM.get_or_init(|| supported)
}

/// Whether netem honours `TCA_NETEM_PRNG_SEED`, probed once per process.
static SEEDS: OnceLock<bool> = OnceLock::new();

/// The seed the probe hands netem: any value works, this one is unlikely to be a
/// random seed the kernel picked itself.
const PROBE_SEED: u64 = 0x6c69_6e6b_656d_5eed;

/// Whether netem honours seeds: a netem seeded with [`PROBE_SEED`] is created on `lo`
/// of the namespace `rtnl` talks to, dumped and deleted. A kernel that knows the
/// attribute reports the seed in its dump (`netem_dump`, Linux >= 6.6); an older one
/// dropped it silently when the qdisc was made. Probed once per process; `false`
/// without sch_netem.
pub(crate) async fn seeds_honoured(rtnl: &Rtnl) -> bool {
    if let Some(known) = SEEDS.get() {
        return *known;
    }
    let imp = LinkImpairment::default().with_seed(PROBE_SEED);
    let probe = crate::tc::netem::qdisc(1, ROOT, TcHandle::ROOT, &imp, 1000);
    let created = rtnl
        .request(
            RouteNetlinkMessage::NewQueueDiscipline(probe),
            plan::CREATE | CHANGE,
            || "probe whether netem honours seeds".into(),
        )
        .await;
    if let Err(e) = created {
        tracing::debug!("netem seed probe: {e}");
        return *SEEDS.get_or_init(|| false);
    }
    let dump = rtnl
        .request(
            RouteNetlinkMessage::GetQueueDiscipline(TcMessage::with_index(1)),
            DUMP,
            || "read back the netem seed probe".into(),
        )
        .await;
    let del = crate::tc::bare_message(1, ROOT, TcHandle::ROOT);
    let _ = rtnl
        .request(RouteNetlinkMessage::DelQueueDiscipline(del), CHANGE, || {
            "remove the netem seed probe".into()
        })
        .await;
    let honoured = match dump {
        Ok(replies) => replies.iter().any(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q)
                if q.header.index == 1 && q.header.handle == ROOT =>
            {
                netem_options(q).and_then(|o| crate::tc::netem::dumped_seed(&o)) == Some(PROBE_SEED)
            }
            _ => false,
        }),
        Err(e) => {
            tracing::debug!("netem seed probe: {e}");
            false
        }
    };
    *SEEDS.get_or_init(|| honoured)
}

/// The raw `TCA_OPTIONS` payload of a dumped netem (netlink-packet-route keeps an
/// unknown kind's options as one opaque attribute).
fn netem_options(q: &TcMessage) -> Option<Vec<u8>> {
    use rtnetlink::packet_core::Nla;
    use rtnetlink::packet_route::tc::TcOption;
    q.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => options.iter().find_map(|o| match o {
            TcOption::Other(nla) => {
                let mut value = vec![0; nla.value_len()];
                nla.emit_value(&mut value);
                Some(value)
            }
            _ => None,
        }),
        _ => None,
    })
}

/// The sentence that says this kernel's netem ignores seeds.
pub(crate) fn seeds_ignored_note() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "this kernel (Linux {release}) ignores netem seeds (TCA_NETEM_PRNG_SEED needs Linux \
         >= 6.6); fates on the kernel backend are not reproducible; the userspace backend's are"
    )
}

/// Says that seeds are ignored: a warning naming `why` a seed mattered, and one line on
/// stderr per process (a replayed failure would otherwise look reproducible).
fn warn_seeds_ignored(why: &str) {
    let note = seeds_ignored_note();
    tracing::warn!("{why}, but {note}");
    static STDERR: Once = Once::new();
    STDERR.call_once(|| eprintln!("linkem: {note}"));
}

/// Whether this kernel has sch_netem, probed in a throwaway namespace (once per
/// process). For callers outside any runtime, such as a test harness deciding which
/// tests can run before it starts them; needs the privileges of
/// [`Network::new`](crate::Network::new).
pub fn netem_available() -> Result<bool> {
    if let Some(known) = NETEM.get() {
        return Ok(*known);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start a runtime for the sch_netem probe", e))?;
    // Dropped in this order after the probe: the namespace's descriptor, then the
    // driver (which closes the socket), so the namespace is gone when this returns.
    let (ns, socket): (NetNs, _) = NetNs::create("the sch_netem probe")?;
    let driver = Driver::start("linkem-netem-probe".into())?;
    let rtnl = driver.connect(socket)?;
    let supported = runtime.block_on(netem_supported(&rtnl));
    drop(rtnl);
    drop(ns);
    drop(driver);
    Ok(supported)
}

mod capture;
#[cfg(test)]
mod tests;
