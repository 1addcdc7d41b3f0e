//! linkem: in-process network emulation for testing distributed systems on Linux.

pub mod error;
pub mod ip;
mod namespace;
mod netlink;
pub mod network;
mod process;
pub mod tc;
pub mod testing;

pub use error::{Error, Result};
pub use network::{Link, Network, PeerContext, PeerId};
pub use testing::{Controller, Peer};

pub use linkem_macros::test;

/// What `#[linkem::test]` expands to refers only to this module, so that the user's
/// crate needs no dependency but linkem. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use ::core::option::Option;
    pub use ::core::{file, line, module_path};
    pub use ::linkme::{self, distributed_slice};
    pub use std::boxed::Box;
    pub use std::future::Future;
    pub use std::net::IpAddr;
    pub use std::pin::Pin;
    pub use std::time::Duration;

    pub use crate::tc::impairment::{Distribution, LinkImpairment, LossModel, Percent, Rate};
    pub use crate::testing::spec::{
        ControllerBody, ControllerFuture, IntoTestOutcome, Outcome, PeerBody, PeerFuture,
        StandaloneBody, TestDef, TestSpec, TESTS,
    };
    pub use crate::testing::{Controller, Peer};
}
