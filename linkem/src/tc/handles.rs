//! The handles of one peer's traffic-control tree.
//!
//! Every peer's egress device carries the same shape of tree; destination `d` (a
//! [`DestSlot`], normally derived from the destination's peer id) has `x(d) = slot + 2`:
//!
//! ```text
//! root 1: htb default 1
//! ├── class 1:1        unlimited   unimpaired traffic (no filter matches it)
//! ├── class 1:<x(d)>   unlimited   one per impaired destination d
//! │   └── netem <x(d)>:              when d needs netem (anything but a shaper)
//! │       └── tbf <8000|x(d)>:       when d has a bandwidth limit, at <x(d)>:1
//! │   (or, for a shaper-only d, tbf <8000|x(d)>: directly under 1:<x(d)>)
//! ├── class 1:ffff     unlimited   the blackhole of partitions
//! │   └── pfifo 7fff: limit 0        drops every packet
//! └── filters on 1: (u32, see crate::tc::filter)
//!     prio 1 ip:   ht 4: divisor 256, link ::1 hashing the last byte of the dst
//!                  4:<b>:<n> match ip dst addr(d)/32 flowid 1:<x(d)>
//!     prio 2 ipv6: ::1, ::2 match ICMPv6 type 135, 136 (neighbour discovery) flowid 1:1
//!     prio 3 ipv6: ht 6: divisor 256, same as ip with match ip6 dst addr(d)/128
//! ```
//!
//! For example the destination in slot 3 (peer 4) has class `1:5`, netem `5:` and tbf
//! `8005:`, on every source's device (tc prints handles in hexadecimal).
//!
//! A destination whose netem duplicates packets cannot share a device with other
//! netems on kernels with the CVE-2025-38553 check (`check_netem_in_tree()` refuses a
//! duplicating netem beside other netems on one device; kernels with the check reverted
//! accept either layout, so linkem uses the IFB everywhere and behaves the same on
//! both). It gets an IFB device of its own, ifindex [`DestSlot::ifb`] in the source's
//! namespace: its filter redirects to the IFB (`action mirred egress redirect`), and
//! the IFB's root is netem `<x(d)>:` (with tbf `<8000|x(d)>:` under it); no class on
//! the main device.
//!
//! A cut link's filter points at the blackhole class `1:ffff` instead of its own class
//! (or IFB): one request per direction to cut or heal, the destination's subtree stays
//! as it is, and nothing needs sch_netem.
//!
//! Why these numbers:
//! - Qdisc handles are `major:0` with a 16-bit major that must be unique per device;
//!   `1:` is the root and `ffff:` belongs to ingress/clsact, `0` means "unspecified". A
//!   destination needs up to two qdiscs, so slot majors and TBF majors are kept in
//!   disjoint halves: `x(d)` in `2..=0x7ffe` and `0x8000 | x(d)` in `0x8002..=0xfffe`.
//!   They can never equal each other, the root or ingress, whatever the slots.
//! - That caps a source at [`MAX_DESTINATIONS`] = 32765 impaired destinations: two
//!   qdiscs each cannot fit 65534 destinations in 16 bits at all. Class minors alone
//!   (`1:2..1:ffff`) would allow 65534.
//! - TBF is netem's child, not its parent: TBF's queue limit (the impairment's queue
//!   latency) lives in TBF's own bfifo child and is silently ignored once another qdisc
//!   is grafted under TBF (`fifo_set_limit` does nothing on a non-fifo).
//! - A shaper-only destination has no netem (so kernels without sch_netem can still
//!   shape); a change between shaper-only and anything else rebuilds the destination's
//!   subtree, any other change edits netem in place or adds/removes the TBF.
//! - The blackhole's class minor `ffff` lies above every `x(d)` (at most `7ffe`), and its
//!   pfifo's major `7fff:` between the destination majors (`2..=7ffe`) and the TBF
//!   majors (`8002..=fffe`).
//! - IFB ifindexes start at [`IFB_BASE`], far above the source namespace's `lo` (1) and
//!   `eth0` (2), and leave room for every slot.

use rtnetlink::packet_route::tc::TcHandle;

use crate::error::Error;
use crate::link::PeerId;

/// The root HTB qdisc, `1:`.
pub const ROOT: TcHandle = TcHandle { major: 1, minor: 0 };
/// The class of unimpaired traffic, `1:1` (the HTB default).
pub const DEFAULT_CLASS: TcHandle = TcHandle { major: 1, minor: 1 };
/// The default class's minor, as `tc_htb_glob.defcls` wants it.
pub const DEFAULT_MINOR: u16 = 1;
/// "The device's root" as a parent.
pub const DEVICE_ROOT: TcHandle = TcHandle::ROOT;

/// The blackhole class of partitions, `1:ffff`.
pub const BLACKHOLE_CLASS: TcHandle = TcHandle {
    major: ROOT.major,
    minor: 0xffff,
};
/// The blackhole's leaf, a pfifo of limit 0, `7fff:`.
pub const BLACKHOLE_QDISC: TcHandle = TcHandle {
    major: 0x7fff,
    minor: 0,
};
/// The IFB device of the destination in slot `s` gets ifindex `IFB_BASE + s`.
pub const IFB_BASE: u32 = 0x10000;

/// The bit that turns a destination's major into its TBF's major.
const TBF_BIT: u16 = 0x8000;
/// `x(d)` starts here: 1 is the root HTB.
const FIRST_MAJOR: u16 = 2;
/// The largest `x(d)`: `0x8000 | 0x7fff` would be `ffff:`, reserved for ingress.
const LAST_MAJOR: u16 = 0x7ffe;

/// How many destinations one source can impair at once.
pub const MAX_DESTINATIONS: usize = (LAST_MAJOR - FIRST_MAJOR + 1) as usize;

/// A destination's position in a source's tree, `0..MAX_DESTINATIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestSlot(u16);

impl DestSlot {
    /// The largest slot.
    pub const MAX: DestSlot = DestSlot(LAST_MAJOR - FIRST_MAJOR);

    /// A slot, if in range.
    pub const fn new(slot: u16) -> Option<DestSlot> {
        if slot <= Self::MAX.0 {
            Some(DestSlot(slot))
        } else {
            None
        }
    }

    /// The slot of a peer (peer ids start at 1): `id - 1`. Using the peer id gives a
    /// destination the same handles on every source, which helps reading `tc` output.
    pub fn from_peer(peer: PeerId) -> Result<DestSlot, Error> {
        peer.0
            .checked_sub(1)
            .and_then(|s| u16::try_from(s).ok())
            .and_then(DestSlot::new)
            .ok_or_else(|| Error::TcPlan {
                what: format!("destination peer {peer}"),
                reason: format!(
                    "peer ids above {MAX_DESTINATIONS} have no traffic-control handles \
                     (16-bit qdisc majors, two per destination)"
                ),
            })
    }

    /// The slot number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// `x(d)`: the class minor and netem major.
    const fn x(self) -> u16 {
        self.0 + FIRST_MAJOR
    }

    /// The destination's HTB class, `1:<x>`.
    pub const fn class(self) -> TcHandle {
        TcHandle {
            major: ROOT.major,
            minor: self.x(),
        }
    }

    /// The destination's netem, `<x>:`.
    pub const fn netem(self) -> TcHandle {
        TcHandle {
            major: self.x(),
            minor: 0,
        }
    }

    /// Where the TBF hangs: netem's only class, `<x>:1`.
    pub const fn netem_child(self) -> TcHandle {
        TcHandle {
            major: self.x(),
            minor: 1,
        }
    }

    /// The ifindex of the destination's IFB device (only duplicating destinations have
    /// one), in the source's namespace.
    pub const fn ifb(self) -> u32 {
        IFB_BASE + self.0 as u32
    }

    /// The destination's TBF, `<8000|x>:`.
    pub const fn tbf(self) -> TcHandle {
        TcHandle {
            major: TBF_BIT | self.x(),
            minor: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn example_from_the_docs() {
        let d = DestSlot::from_peer(PeerId(4)).unwrap();
        assert_eq!(d.get(), 3);
        assert_eq!(d.class().to_string(), "1:5");
        assert_eq!(d.netem().to_string(), "5:0");
        assert_eq!(d.netem_child().to_string(), "5:1");
        assert_eq!(d.tbf().major, 0x8005);
    }

    #[test]
    fn no_handle_collides_for_any_slot() {
        let mut majors = HashSet::from([ROOT.major, 0xffff, 0]);
        let mut classes = HashSet::from([DEFAULT_CLASS.minor, 0]);
        for s in 0..=DestSlot::MAX.get() {
            let d = DestSlot::new(s).unwrap();
            assert!(majors.insert(d.netem().major), "netem {s}");
            assert!(majors.insert(d.tbf().major), "tbf {s}");
            assert!(classes.insert(d.class().minor), "class {s}");
        }
        assert_eq!(majors.len(), 3 + 2 * MAX_DESTINATIONS);
        assert_eq!(MAX_DESTINATIONS, 32765);
        assert!(
            majors.insert(BLACKHOLE_QDISC.major),
            "the blackhole's pfifo"
        );
        assert!(classes.insert(BLACKHOLE_CLASS.minor), "the blackhole class");
        assert_eq!(BLACKHOLE_CLASS.major, ROOT.major);
    }

    #[test]
    fn ifb_indexes_are_distinct_and_clear_of_the_device() {
        let mut indexes = HashSet::from([1, 2]); // lo, eth0
        for s in 0..=DestSlot::MAX.get() {
            let ifb = DestSlot::new(s).unwrap().ifb();
            assert!(indexes.insert(ifb), "slot {s}");
            assert!(i32::try_from(ifb).is_ok(), "slot {s}: ifindex {ifb}");
        }
        assert_eq!(DestSlot::from_peer(PeerId(4)).unwrap().ifb(), 0x10003);
    }

    #[test]
    fn out_of_range() {
        assert_eq!(DestSlot::new(DestSlot::MAX.get() + 1), None);
        assert!(DestSlot::from_peer(PeerId(0)).is_err());
        assert!(DestSlot::from_peer(PeerId(MAX_DESTINATIONS)).is_ok());
        let err = DestSlot::from_peer(PeerId(MAX_DESTINATIONS + 1)).unwrap_err();
        assert!(err.to_string().contains("peer 32766"), "{err}");
    }
}
