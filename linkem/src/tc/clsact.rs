//! The capture tap of the kernel backend: a `clsact` qdisc on a peer's `eth0` and one
//! u32 filter on its egress hook that mirrors every frame to another device.
//!
//! The egress hook (`sch_handle_egress`, called by `__dev_queue_xmit` before the root
//! qdisc's enqueue) sees each frame as the peer's stack sent it, before the HTB/netem/TBF
//! tree drops, delays or duplicates it; packet sockets on `eth0` itself only see frames
//! after the tree (`dev_queue_xmit_nit`, from `xmit_one`, after the qdisc's dequeue).
//! The clsact qdisc lives beside the root qdisc, so the tree is not touched.
//!
//! `tc qdisc add dev D clsact` and `tc filter add dev D egress protocol all prio 1 u32
//! match u32 0 0 action mirred egress mirror dev T`.

use rtnetlink::packet_route::tc::{
    TcAction, TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};

use crate::tc::filter;

/// The qdisc kind.
pub const KIND: &str = "clsact";
/// `TC_H_CLSACT` (= `TC_H_INGRESS`), the parent a clsact qdisc is attached to.
pub const PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xfff1,
};
/// clsact's handle, `ffff:`.
pub const HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
/// The egress hook's parent, `ffff:fff3` (`TC_H_MIN_EGRESS`).
pub const EGRESS: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xfff3,
};
/// `ETH_P_ALL`: the filter sees every protocol.
pub const ETH_P_ALL: u16 = 0x0003;
/// The filter's priority.
pub const PRIO: u16 = 1;

/// The clsact qdisc of `ifindex`.
pub fn qdisc(ifindex: i32) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex);
    msg.header.handle = HANDLE;
    msg.header.parent = PARENT;
    msg.attributes.push(TcAttribute::Kind(KIND.into()));
    msg
}

/// The mirred action that copies a frame to the egress of `ifindex` and lets the
/// original go on (`pipe`).
pub fn mirror_action(ifindex: u32) -> TcAction {
    filter::mirred_action(
        ifindex,
        TcActionType::Pipe,
        TcMirrorActionType::EgressMirror,
    )
}

/// The egress filter of `ifindex` that mirrors every frame to `to_ifindex`.
pub fn mirror_filter(ifindex: i32, to_ifindex: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex);
    msg.header.parent = EGRESS;
    msg.header.info = filter::info(PRIO, ETH_P_ALL);
    msg.attributes.push(TcAttribute::Kind(filter::KIND.into()));
    // One key that matches anything: `match u32 0 0 at 0`.
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 1;
    sel.keys = vec![TcU32Key::default()];
    msg.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Action(vec![mirror_action(to_ifindex)])),
        TcOption::U32(TcFilterU32Option::Selector(sel)),
    ]));
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_tcs() {
        assert_eq!(u32::from(PARENT), 0xffff_fff1);
        assert_eq!(u32::from(HANDLE), 0xffff_0000);
        assert_eq!(u32::from(EGRESS), 0xffff_fff3);
    }

    #[test]
    fn the_filter_mirrors_everything() {
        let msg = mirror_filter(2, 3);
        assert_eq!(msg.header.info.to_ne_bytes(), [0x00, 0x03, 0x01, 0x00]);
        let Some(TcAttribute::Options(options)) = msg.attributes.get(1) else {
            panic!("{msg:?}");
        };
        let TcOption::U32(TcFilterU32Option::Selector(sel)) = &options[1] else {
            panic!("{options:?}");
        };
        assert_eq!((sel.keys[0].mask, sel.keys[0].val), (0, 0));
    }
}
