//! The live traffic-control tree of every peer, and the [`Network`] methods that
//! change it: impairments, partitions, counters.
//!
//! Each source peer's `eth0` gets the tree of [`crate::tc::handles`] the first time one
//! of its links is impaired or cut. A change is planned by [`crate::tc::plan`] from the
//! link's recorded state to the new one and only touches that destination's subtree;
//! the root qdisc is never deleted, so other links' packets are not disturbed.
//!
//! Partitions re-point the destination's u32 filter at a blackhole class (`1:ffff`,
//! whose leaf is a `pfifo` of limit 0, which drops everything): one request per
//! direction to cut or heal, and nothing that needs sch_netem.
//!
//! A destination whose netem duplicates gets an IFB device of its own (the
//! CVE-2025-38553 check in `check_netem_in_tree()` refuses a duplicating netem beside
//! other netems on one device; kernels with the check reverted accept either layout,
//! so linkem uses the IFB everywhere and behaves the same on both).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;

use netlink_packet_route::link::InfoKind;
use nix::errno::Errno;
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use crate::error::{Error, Result};
use crate::netlink::{map_rtnetlink, Rtnl, CHANGE, DUMP};
use crate::network::{Link, Network, PeerId, PEER_IFINDEX};
use crate::tc::filter::{self, FilterTarget};
use crate::tc::handles::{DestSlot, ROOT};
use crate::tc::htb::{self, HtbClass};
use crate::tc::impairment::LinkImpairment;
use crate::tc::plan::{self, Destination, TcOp};
use crate::tc::psched::Psched;

/// The blackhole class of partitions, `1:ffff` (destination classes stop at `1:7ffe`).
const BLACKHOLE_CLASS: TcHandle = TcHandle {
    major: 1,
    minor: 0xffff,
};
/// Its leaf, a pfifo of limit 0: `7fff:` lies between the destination majors
/// (`2..=7ffe`) and the TBF majors (`8002..=fffe`).
const BLACKHOLE_QDISC: TcHandle = TcHandle {
    major: 0x7fff,
    minor: 0,
};
/// Create the filter or replace the one with the same handle (no NLM_F_EXCL).
const UPSERT: u16 = netlink_packet_core::NLM_F_CREATE | plan::REPLACE;
/// IFB devices of duplicating destinations get ifindex `IFB_BASE + slot`.
const IFB_BASE: u32 = 0x10000;

/// The recorded tc state of every peer of a network.
#[derive(Debug, Default)]
pub(crate) struct Trees {
    peers: BTreeMap<PeerId, PeerTree>,
}

#[derive(Debug, Default)]
struct PeerTree {
    built: bool,
    /// Impaired destinations, as built.
    links: BTreeMap<PeerId, Destination>,
    /// Destinations currently cut off.
    cut: BTreeSet<PeerId>,
    /// IFB devices created, by destination.
    ifbs: BTreeMap<PeerId, u32>,
}

/// Counters of one impaired link, from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Packets that left the link's queue.
    pub packets: u32,
    /// Bytes that left the link's queue.
    pub bytes: u64,
    /// Packets dropped (loss, queue overflow, partition).
    pub drops: u32,
    /// Packets held back by the shaper.
    pub overlimits: u32,
    /// Packets waiting now.
    pub qlen: u32,
    /// Bytes waiting now.
    pub backlog: u32,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} pkt ({} B), dropped {}, overlimits {}, backlog {} pkt ({} B)",
            self.packets, self.bytes, self.drops, self.overlimits, self.qlen, self.backlog
        )
    }
}

/// Whether the kernel has sch_netem, probed once per process.
static NETEM: OnceLock<bool> = OnceLock::new();

impl Network {
    /// Sets what the link `source -> destination` does to packets (that direction only).
    /// Applying the value the link already has is a no-op; a change edits the link's
    /// subtree in place. On a refusal the link keeps its previous impairment.
    pub async fn apply_impairment(&self, link: Link, impairment: LinkImpairment) -> Result<()> {
        self.check_link(link)?;
        impairment.validate()?;
        self.check_supported(&impairment).await?;
        let mut trees = self.trees.lock().await;
        self.set_link(
            trees.peers.entry(link.source).or_default(),
            link,
            impairment,
        )
        .await
    }

    /// Sets the same impairment in both directions between `a` and `b`.
    pub async fn apply_impairment_both(
        &self,
        a: PeerId,
        b: PeerId,
        impairment: LinkImpairment,
    ) -> Result<()> {
        self.check_link(Link::new(a, b))?;
        impairment.validate()?;
        self.check_supported(&impairment).await?;
        let mut trees = self.trees.lock().await;
        self.set_link(
            trees.peers.entry(a).or_default(),
            Link::new(a, b),
            impairment.clone(),
        )
        .await?;
        self.set_link(
            trees.peers.entry(b).or_default(),
            Link::new(b, a),
            impairment,
        )
        .await
    }

    /// Sets the impairment of every direction between every two peers (a default for
    /// the whole network; later `apply_impairment` calls override single links).
    ///
    /// The source peers are configured concurrently, each on its own connection (one
    /// request in flight per source; the links of one source go in peer order). On a
    /// refusal the error of the first failing source, in peer order, is returned; the
    /// links set before it, on any source, keep their new impairment, and the failing
    /// link keeps its previous one.
    pub async fn apply_impairment_all(&self, impairment: LinkImpairment) -> Result<()> {
        impairment.validate()?;
        self.check_supported(&impairment).await?;
        let peers: Vec<PeerId> = self.peers().collect();
        let mut trees = self.trees.lock().await;
        for &a in &peers {
            trees.peers.entry(a).or_default();
        }
        let peers = &peers;
        let impairment = &impairment;
        let sources = trees
            .peers
            .iter_mut()
            .filter(|(a, _)| peers.contains(a))
            .map(|(&a, tree)| async move {
                for &b in peers.iter().filter(|&&b| b != a) {
                    self.set_link(tree, Link::new(a, b), impairment.clone())
                        .await?;
                }
                Ok(())
            });
        futures::future::join_all(sources)
            .await
            .into_iter()
            .collect::<Result<Vec<()>>>()?;
        Ok(())
    }

    /// Removes the impairment of one direction: it behaves like a plain wire again.
    pub async fn clear_impairment(&self, link: Link) -> Result<()> {
        self.apply_impairment(link, LinkImpairment::default()).await
    }

    /// The impairment a direction has now.
    pub async fn impairment(&self, link: Link) -> Result<LinkImpairment> {
        self.check_link(link)?;
        let trees = self.trees.lock().await;
        Ok(trees
            .peers
            .get(&link.source)
            .and_then(|t| t.links.get(&link.destination))
            .map(|d| d.impairment.clone())
            .unwrap_or_default())
    }

    /// Cuts both directions between `a` and `b`: every packet is dropped silently,
    /// as by a failed switch. The impairments stay configured for [`Network::heal`].
    pub async fn partition(&self, a: PeerId, b: PeerId) -> Result<()> {
        self.partition_one_way(Link::new(a, b)).await?;
        self.partition_one_way(Link::new(b, a)).await
    }

    /// Cuts one direction only.
    pub async fn partition_one_way(&self, link: Link) -> Result<()> {
        self.check_link(link)?;
        let mut trees = self.trees.lock().await;
        self.cut(&mut trees, link, true).await
    }

    /// Restores both directions between `a` and `b`, with their impairments.
    pub async fn heal(&self, a: PeerId, b: PeerId) -> Result<()> {
        self.heal_one_way(Link::new(a, b)).await?;
        self.heal_one_way(Link::new(b, a)).await
    }

    /// Restores one direction.
    pub async fn heal_one_way(&self, link: Link) -> Result<()> {
        self.check_link(link)?;
        let mut trees = self.trees.lock().await;
        self.cut(&mut trees, link, false).await
    }

    /// Cuts `peer` off from every other peer, both ways.
    pub async fn isolate(&self, peer: PeerId) -> Result<()> {
        self.peer(peer)?;
        for other in self.peers().filter(|p| *p != peer).collect::<Vec<_>>() {
            self.partition(peer, other).await?;
        }
        Ok(())
    }

    /// Heals every cut of `peer`, both ways.
    pub async fn rejoin(&self, peer: PeerId) -> Result<()> {
        self.peer(peer)?;
        for other in self.peers().filter(|p| *p != peer).collect::<Vec<_>>() {
            self.heal(peer, other).await?;
        }
        Ok(())
    }

    /// The kernel's counters for an impaired or cut link (`None` for a plain wire).
    pub async fn link_stats(&self, link: Link) -> Result<Option<LinkStats>> {
        self.check_link(link)?;
        let (handle, ifindex) = {
            let trees = self.trees.lock().await;
            let Some(tree) = trees.peers.get(&link.source) else {
                return Ok(None);
            };
            if tree.cut.contains(&link.destination) {
                (BLACKHOLE_QDISC, PEER_IFINDEX)
            } else {
                match tree.links.get(&link.destination) {
                    None => return Ok(None),
                    Some(d) => (leaf_of(d), d.ifb.unwrap_or(PEER_IFINDEX)),
                }
            }
        };
        let rtnl = &self.peer(link.source)?.rtnl;
        let mut dump = TcMessage::with_index(ifindex as i32);
        dump.header.index = ifindex as i32;
        let replies = rtnl
            .request(RouteNetlinkMessage::GetQueueDiscipline(dump), DUMP, || {
                format!("read the counters of link {link}")
            })
            .await?;
        Ok(replies.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewQueueDiscipline(q)
                if q.header.handle == handle && q.header.index == ifindex as i32 =>
            {
                q.attributes.iter().find_map(|a| match a {
                    TcAttribute::Stats(s) => Some(LinkStats {
                        packets: s.packets,
                        bytes: s.bytes,
                        drops: s.drops,
                        overlimits: s.overlimits,
                        qlen: s.qlen,
                        backlog: s.backlog,
                    }),
                    _ => None,
                })
            }
            _ => None,
        }))
    }

    fn check_link(&self, link: Link) -> Result<()> {
        self.peer(link.source)?;
        self.peer(link.destination)?;
        if link.source == link.destination {
            return Err(Error::SelfLink(link));
        }
        DestSlot::from_peer(link.destination)?;
        Ok(())
    }

    async fn check_supported(&self, impairment: &LinkImpairment) -> Result<()> {
        if impairment.needs_netem() && !self.netem_supported().await {
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

    /// Whether sch_netem exists: a netem is created (and deleted) on the hub's `lo`.
    pub async fn netem_supported(&self) -> bool {
        if let Some(known) = NETEM.get() {
            return *known;
        }
        let probe =
            crate::tc::netem::qdisc(1, ROOT, TcHandle::ROOT, &LinkImpairment::default(), 1000);
        let created = self
            .hub_rtnl()
            .request(
                RouteNetlinkMessage::NewQueueDiscipline(probe),
                plan::CREATE | CHANGE,
                || "probe for sch_netem".into(),
            )
            .await;
        let supported = match created {
            Ok(_) => {
                let del = crate::tc::bare_message(1, ROOT, TcHandle::ROOT);
                let _ = self
                    .hub_rtnl()
                    .request(RouteNetlinkMessage::DelQueueDiscipline(del), CHANGE, || {
                        "remove the sch_netem probe".into()
                    })
                    .await;
                true
            }
            Err(e) => {
                tracing::debug!("sch_netem probe: {e}");
                false
            }
        };
        *NETEM.get_or_init(|| supported)
    }

    async fn set_link(
        &self,
        tree: &mut PeerTree,
        link: Link,
        impairment: LinkImpairment,
    ) -> Result<()> {
        let peer = self.peer(link.source)?;
        let addr = self.addr(link.destination)?;
        let slot = DestSlot::from_peer(link.destination)?;
        let old = tree
            .links
            .get(&link.destination)
            .cloned()
            .unwrap_or(Destination {
                slot,
                addr,
                impairment: LinkImpairment::default(),
                ifb: None,
            });
        if old.impairment == impairment {
            return Ok(());
        }
        let psched = psched();
        self.ensure_tree(&peer.rtnl, tree, link.source, &psched)
            .await?;
        let ifb = if impairment.duplicate > 0.0 {
            Some(self.ensure_ifb(&peer.rtnl, tree, link).await?)
        } else {
            None
        };
        let new = Destination {
            slot,
            addr,
            impairment,
            ifb,
        };
        let cut = tree.cut.contains(&link.destination);
        let mut ops = plan::plan_change(PEER_IFINDEX as i32, &old, &new, &psched)?;
        if cut {
            // The filter of a cut link points at the blackhole; keep it there.
            ops.retain(|op| !matches!(op, TcOp::NewFilter { .. } | TcOp::DelFilter { .. }));
        }
        if let Err(e) = run(&peer.rtnl, &ops, link).await {
            // Put the destination back as it was: its subtree alone is rebuilt, other
            // links are not touched.
            self.restore(&peer.rtnl, &old, &new, cut, &psched, link)
                .await;
            return Err(e);
        }
        if new.impairment.is_none() {
            tree.links.remove(&link.destination);
        } else {
            tree.links.insert(link.destination, new);
        }
        Ok(())
    }

    async fn restore(
        &self,
        rtnl: &Rtnl,
        old: &Destination,
        attempted: &Destination,
        cut: bool,
        psched: &Psched,
        link: Link,
    ) {
        // Remove whatever part of the attempt exists (errors: that part was not made).
        let none = Destination {
            impairment: LinkImpairment::default(),
            ..attempted.clone()
        };
        for current in [attempted, old] {
            if let Ok(ops) = plan::plan_change(PEER_IFINDEX as i32, current, &none, psched) {
                for op in ops {
                    let _ = run(rtnl, std::slice::from_ref(&op), link).await;
                }
            }
        }
        let empty = Destination {
            impairment: LinkImpairment::default(),
            ..old.clone()
        };
        if let Ok(mut ops) = plan::plan_change(PEER_IFINDEX as i32, &empty, old, psched) {
            if cut {
                ops.retain(|op| !matches!(op, TcOp::NewFilter { .. }));
            }
            if let Err(e) = run(rtnl, &ops, link).await {
                tracing::warn!("could not restore link {link} after a refused change: {e}");
            }
        }
    }

    async fn ensure_tree(
        &self,
        rtnl: &Rtnl,
        tree: &mut PeerTree,
        peer: PeerId,
        psched: &Psched,
    ) -> Result<()> {
        if tree.built {
            return Ok(());
        }
        let ifindex = PEER_IFINDEX as i32;
        let mut ops = plan::plan_tree(ifindex, &[], psched)?;
        ops.push(TcOp::NewClass {
            message: htb::class(
                ifindex,
                BLACKHOLE_CLASS,
                ROOT,
                &HtbClass::unlimited(),
                psched,
            ),
            flags: plan::CREATE,
        });
        ops.push(TcOp::NewQdisc {
            message: crate::tc::qdisc_message(
                ifindex,
                BLACKHOLE_QDISC,
                BLACKHOLE_CLASS,
                "pfifo",
                0u32.to_ne_bytes().to_vec(),
            ),
            flags: plan::CREATE,
        });
        if let Err(e) = run(rtnl, &ops, Link::new(peer, peer)).await {
            // Leave no half tree: the root's deletion takes everything under it.
            let del = crate::tc::bare_message(ifindex, ROOT, TcHandle::ROOT);
            let _ = rtnl
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
        tree.built = true;
        Ok(())
    }

    async fn ensure_ifb(&self, rtnl: &Rtnl, tree: &mut PeerTree, link: Link) -> Result<u32> {
        if let Some(index) = tree.ifbs.get(&link.destination) {
            return Ok(*index);
        }
        let slot = DestSlot::from_peer(link.destination)?;
        let index = IFB_BASE + u32::from(slot.get());
        let ifb = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
            .name(format!("ifb{}", link.destination))
            .index(index)
            .up()
            .build();
        rtnl.handle()
            .link()
            .add(ifb)
            .execute()
            .await
            .map_err(|e| map_rtnetlink(|| format!("create the IFB device of link {link}"), e))?;
        tree.ifbs.insert(link.destination, index);
        Ok(index)
    }

    async fn cut(&self, trees: &mut Trees, link: Link, cut: bool) -> Result<()> {
        let peer = self.peer(link.source)?;
        let addr = self.addr(link.destination)?;
        let tree = trees.peers.entry(link.source).or_default();
        if tree.cut.contains(&link.destination) == cut {
            return Ok(());
        }
        self.ensure_tree(&peer.rtnl, tree, link.source, &psched())
            .await?;
        let ifindex = PEER_IFINDEX as i32;
        let op = match (cut, tree.links.get(&link.destination)) {
            (true, _) => TcOp::NewFilter {
                message: filter::dst_filter(
                    ifindex,
                    ROOT,
                    addr,
                    FilterTarget::Class(BLACKHOLE_CLASS),
                ),
                flags: UPSERT,
            },
            (false, Some(d)) => TcOp::NewFilter {
                message: filter::dst_filter(ifindex, ROOT, addr, target_of(d)),
                flags: UPSERT,
            },
            (false, None) => TcOp::DelFilter {
                message: filter::delete_dst_filter(ifindex, ROOT, addr),
            },
        };
        run(&peer.rtnl, &[op], link).await?;
        if cut {
            tree.cut.insert(link.destination);
        } else {
            tree.cut.remove(&link.destination);
        }
        Ok(())
    }
}

fn target_of(d: &Destination) -> FilterTarget {
    match d.ifb {
        Some(ifindex) => FilterTarget::Redirect { ifindex },
        None => FilterTarget::Class(d.slot.class()),
    }
}

/// The qdisc whose counters describe a destination: its netem, or its TBF.
fn leaf_of(d: &Destination) -> TcHandle {
    if d.impairment.needs_netem() {
        d.slot.netem()
    } else {
        d.slot.tbf()
    }
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

/// Whether this kernel has sch_netem, probed in a throwaway namespace (once per
/// process). For callers outside any runtime, such as a test harness deciding which
/// tests can run before it starts them; needs the privileges of [`Network::new`].
pub fn netem_available() -> Result<bool> {
    if let Some(known) = NETEM.get() {
        return Ok(*known);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start a runtime for the sch_netem probe", e))?;
    runtime.block_on(async {
        let subnet = crate::ip::Subnet::new(std::net::Ipv4Addr::new(10, 0, 0, 0).into(), 24);
        let network = Network::new(subnet).await?;
        Ok(network.netem_supported().await)
    })
}
