//! The links both sides impair.

use super::*;

/// Every ordered pair of distinct peers: N x (N-1) links.
pub(crate) fn mesh(peers: &[PeerId]) -> impl Iterator<Item = Link> + '_ {
    peers.iter().flat_map(move |&s| {
        peers
            .iter()
            .filter(move |&&d| d != s)
            .map(move |&d| Link::new(s, d))
    })
}

/// The links a partition of peer 1 from all others cuts, both directions.
pub(crate) fn partition_links(peers: &[PeerId]) -> Vec<Link> {
    let first = peers[0];
    peers[1..]
        .iter()
        .flat_map(|&p| [Link::new(first, p), Link::new(p, first)])
        .collect()
}

/// The link "change one link" changes.
pub(crate) fn changed_link(peers: &[PeerId]) -> Link {
    Link::new(peers[0], peers[1])
}
