//! Tests on an emulated network: what `#[linkem::test]` records ([`spec`]) and what
//! its bodies are handed ([`Peer`], [`Controller`]).

mod peer;
pub mod runner;
pub mod spec;

pub use peer::{Controller, Peer};
pub use spec::{BodyFailure, IntoTestOutcome, Outcome, TestDef, TestSpec, TESTS};
