//! linkem: in-process network emulation for testing distributed systems on Linux.

pub mod error;
pub mod ip;
mod namespace;
mod netlink;
pub mod network;
mod process;
pub mod tc;

pub use error::{Error, Result};
pub use network::{Link, Network, PeerContext, PeerId};
