//! Traffic control, the kernel backend's data plane: how impairments become qdisc trees.
//!
//! For users this module is only the seed API's path to the impairment model,
//! [`impairment`] (whose home is [`crate::impairment`]). Everything else here is the
//! kernel backend's machinery, public only for the crate's own byte-exact and property
//! tests and benchmarks, and hidden from the docs:
//!
//! Encoding (pure, no kernel access): `psched` (tc's time and rate arithmetic),
//! `netem`, `htb`, `tbf`, `filter` (u32 + mirred), `clsact` (the capture tap), `dist` (netem's delay tables) and
//! `nla` (raw attributes). `handles` documents the tree every peer's device carries,
//! and `plan` turns a peer's impairments into the requests that build or change it.

#[doc(hidden)]
pub mod clsact;
pub(crate) mod dist;
#[doc(hidden)]
pub mod filter;
#[doc(hidden)]
pub mod handles;
#[doc(hidden)]
pub mod htb;
pub mod impairment;
#[doc(hidden)]
pub mod netem;
#[doc(hidden)]
pub mod nla;
#[doc(hidden)]
pub mod plan;
#[doc(hidden)]
pub mod psched;
#[doc(hidden)]
pub mod tbf;

// Kept at the paths they had before the backend seam; their home is `crate::network`.
#[doc(hidden)]
pub use crate::backend::kernel::netem_available;
#[doc(hidden)]
pub use crate::backend::LinkStats;

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
