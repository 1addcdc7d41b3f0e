//! What the user asked of every link, whatever realises it: the impairment of each
//! direction and which directions are cut.
//!
//! Pure bookkeeping. The network checks a request here, hands the change to its
//! backend, and records it here only once the backend has carried it out, so the
//! record is always what the links do.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::impairment::LinkImpairment;
use crate::link::{Link, PeerId};

/// The impairment and cut of every link of one network.
#[derive(Debug, Default)]
pub(crate) struct Intent {
    /// Impaired links only: a link missing here is a plain wire.
    links: BTreeMap<Link, LinkImpairment>,
    /// Links cut off (their impairment stays recorded for the heal).
    cuts: BTreeSet<Link>,
}

/// The impairment of a plain wire.
fn none() -> &'static LinkImpairment {
    static NONE: std::sync::OnceLock<LinkImpairment> = std::sync::OnceLock::new();
    NONE.get_or_init(LinkImpairment::default)
}

/// Refuses a link that is not between two different peers of a network of `peers`
/// peers (ids `1..=peers`).
pub(crate) fn check_link(link: Link, peers: usize) -> Result<()> {
    for peer in [link.source, link.destination] {
        if peer.0 == 0 || peer.0 > peers {
            return Err(Error::UnknownPeer(peer));
        }
    }
    if link.source == link.destination {
        return Err(Error::SelfLink(link));
    }
    Ok(())
}

/// Every direction between `peer` and the others of a network of `peers` peers, both
/// ways, in peer order: what `isolate` cuts and `rejoin` heals.
pub(crate) fn links_of(peer: PeerId, peers: usize) -> impl Iterator<Item = Link> {
    (1..=peers)
        .map(PeerId)
        .filter(move |&other| other != peer)
        .flat_map(move |other| [Link::new(peer, other), Link::new(other, peer)])
}

impl Intent {
    /// The impairment `link` has now (a plain wire's when none was set).
    pub(crate) fn impairment(&self, link: Link) -> &LinkImpairment {
        self.links.get(&link).unwrap_or_else(|| none())
    }

    /// Whether `link` is cut.
    pub(crate) fn is_cut(&self, link: Link) -> bool {
        self.cuts.contains(&link)
    }

    /// The link's current impairment if `to` would change it; `None` for a no-op.
    pub(crate) fn change(&self, link: Link, to: &LinkImpairment) -> Option<&LinkImpairment> {
        let from = self.impairment(link);
        (from != to).then_some(from)
    }

    /// Records that `link` now carries `to`.
    pub(crate) fn set(&mut self, link: Link, to: LinkImpairment) {
        if to.is_none() {
            self.links.remove(&link);
        } else {
            self.links.insert(link, to);
        }
    }

    /// Whether cutting (`cut`) or healing `link` changes anything.
    pub(crate) fn cut_changes(&self, link: Link, cut: bool) -> bool {
        self.is_cut(link) != cut
    }

    /// Records that `link` is now cut (`cut`) or healed.
    pub(crate) fn set_cut(&mut self, link: Link, cut: bool) {
        if cut {
            self.cuts.insert(link);
        } else {
            self.cuts.remove(&link);
        }
    }

    /// The seed of `link`'s random stream: the impairment's own, else one derived from
    /// the network's seed and the link, different for every link.
    pub(crate) fn seed(network_seed: u64, link: Link, impairment: &LinkImpairment) -> u64 {
        impairment.seed.unwrap_or_else(|| {
            let id = ((link.source.0 as u64) << 32) ^ link.destination.0 as u64;
            super::mix(network_seed ^ super::mix(id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn link(a: usize, b: usize) -> Link {
        Link::new(PeerId(a), PeerId(b))
    }

    fn delay(ms: u64) -> LinkImpairment {
        LinkImpairment::new().with_latency(Duration::from_millis(ms))
    }

    #[test]
    fn links_are_checked_against_the_peers() {
        assert!(check_link(link(1, 2), 2).is_ok());
        assert!(matches!(
            check_link(link(1, 3), 2),
            Err(Error::UnknownPeer(PeerId(3)))
        ));
        assert!(matches!(
            check_link(link(0, 1), 2),
            Err(Error::UnknownPeer(PeerId(0)))
        ));
        assert!(matches!(check_link(link(2, 2), 2), Err(Error::SelfLink(_))));
        assert!(matches!(
            check_link(link(1, 2), 0),
            Err(Error::UnknownPeer(PeerId(1)))
        ));
    }

    #[test]
    fn an_unchanged_impairment_is_a_no_op() {
        let mut intent = Intent::default();
        assert!(intent.change(link(1, 2), &LinkImpairment::new()).is_none());
        assert_eq!(
            intent.change(link(1, 2), &delay(5)),
            Some(&LinkImpairment::new())
        );
        intent.set(link(1, 2), delay(5));
        assert!(intent.change(link(1, 2), &delay(5)).is_none());
        assert_eq!(intent.impairment(link(1, 2)), &delay(5));
        assert_eq!(intent.impairment(link(2, 1)), &LinkImpairment::new());
        // Clearing forgets the link: it is a plain wire again.
        intent.set(link(1, 2), LinkImpairment::new());
        assert!(intent.links.is_empty());
    }

    #[test]
    fn cuts_keep_the_impairment() {
        let mut intent = Intent::default();
        intent.set(link(1, 2), delay(5));
        assert!(intent.cut_changes(link(1, 2), true));
        assert!(!intent.cut_changes(link(1, 2), false));
        intent.set_cut(link(1, 2), true);
        assert!(intent.is_cut(link(1, 2)) && !intent.is_cut(link(2, 1)));
        assert!(!intent.cut_changes(link(1, 2), true));
        assert_eq!(intent.impairment(link(1, 2)), &delay(5));
        intent.set_cut(link(1, 2), false);
        assert!(!intent.is_cut(link(1, 2)));
    }

    #[test]
    fn isolate_covers_both_directions_to_every_other_peer() {
        let links: Vec<_> = links_of(PeerId(2), 3).collect();
        assert_eq!(links, [link(2, 1), link(1, 2), link(2, 3), link(3, 2)]);
        assert_eq!(links_of(PeerId(1), 1).count(), 0);
    }

    #[test]
    fn seeds_differ_per_link_and_honour_the_impairment() {
        let plain = LinkImpairment::new();
        let a = Intent::seed(7, link(1, 2), &plain);
        assert_ne!(a, Intent::seed(7, link(2, 1), &plain));
        assert_ne!(a, Intent::seed(8, link(1, 2), &plain));
        assert_eq!(a, Intent::seed(7, link(1, 2), &plain));
        assert_eq!(Intent::seed(7, link(1, 2), &plain.with_seed(42)), 42);
    }
}
