//! PLACEHOLDER, replaced on merge by the real `Peer` and `Controller` (which wrap the
//! live network). Only here so that the `macros` branch compiles: no logic belongs in
//! this file.

use crate::network::PeerId;

/// One peer of a `#[linkem::test]`, handed to its body (placeholder).
#[derive(Debug)]
pub struct Peer {
    id: PeerId,
}

impl Peer {
    /// This peer's id, from 1.
    pub fn id(&self) -> PeerId {
        self.id
    }
}

/// The handle of a controller body, outside every peer's namespace (placeholder).
#[derive(Debug)]
pub struct Controller {
    _private: (),
}
