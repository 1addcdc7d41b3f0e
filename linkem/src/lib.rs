//! linkem: in-process network emulation for testing distributed systems on Linux.

pub mod error;
pub mod network;
pub mod tc;

pub use error::{Error, Result};
