//! Tests on an emulated network: what `#[linkem::test]` records ([`spec`]), what its
//! bodies are handed ([`Peer`], [`Controller`]), how they fail ([`Failure`]) and how
//! the harness runs them ([`runner`], with their panics kept by [`capture`], on the
//! backend and with the seed [`trial`] sets on their thread).

pub mod capture;
mod failure;
mod peer;
pub mod runner;
pub mod spec;
pub mod trial;

pub use failure::{Failure, IntoTestOutcome};
pub use peer::{Controller, Peer};
pub use spec::{TestDef, TestSpec, TESTS};
