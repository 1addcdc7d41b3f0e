//! The emulated network: a hub namespace with a bridge, and one namespace per peer.

use std::fmt;

/// A peer of one network. Ids start at 1 and are per network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub usize);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One direction between two peers: traffic from `source` to `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The sending peer.
    pub source: PeerId,
    /// The receiving peer.
    pub destination: PeerId,
}

impl Link {
    /// The direction `source -> destination`.
    pub fn new(source: PeerId, destination: PeerId) -> Self {
        Link {
            source,
            destination,
        }
    }

    /// The opposite direction.
    pub fn reversed(self) -> Self {
        Link::new(self.destination, self.source)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.source, self.destination)
    }
}
