//! Plans: the netlink requests that build a peer's tree, or change one link of it.
//!
//! A plan is data, a list of [`TcOp`] to send in order, each with its message and the
//! netlink flags to add to `NLM_F_REQUEST | NLM_F_ACK`. Nothing here talks to the
//! kernel. The tree is the one documented in [`crate::tc::handles`], all of it: the
//! spine with the partitions' blackhole ([`plan_tree`]), one link's change
//! ([`plan_link`]), its cut or heal ([`plan_cut`]), the way back after a refusal
//! ([`plan_restore`]), which device a destination lives on ([`Destination::new`]) and
//! which qdisc counts its packets ([`counters`]). The caller (the kernel backend) keeps
//! the state, creates IFB devices and sends the requests.
//!
//! Flags, and what the kernel (`tc_modify_qdisc`) does with them:
//! - [`CREATE`] (`NLM_F_CREATE | NLM_F_EXCL`, `tc ... add`): create, refuse with EEXIST
//!   if the handle exists.
//! - [`REPLACE`] (`NLM_F_REPLACE`, no CREATE): used to change a running qdisc's options
//!   in place. When the qdisc under the given parent already has the given handle the
//!   kernel calls the qdisc's `change` whatever the flags (REPLACE would only matter to
//!   graft a *different* handle there); without `NLM_F_CREATE` a missing qdisc is an
//!   ENOENT instead of a silent re-creation, so drift is reported. Packets queued in
//!   netem stay queued, and the kind must match (else EINVAL).
//! - Deletions carry no flags.

use std::collections::HashMap;
use std::net::IpAddr;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::tc::{TcHandle, TcMessage};

use crate::error::{Error, Result};
use crate::impairment::LinkImpairment;
use crate::tc::filter::{self, Family, FilterTarget};
use crate::tc::handles::{
    DestSlot, BLACKHOLE_CLASS, BLACKHOLE_QDISC, DEFAULT_CLASS, DEFAULT_MINOR, DEVICE_ROOT, ROOT,
};
use crate::tc::htb::{self, HtbClass};
use crate::tc::netem;
use crate::tc::psched::Psched;
use crate::tc::tbf::{self, Tbf};

/// Flags that create, refusing to overwrite (`tc ... add`).
pub const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// Flags that change an existing qdisc in place (see the module docs).
pub const REPLACE: u16 = NLM_F_REPLACE;
/// Flags that create a filter or replace the one with the same handle (no
/// `NLM_F_EXCL`): a cut and a heal re-point an existing filter, or make one.
pub const UPSERT: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// One request of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcOp {
    /// `RTM_NEWQDISC`.
    NewQdisc {
        /// The qdisc.
        message: TcMessage,
        /// [`CREATE`] or [`REPLACE`].
        flags: u16,
    },
    /// `RTM_DELQDISC` (and everything under the qdisc).
    DelQdisc {
        /// Device, handle and parent of the qdisc.
        message: TcMessage,
    },
    /// `RTM_NEWTCLASS`.
    NewClass {
        /// The class.
        message: TcMessage,
        /// [`CREATE`].
        flags: u16,
    },
    /// `RTM_DELTCLASS` (and its leaf qdiscs; its filters must be gone).
    DelClass {
        /// Device, class id and parent.
        message: TcMessage,
    },
    /// `RTM_NEWTFILTER`.
    NewFilter {
        /// The filter.
        message: TcMessage,
        /// [`CREATE`].
        flags: u16,
    },
    /// `RTM_DELTFILTER`.
    DelFilter {
        /// Device, parent, priority/protocol, kind and handle of the filter.
        message: TcMessage,
    },
}

impl TcOp {
    /// The message to send.
    pub fn message(&self) -> &TcMessage {
        match self {
            TcOp::NewQdisc { message, .. }
            | TcOp::DelQdisc { message }
            | TcOp::NewClass { message, .. }
            | TcOp::DelClass { message }
            | TcOp::NewFilter { message, .. }
            | TcOp::DelFilter { message } => message,
        }
    }

    /// The flags to add to `NLM_F_REQUEST | NLM_F_ACK`.
    pub fn flags(&self) -> u16 {
        match self {
            TcOp::NewQdisc { flags, .. }
            | TcOp::NewClass { flags, .. }
            | TcOp::NewFilter { flags, .. } => *flags,
            _ => 0,
        }
    }

    /// A short description for error messages, such as `add qdisc 5:0 parent 1:5 on
    /// ifindex 3`.
    pub fn describe(&self) -> String {
        let h = &self.message().header;
        let verb = match self {
            TcOp::NewQdisc { flags, .. } if *flags & NLM_F_CREATE == 0 => "change qdisc",
            TcOp::NewQdisc { .. } => "add qdisc",
            TcOp::DelQdisc { .. } => "delete qdisc",
            TcOp::NewClass { .. } => "add class",
            TcOp::DelClass { .. } => "delete class",
            TcOp::NewFilter { .. } => "add filter",
            TcOp::DelFilter { .. } => "delete filter",
        };
        format!(
            "{verb} {} parent {} on ifindex {}",
            h.handle, h.parent, h.index
        )
    }
}

/// One destination of a source peer, as the plan needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Its place in the tree (handles).
    pub slot: DestSlot,
    /// Its address (what the filter matches).
    pub addr: IpAddr,
    /// What the link to it does.
    pub impairment: LinkImpairment,
    /// The ifindex of an IFB device reserved for this destination, when its netem must
    /// not share the source's device: a duplicating netem, which kernels with the
    /// CVE-2025-38553 check refuse beside other netems (see [`crate::tc::handles`]).
    /// [`Destination::new`] decides; the caller creates the device before sending a plan
    /// that uses it. `None` keeps everything on the source's device.
    pub ifb: Option<u32>,
}

impl Destination {
    /// A destination as linkem lays it out: on an IFB device of its own
    /// ([`DestSlot::ifb`]) when it duplicates, else on the source's device.
    pub fn new(slot: DestSlot, addr: IpAddr, impairment: LinkImpairment) -> Destination {
        let ifb = (impairment.duplicate > 0.0).then(|| slot.ifb());
        Destination {
            slot,
            addr,
            impairment,
            ifb,
        }
    }

    /// Where the destination's filter sends its packets when the link is not cut.
    fn target(&self) -> FilterTarget {
        match self.ifb {
            Some(ifindex) => FilterTarget::Redirect { ifindex },
            None => FilterTarget::Class(self.slot.class()),
        }
    }
}

fn ifb_index(ifb: u32) -> Result<i32> {
    i32::try_from(ifb).map_err(|_| Error::TcPlan {
        what: format!("IFB ifindex {ifb}"),
        reason: "not a valid ifindex".into(),
    })
}

/// The requests that give one destination its subtree and filter (nothing when it is
/// unimpaired: its packets fall to the default class).
fn add_destination(ifindex: i32, d: &Destination, psched: &Psched) -> Result<Vec<TcOp>> {
    let imp = &d.impairment;
    if imp.is_none() {
        return Ok(vec![]);
    }
    let limit = netem::effective_limit(imp);
    let slot = d.slot;
    let mut ops = Vec::new();
    let (dev, netem_parent, target) = match d.ifb {
        None => {
            ops.push(TcOp::NewClass {
                message: htb::class(ifindex, slot.class(), ROOT, &HtbClass::unlimited(), psched),
                flags: CREATE,
            });
            (ifindex, slot.class(), FilterTarget::Class(slot.class()))
        }
        Some(ifb) => (
            ifb_index(ifb)?,
            DEVICE_ROOT,
            FilterTarget::Redirect { ifindex: ifb },
        ),
    };
    // A shaper-only link has no netem: the TBF is the class's leaf. Kernels without
    // sch_netem (this project's CI host) can still shape.
    let tbf_parent = if imp.needs_netem() {
        ops.push(TcOp::NewQdisc {
            message: netem::qdisc(dev, slot.netem(), netem_parent, imp, limit),
            flags: CREATE,
        });
        slot.netem_child()
    } else {
        netem_parent
    };
    if let Some(shaper) = Tbf::from_impairment(imp) {
        ops.push(TcOp::NewQdisc {
            message: tbf::qdisc(dev, slot.tbf(), tbf_parent, &shaper, psched),
            flags: CREATE,
        });
    }
    // Last, so packets are classified only once their subtree exists.
    ops.push(TcOp::NewFilter {
        message: filter::dst_filter(ifindex, ROOT, d.addr, target),
        flags: CREATE,
    });
    Ok(ops)
}

/// The requests that take one destination's subtree and filter away.
fn remove_destination(ifindex: i32, d: &Destination) -> Result<Vec<TcOp>> {
    if d.impairment.is_none() {
        return Ok(vec![]);
    }
    // The filter first: a class with filters bound to it cannot be deleted.
    let mut ops = vec![TcOp::DelFilter {
        message: filter::delete_dst_filter(ifindex, ROOT, d.addr),
    }];
    ops.push(match d.ifb {
        // Deleting the class deletes its netem and TBF.
        None => TcOp::DelClass {
            message: crate::tc::bare_message(ifindex, d.slot.class(), ROOT),
        },
        Some(ifb) => TcOp::DelQdisc {
            message: crate::tc::bare_message(ifb_index(ifb)?, d.slot.netem(), DEVICE_ROOT),
        },
    });
    Ok(ops)
}

/// Checks that destinations can share one tree: valid impairments, distinct slots,
/// addresses and filter handles.
fn check(destinations: &[Destination]) -> Result<()> {
    let mut slots = HashMap::new();
    let mut handles: HashMap<filter::U32Handle, IpAddr> = HashMap::new();
    for d in destinations {
        d.impairment.validate()?;
        if let Some(other) = slots.insert(d.slot, d.addr) {
            return Err(Error::TcPlan {
                what: format!("destinations {other} and {}", d.addr),
                reason: format!("both use slot {}", d.slot.get()),
            });
        }
        if let Some(other) = handles.insert(filter::dst_handle(d.addr), d.addr) {
            let reason = if other == d.addr {
                "the same address twice".to_string()
            } else {
                format!(
                    "their u32 filters would share handle {} (addresses that agree in \
                     their low 19 bits must lie in one /13 for IPv4, /109 for IPv6)",
                    filter::dst_handle(d.addr)
                )
            };
            return Err(Error::TcPlan {
                what: format!("destinations {other} and {}", d.addr),
                reason,
            });
        }
    }
    Ok(())
}

/// The requests that build a source peer's whole tree on its device `ifindex` (which
/// must have no qdisc of linkem's yet), for the given destinations.
///
/// Both families' hash tables are always created, so a later [`plan_change`] can add a
/// destination of either family. Unimpaired destinations need nothing.
pub fn plan_tree(ifindex: i32, destinations: &[Destination], psched: &Psched) -> Result<Vec<TcOp>> {
    check(destinations)?;
    let mut ops = vec![
        TcOp::NewQdisc {
            message: htb::qdisc(ifindex, ROOT, DEVICE_ROOT, DEFAULT_MINOR),
            flags: CREATE,
        },
        TcOp::NewClass {
            message: htb::class(ifindex, DEFAULT_CLASS, ROOT, &HtbClass::unlimited(), psched),
            flags: CREATE,
        },
    ];
    for family in Family::ALL {
        ops.push(TcOp::NewFilter {
            message: filter::hash_table(ifindex, ROOT, family),
            flags: CREATE,
        });
        ops.push(TcOp::NewFilter {
            message: filter::hash_link(ifindex, ROOT, family),
            flags: CREATE,
        });
    }
    // The kernel's unicast neighbour discovery passes unimpaired, like ARP (see
    // crate::tc::filter).
    for nd in filter::ND_TYPES {
        ops.push(TcOp::NewFilter {
            message: filter::nd_filter(ifindex, ROOT, nd, DEFAULT_CLASS),
            flags: CREATE,
        });
    }
    // The blackhole of partitions, built with the spine so that a cut is a single
    // filter request and works without sch_netem.
    ops.push(TcOp::NewClass {
        message: htb::class(
            ifindex,
            BLACKHOLE_CLASS,
            ROOT,
            &HtbClass::unlimited(),
            psched,
        ),
        flags: CREATE,
    });
    ops.push(TcOp::NewQdisc {
        message: crate::tc::qdisc_message(
            ifindex,
            BLACKHOLE_QDISC,
            BLACKHOLE_CLASS,
            "pfifo",
            // struct tc_fifo_qopt { limit }: 0 packets, so every packet is dropped.
            0u32.to_ne_bytes().to_vec(),
        ),
        flags: CREATE,
    });
    for d in destinations {
        ops.extend(add_destination(ifindex, d, psched)?);
    }
    Ok(ops)
}

/// The requests that remove a source peer's tree: its root qdisc (with every class,
/// qdisc and filter under it) and the root qdisc of each of its IFB devices.
pub fn plan_teardown(ifindex: i32, destinations: &[Destination]) -> Result<Vec<TcOp>> {
    let mut ops = vec![TcOp::DelQdisc {
        message: crate::tc::bare_message(ifindex, ROOT, DEVICE_ROOT),
    }];
    for d in destinations {
        if let (Some(ifb), false) = (d.ifb, d.impairment.is_none()) {
            ops.push(TcOp::DelQdisc {
                message: crate::tc::bare_message(ifb_index(ifb)?, d.slot.netem(), DEVICE_ROOT),
            });
        }
    }
    Ok(ops)
}

/// The fewest requests that turn one link of a built tree from `old` into `new` (same
/// slot and address):
/// - unimpaired -> impaired: add class, netem, TBF (if shaped), filter;
/// - impaired -> unimpaired: delete filter, then class (or the IFB's root);
/// - moved between the device and an IFB: remove, then add;
/// - otherwise netem's options are changed in place ([`REPLACE`], with the attributes
///   that reset what the kernel would otherwise keep, see [`netem::change_options`]) if
///   they differ, and the TBF is changed in place, added or deleted as the shaper
///   changes, appears or disappears.
pub fn plan_change(
    ifindex: i32,
    old: &Destination,
    new: &Destination,
    psched: &Psched,
) -> Result<Vec<TcOp>> {
    if old.slot != new.slot || old.addr != new.addr {
        return Err(Error::TcPlan {
            what: format!("destination {} (slot {})", new.addr, new.slot.get()),
            reason: format!(
                "a change keeps slot and address (was {} in slot {})",
                old.addr,
                old.slot.get()
            ),
        });
    }
    new.impairment.validate()?;
    let (was, is) = (!old.impairment.is_none(), !new.impairment.is_none());
    let reshaped = old.impairment.needs_netem() != new.impairment.needs_netem();
    if !was || !is || old.ifb != new.ifb || reshaped {
        let mut ops = if was {
            remove_destination(ifindex, old)?
        } else {
            vec![]
        };
        if is {
            ops.extend(add_destination(ifindex, new, psched)?);
        }
        return Ok(ops);
    }

    let slot = new.slot;
    let (dev, netem_parent) = match new.ifb {
        None => (ifindex, slot.class()),
        Some(ifb) => (ifb_index(ifb)?, DEVICE_ROOT),
    };
    let mut ops = Vec::new();
    let (old_limit, new_limit) = (
        netem::effective_limit(&old.impairment),
        netem::effective_limit(&new.impairment),
    );
    let has_netem = new.impairment.needs_netem();
    let tbf_parent = if has_netem {
        slot.netem_child()
    } else {
        netem_parent
    };
    if has_netem
        && netem::options(&old.impairment, old_limit) != netem::options(&new.impairment, new_limit)
    {
        ops.push(TcOp::NewQdisc {
            message: netem::change_qdisc(
                dev,
                slot.netem(),
                netem_parent,
                &new.impairment,
                new_limit,
                &old.impairment,
            ),
            flags: REPLACE,
        });
    }
    match (
        Tbf::from_impairment(&old.impairment),
        Tbf::from_impairment(&new.impairment),
    ) {
        (None, None) => {}
        (Some(a), Some(b)) if a == b => {}
        (before, Some(shaper)) => ops.push(TcOp::NewQdisc {
            message: tbf::qdisc(dev, slot.tbf(), tbf_parent, &shaper, psched),
            flags: if before.is_some() { REPLACE } else { CREATE },
        }),
        (Some(_), None) => ops.push(TcOp::DelQdisc {
            message: crate::tc::bare_message(dev, slot.tbf(), tbf_parent),
        }),
    }
    Ok(ops)
}

/// [`plan_change`] for a link that may be cut: while cut, its filter points at the
/// blackhole and stays there, so the change leaves the filter alone (the heal points it
/// at the new subtree).
pub fn plan_link(
    ifindex: i32,
    old: &Destination,
    new: &Destination,
    cut: bool,
    psched: &Psched,
) -> Result<Vec<TcOp>> {
    let mut ops = plan_change(ifindex, old, new, psched)?;
    if cut {
        ops.retain(|op| !matches!(op, TcOp::NewFilter { .. } | TcOp::DelFilter { .. }));
    }
    Ok(ops)
}

/// The one request that cuts a link (its filter to the blackhole) or heals it (its
/// filter back to the destination's subtree, or gone when the link is unimpaired).
/// `current` is the destination as built (`None` or unimpaired: a plain wire).
pub fn plan_cut(ifindex: i32, addr: IpAddr, cut: bool, current: Option<&Destination>) -> TcOp {
    let current = current.filter(|d| !d.impairment.is_none());
    match (cut, current) {
        (true, _) => TcOp::NewFilter {
            message: filter::dst_filter(ifindex, ROOT, addr, FilterTarget::Class(BLACKHOLE_CLASS)),
            flags: UPSERT,
        },
        (false, Some(d)) => TcOp::NewFilter {
            message: filter::dst_filter(ifindex, ROOT, addr, d.target()),
            flags: UPSERT,
        },
        (false, None) => TcOp::DelFilter {
            message: filter::delete_dst_filter(ifindex, ROOT, addr),
        },
    }
}

/// How to put a link back as `old` after a plan towards `attempted` failed partway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// Removes whatever part of the attempt, or of `old`, exists: each request sent on
    /// its own, a refusal meaning that part was not there.
    pub cleanup: Vec<TcOp>,
    /// Rebuilds `old` from nothing (its filter left alone while the link is cut); the
    /// first refusal stops it.
    pub rebuild: Vec<TcOp>,
}

/// The requests that restore a link to `old` after a refused plan towards `attempted`:
/// only that destination's subtree is rebuilt, other links are not touched.
pub fn plan_restore(
    ifindex: i32,
    old: &Destination,
    attempted: &Destination,
    cut: bool,
    psched: &Psched,
) -> Restore {
    let gone = |d: &Destination| Destination {
        impairment: LinkImpairment::default(),
        ..d.clone()
    };
    let mut cleanup = Vec::new();
    for current in [attempted, old] {
        // remove_destination cannot fail on a destination that planned before.
        if let Ok(ops) = plan_change(ifindex, current, &gone(attempted), psched) {
            cleanup.extend(ops);
        }
    }
    let mut rebuild = plan_change(ifindex, &gone(old), old, psched).unwrap_or_default();
    if cut {
        rebuild.retain(|op| !matches!(op, TcOp::NewFilter { .. }));
    }
    Restore { cleanup, rebuild }
}

/// The qdisc whose counters describe a link, and its device: the blackhole's pfifo
/// while the link is cut, else the destination's netem (or its TBF when it has no
/// netem), on its IFB or the source's device `ifindex`. `None` for a plain wire.
pub fn counters(ifindex: i32, current: Option<&Destination>, cut: bool) -> Option<(TcHandle, i32)> {
    if cut {
        return Some((BLACKHOLE_QDISC, ifindex));
    }
    let d = current.filter(|d| !d.impairment.is_none())?;
    let leaf = if d.impairment.needs_netem() {
        d.slot.netem()
    } else {
        d.slot.tbf()
    };
    let dev = d.ifb.and_then(|i| i32::try_from(i).ok()).unwrap_or(ifindex);
    Some((leaf, dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impairment::Rate;
    use crate::link::PeerId;
    use rtnetlink::packet_route::tc::TcAttribute;
    use std::time::Duration;

    const DEV: i32 = 3;

    fn dest(peer: usize, addr: &str, imp: LinkImpairment) -> Destination {
        Destination {
            slot: DestSlot::from_peer(PeerId(peer)).unwrap(),
            addr: addr.parse().unwrap(),
            impairment: imp,
            ifb: None,
        }
    }

    fn kind(op: &TcOp) -> Option<&str> {
        op.message().attributes.iter().find_map(|a| match a {
            TcAttribute::Kind(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// `(verb, kind, ifindex, handle, parent)` of each op, for readable assertions.
    fn summary(ops: &[TcOp]) -> Vec<String> {
        ops.iter()
            .map(|op| {
                let h = &op.message().header;
                let verb = op.describe();
                let verb = verb.split(' ').take(2).collect::<Vec<_>>().join(" ");
                format!(
                    "{verb} {} {} {} {}",
                    kind(op).unwrap_or("-"),
                    h.index,
                    h.handle,
                    h.parent
                )
            })
            .collect()
    }

    fn delay(ms: u64) -> LinkImpairment {
        LinkImpairment::new().with_latency(Duration::from_millis(ms))
    }

    #[test]
    fn tree_for_one_source() {
        let dests = [
            dest(2, "10.0.0.2", delay(50)),
            dest(3, "10.0.0.3", LinkImpairment::new()),
            dest(4, "fd00::4", delay(10).with_rate(Rate::mbit(10))),
        ];
        let ops = plan_tree(DEV, &dests, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&ops),
            [
                "add qdisc htb 3 1:0 65535:65535",
                "add class htb 3 1:1 1:0",
                "add filter u32 3 64:0 1:0",
                "add filter u32 3 0:1 1:0",
                "add filter u32 3 96:0 1:0",
                "add filter u32 3 0:1 1:0",
                // neighbour solicitations and advertisements pass (prio 2)
                "add filter u32 3 0:1 1:0",
                "add filter u32 3 0:2 1:0",
                // the blackhole
                "add class htb 3 1:65535 1:0",
                "add qdisc pfifo 3 32767:0 1:65535",
                // peer 2: slot 1, x = 3
                "add class htb 3 1:3 1:0",
                "add qdisc netem 3 3:0 1:3",
                "add filter u32 3 64:8193 1:0",
                // peer 3 is unimpaired: nothing
                // peer 4: slot 3, x = 5, shaped
                "add class htb 3 1:5 1:0",
                "add qdisc netem 3 5:0 1:5",
                "add qdisc tbf 3 32773:0 5:1",
                "add filter u32 3 96:16385 1:0",
            ]
        );
        assert!(ops.iter().all(|op| op.flags() == CREATE));
    }

    #[test]
    fn duplicating_destination_lives_on_its_ifb() {
        let mut d = dest(2, "10.0.0.2", delay(30).with_duplicate(100.0));
        d.ifb = Some(7);
        let ops = plan_tree(DEV, std::slice::from_ref(&d), &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&ops[10..]),
            [
                "add qdisc netem 7 3:0 65535:65535",
                "add filter u32 3 64:8193 1:0"
            ]
        );
        let teardown = plan_teardown(DEV, &[d]).unwrap();
        assert_eq!(
            summary(&teardown),
            [
                "delete qdisc - 3 1:0 65535:65535",
                "delete qdisc - 7 3:0 65535:65535"
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_share_a_tree() {
        let a = dest(2, "10.0.0.2", delay(1));
        let same_slot = Destination {
            addr: "10.0.0.9".parse().unwrap(),
            ..a.clone()
        };
        assert!(matches!(
            plan_tree(DEV, &[a.clone(), same_slot], &Psched::MODERN),
            Err(Error::TcPlan { .. })
        ));
        let far = dest(5, "10.8.0.2", delay(1));
        let err = plan_tree(DEV, &[a.clone(), far], &Psched::MODERN).unwrap_err();
        assert!(err.to_string().contains("4:2:1"), "{err}");
        let bad = dest(6, "10.0.0.6", LinkImpairment::new().with_loss(200.0));
        assert!(matches!(
            plan_tree(DEV, &[bad], &Psched::MODERN),
            Err(Error::InvalidImpairment { .. })
        ));
    }

    #[test]
    fn change_edits_netem_in_place() {
        let old = dest(2, "10.0.0.2", delay(50));
        let new = dest(2, "10.0.0.2", delay(80).with_loss(1.0));
        let ops = plan_change(DEV, &old, &new, &Psched::MODERN).unwrap();
        assert_eq!(summary(&ops), ["change qdisc netem 3 3:0 1:3"]);
        assert_eq!(ops[0].flags(), REPLACE);
        assert!(plan_change(DEV, &old, &old, &Psched::MODERN)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn change_adds_and_removes_the_shaper() {
        let plain = dest(2, "10.0.0.2", delay(50).with_limit(5000));
        let shaped = dest(
            2,
            "10.0.0.2",
            delay(50).with_limit(5000).with_rate(Rate::mbit(5)),
        );
        let ops = plan_change(DEV, &plain, &shaped, &Psched::MODERN).unwrap();
        assert_eq!(summary(&ops), ["add qdisc tbf 3 32771:0 3:1"]);
        let faster = dest(
            2,
            "10.0.0.2",
            delay(50).with_limit(5000).with_rate(Rate::mbit(50)),
        );
        let ops = plan_change(DEV, &shaped, &faster, &Psched::MODERN).unwrap();
        assert_eq!(summary(&ops), ["change qdisc tbf 3 32771:0 3:1"]);
        let ops = plan_change(DEV, &shaped, &plain, &Psched::MODERN).unwrap();
        assert_eq!(summary(&ops), ["delete qdisc - 3 32771:0 3:1"]);
    }

    #[test]
    fn auto_limit_follows_the_shaper() {
        // Without an explicit limit, a new rate changes netem's limit too.
        let a = dest(2, "10.0.0.2", delay(1000).with_rate(Rate::mbit(100)));
        let b = dest(2, "10.0.0.2", delay(1000).with_rate(Rate::mbit(200)));
        let ops = plan_change(DEV, &a, &b, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&ops),
            [
                "change qdisc netem 3 3:0 1:3",
                "change qdisc tbf 3 32771:0 3:1"
            ]
        );
    }

    #[test]
    fn impairment_appears_and_disappears() {
        let none = dest(2, "10.0.0.2", LinkImpairment::new());
        let some = dest(2, "10.0.0.2", delay(5));
        let add = plan_change(DEV, &none, &some, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&add),
            [
                "add class htb 3 1:3 1:0",
                "add qdisc netem 3 3:0 1:3",
                "add filter u32 3 64:8193 1:0"
            ]
        );
        let remove = plan_change(DEV, &some, &none, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&remove),
            [
                "delete filter u32 3 64:8193 1:0",
                "delete class - 3 1:3 1:0"
            ]
        );
        let mut moved = some.clone();
        moved.impairment = moved.impairment.with_duplicate(10.0);
        moved.ifb = Some(9);
        let ops = plan_change(DEV, &some, &moved, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&ops),
            [
                "delete filter u32 3 64:8193 1:0",
                "delete class - 3 1:3 1:0",
                "add qdisc netem 9 3:0 65535:65535",
                "add filter u32 3 64:8193 1:0"
            ]
        );
    }

    #[test]
    fn change_keeps_identity() {
        let a = dest(2, "10.0.0.2", delay(5));
        let b = dest(3, "10.0.0.2", delay(5));
        assert!(matches!(
            plan_change(DEV, &a, &b, &Psched::MODERN),
            Err(Error::TcPlan { .. })
        ));
    }

    #[test]
    fn duplication_moves_a_destination_to_its_ifb() {
        let slot = DestSlot::from_peer(PeerId(4)).unwrap();
        let addr: IpAddr = "10.0.0.4".parse().unwrap();
        assert_eq!(Destination::new(slot, addr, delay(5)).ifb, None);
        let d = Destination::new(slot, addr, delay(5).with_duplicate(1.0));
        assert_eq!(d.ifb, Some(0x10003));
        let ops = plan_change(
            DEV,
            &Destination::new(slot, addr, LinkImpairment::new()),
            &d,
            &Psched::MODERN,
        )
        .unwrap();
        assert_eq!(
            summary(&ops),
            [
                "add qdisc netem 65539 5:0 65535:65535",
                "add filter u32 3 64:16385 1:0"
            ]
        );
    }

    fn filter_target(op: &TcOp) -> Option<String> {
        use rtnetlink::packet_route::tc::{TcFilterU32Option, TcOption};
        op.message().attributes.iter().find_map(|a| match a {
            TcAttribute::Options(options) => options.iter().find_map(|o| match o {
                TcOption::U32(TcFilterU32Option::ClassId(class)) => Some(class.to_string()),
                TcOption::U32(TcFilterU32Option::Action(_)) => Some("redirect".into()),
                _ => None,
            }),
            _ => None,
        })
    }

    #[test]
    fn a_cut_points_the_filter_at_the_blackhole_and_a_heal_back() {
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        let shaped = dest(
            2,
            "10.0.0.2",
            LinkImpairment::new().with_rate(Rate::mbit(5)),
        );
        let plain = dest(2, "10.0.0.2", LinkImpairment::new());
        for current in [None, Some(&plain), Some(&shaped)] {
            let cut = plan_cut(DEV, addr, true, current);
            assert_eq!(
                summary(std::slice::from_ref(&cut)),
                ["add filter u32 3 64:8193 1:0"]
            );
            assert_eq!(cut.flags(), UPSERT);
            assert_eq!(filter_target(&cut).as_deref(), Some("1:65535"));
        }
        let heal = plan_cut(DEV, addr, false, Some(&shaped));
        assert_eq!(heal.flags(), UPSERT);
        assert_eq!(filter_target(&heal).as_deref(), Some("1:3"));
        for current in [None, Some(&plain)] {
            let heal = plan_cut(DEV, addr, false, current);
            assert_eq!(
                summary(std::slice::from_ref(&heal)),
                ["delete filter u32 3 64:8193 1:0"]
            );
        }
        let mut duplicating = dest(2, "10.0.0.2", delay(5).with_duplicate(5.0));
        duplicating.ifb = Some(0x10001);
        let heal = plan_cut(DEV, addr, false, Some(&duplicating));
        assert_eq!(filter_target(&heal).as_deref(), Some("redirect"));
    }

    #[test]
    fn a_change_while_cut_leaves_the_filter_at_the_blackhole() {
        let none = dest(2, "10.0.0.2", LinkImpairment::new());
        let some = dest(2, "10.0.0.2", delay(5));
        let add = plan_link(DEV, &none, &some, true, &Psched::MODERN).unwrap();
        assert_eq!(
            summary(&add),
            ["add class htb 3 1:3 1:0", "add qdisc netem 3 3:0 1:3"]
        );
        let remove = plan_link(DEV, &some, &none, true, &Psched::MODERN).unwrap();
        assert_eq!(summary(&remove), ["delete class - 3 1:3 1:0"]);
        assert_eq!(
            plan_link(DEV, &none, &some, false, &Psched::MODERN).unwrap(),
            plan_change(DEV, &none, &some, &Psched::MODERN).unwrap()
        );
    }

    #[test]
    fn restore_removes_the_attempt_and_rebuilds_the_old_subtree() {
        let old = dest(2, "10.0.0.2", delay(5));
        let mut attempted = dest(2, "10.0.0.2", delay(5).with_duplicate(5.0));
        attempted.ifb = Some(0x10001);
        let restore = plan_restore(DEV, &old, &attempted, false, &Psched::MODERN);
        assert_eq!(
            summary(&restore.cleanup),
            [
                "delete filter u32 3 64:8193 1:0",
                "delete qdisc - 65537 3:0 65535:65535",
                "delete filter u32 3 64:8193 1:0",
                "delete class - 3 1:3 1:0",
            ]
        );
        assert_eq!(
            summary(&restore.rebuild),
            [
                "add class htb 3 1:3 1:0",
                "add qdisc netem 3 3:0 1:3",
                "add filter u32 3 64:8193 1:0"
            ]
        );
        let cut = plan_restore(DEV, &old, &attempted, true, &Psched::MODERN);
        assert_eq!(
            summary(&cut.rebuild),
            ["add class htb 3 1:3 1:0", "add qdisc netem 3 3:0 1:3"]
        );
        let unimpaired = dest(2, "10.0.0.2", LinkImpairment::new());
        let nothing = plan_restore(DEV, &unimpaired, &old, false, &Psched::MODERN);
        assert!(nothing.rebuild.is_empty());
    }

    #[test]
    fn counters_come_from_the_leaf_or_the_blackhole() {
        let netem = dest(2, "10.0.0.2", delay(5).with_rate(Rate::mbit(5)));
        let shaped = dest(
            2,
            "10.0.0.2",
            LinkImpairment::new().with_rate(Rate::mbit(5)),
        );
        let mut duplicating = dest(2, "10.0.0.2", delay(5).with_duplicate(5.0));
        duplicating.ifb = Some(0x10001);
        let show = |c: Option<(TcHandle, i32)>| c.map(|(h, dev)| format!("{h} on {dev}"));
        assert_eq!(
            show(counters(DEV, Some(&netem), false)).as_deref(),
            Some("3:0 on 3")
        );
        assert_eq!(
            show(counters(DEV, Some(&shaped), false)).as_deref(),
            Some("32771:0 on 3")
        );
        assert_eq!(
            show(counters(DEV, Some(&duplicating), false)).as_deref(),
            Some("3:0 on 65537")
        );
        assert_eq!(
            show(counters(DEV, Some(&netem), true)).as_deref(),
            Some("32767:0 on 3")
        );
        assert_eq!(
            show(counters(DEV, None, true)).as_deref(),
            Some("32767:0 on 3")
        );
        assert_eq!(counters(DEV, None, false), None);
        let plain = dest(2, "10.0.0.2", LinkImpairment::new());
        assert_eq!(counters(DEV, Some(&plain), false), None);
    }
}
