//! Traffic control: the impairment model and the qdisc trees that carry it.
//!
//! Encoding (pure, no kernel access): [`psched`] (tc's time and rate arithmetic),
//! [`netem`], [`htb`], [`tbf`], [`filter`] (u32 + mirred), [`dist`] (netem's delay
//! tables) and [`nla`] (raw attributes). [`handles`] documents the tree every peer's
//! device carries, and [`plan`] turns a peer's impairments into the requests that build
//! or change it.

pub mod dist;
pub mod filter;
pub mod handles;
pub mod htb;
pub mod impairment;
pub mod netem;
pub mod nla;
pub mod plan;
pub mod psched;
pub mod tbf;
pub(crate) mod tree;

pub use tree::{netem_available, LinkStats};

use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};

/// A qdisc message: device, handle, parent, kind and raw `TCA_OPTIONS` payload.
pub(crate) fn qdisc_message(
    ifindex: i32,
    handle: TcHandle,
    parent: TcHandle,
    kind: &str,
    options: Vec<u8>,
) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex);
    msg.header.handle = handle;
    msg.header.parent = parent;
    msg.attributes.push(TcAttribute::Kind(kind.into()));
    msg.attributes.push(nla::options(options));
    msg
}

/// A class message: the same layout as a qdisc's, with the class id as handle.
pub(crate) fn class_message(
    ifindex: i32,
    classid: TcHandle,
    parent: TcHandle,
    kind: &str,
    options: Vec<u8>,
) -> TcMessage {
    qdisc_message(ifindex, classid, parent, kind, options)
}

/// A message naming a qdisc or class only (for deletion): device, handle, parent.
pub(crate) fn bare_message(ifindex: i32, handle: TcHandle, parent: TcHandle) -> TcMessage {
    let mut msg = TcMessage::with_index(ifindex);
    msg.header.handle = handle;
    msg.header.parent = parent;
    msg
}
