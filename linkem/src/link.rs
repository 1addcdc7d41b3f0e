//! The names of peers and of the directions between them.
//!
//! A leaf module: everything else (errors, the impairment model, the backends, the
//! network) speaks of peers and links, and none of them needs the others for it.

use std::fmt;

/// A peer of one network. Ids start at 1 and are per network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub usize);

// Peer ids and numbers meet: `PeerId::from(2)`, `id.get()`, and every method taking
// `impl Into<PeerId>` accepts both.
impl From<usize> for PeerId {
    fn from(n: usize) -> Self {
        PeerId(n)
    }
}

impl From<PeerId> for usize {
    fn from(peer: PeerId) -> Self {
        peer.0
    }
}

impl PeerId {
    /// The peer's number, from 1.
    pub fn get(self) -> usize {
        self.0
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_numbers_meet() {
        assert_eq!(PeerId::from(3), PeerId(3));
        assert_eq!(PeerId(3).get(), 3);
        assert_eq!(usize::from(PeerId(4)), 4);
        fn takes(peer: impl Into<PeerId>) -> PeerId {
            peer.into()
        }
        assert_eq!(takes(2), takes(PeerId(2)), "a literal reads as a number");
        assert_eq!(
            Link::new(PeerId(1), PeerId(2)).reversed().to_string(),
            "2 -> 1"
        );
    }
}
