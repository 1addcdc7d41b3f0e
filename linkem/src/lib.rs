//! linkem: in-process network emulation for testing distributed systems on Linux.
//!
//! Each peer gets its own network namespace with a real interface and address; peers
//! meet on a bridge in a private hub namespace; per-destination impairments are Linux
//! traffic control, configured over rtnetlink. Code runs in-process: a peer's future
//! runs on a thread inside that peer's namespace, so real sockets and unmodified
//! programs see the emulated network.
//!
//! - [`network`]: [`Network`], peers, [`Network::run_in_namespace`], commands in a
//!   peer's namespace, teardown.
//! - [`tc::impairment`]: [`LinkImpairment`](tc::impairment::LinkImpairment), what a link
//!   does to packets; [`Network::apply_impairment`], partitions and counters.
//! - [`ip`]: [`Subnet`](ip::Subnet), the addresses peers get.
//! - [`test`] and [`testing`]: `#[linkem::test]` and what its bodies are handed
//!   ([`Peer`], [`Controller`]); the `linkem-test` crate is the harness that runs them.
//!
//! Everything needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the namespaces linkem creates:
//! root, or an unprivileged user namespace (the harness enters one by itself).
//!
//! ```no_run
//! use linkem::network::{Link, Network};
//! use linkem::tc::impairment::LinkImpairment;
//! use std::time::Duration;
//!
//! # async fn demo() -> linkem::Result<()> {
//! let mut net = Network::new(linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24)).await?;
//! let (a, b) = (net.add_peer().await?, net.add_peer().await?);
//! net.apply_impairment(Link::new(a, b), LinkImpairment::new().with_latency(Duration::from_millis(50)))
//!     .await?;
//! let addr_b = net.addr(b)?;
//! let connected = net
//!     .run_in_namespace(a, move |_ctx| async move {
//!         tokio::net::TcpStream::connect((addr_b, 80)).await.is_ok()
//!     })
//!     .await?;
//! # let _ = connected;
//! # Ok(())
//! # }
//! ```

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
