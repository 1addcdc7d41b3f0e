//! Tests on an emulated network: what `#[linkem::test]` records ([`spec`]) and what
//! its bodies are handed ([`Peer`], [`Controller`]).

mod peer;
pub mod spec;

pub use peer::{Controller, Peer};
pub use spec::{IntoTestOutcome, Outcome, TestDef, TestSpec, TESTS};
