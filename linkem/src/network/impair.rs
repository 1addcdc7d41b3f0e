//! The network's impairment API: per-link impairments, partitions and counters.
//!
//! Every method checks its input first (peers, link, impairment, what the backend can
//! do), then changes the backend one link at a time and records each change in the
//! network's intent only once it is in force, so a refusal leaves the refused link, and
//! every link not yet reached, as it was.
//!
//! Each change in force is traced (debug): `impairment applied` with the link and a
//! tc-like summary, `link cut` / `link healed`.

use super::intent::{self, Intent};
use super::{LinkStats, Network};
use crate::error::Result;
use crate::impairment::LinkImpairment;
use crate::link::{Link, PeerId};

impl Network {
    /// Sets what the link `source -> destination` does to packets (that direction only).
    /// Applying the value the link already has is a no-op; a change applies to the next
    /// packet and leaves what is queued alone. On a refusal the link keeps its previous
    /// impairment.
    pub async fn apply_impairment(&self, link: Link, impairment: LinkImpairment) -> Result<()> {
        self.check_link(link)?;
        impairment.validate()?;
        self.backend.check_supported(&impairment).await?;
        let mut intent = self.intent.lock().await;
        self.set_impairment(&mut intent, link, impairment).await
    }

    /// Sets the same impairment in both directions between `a` and `b`.
    pub async fn apply_impairment_both(
        &self,
        a: PeerId,
        b: PeerId,
        impairment: LinkImpairment,
    ) -> Result<()> {
        self.check_link(Link::new(a, b))?;
        self.check_link(Link::new(b, a))?;
        impairment.validate()?;
        self.backend.check_supported(&impairment).await?;
        let mut intent = self.intent.lock().await;
        self.set_impairment(&mut intent, Link::new(a, b), impairment.clone())
            .await?;
        self.set_impairment(&mut intent, Link::new(b, a), impairment)
            .await
    }

    /// Sets the impairment of every direction between every two peers (a default for
    /// the whole network; later `apply_impairment` calls override single links).
    ///
    /// The source peers are configured concurrently (one change in flight per source;
    /// the links of one source go in peer order). On a refusal the error of the first
    /// failing source, in peer order, is returned; the links set before it, on any
    /// source, keep their new impairment, and the failing link keeps its previous one.
    pub async fn apply_impairment_all(&self, impairment: LinkImpairment) -> Result<()> {
        impairment.validate()?;
        self.backend.check_supported(&impairment).await?;
        let peers: Vec<PeerId> = self.peers().collect();
        for &a in &peers {
            for &b in peers.iter().filter(|&&b| b != a) {
                self.check_link(Link::new(a, b))?;
            }
        }
        let mut intent = self.intent.lock().await;
        let (peers, impairment, record) = (&peers, &impairment, &*intent);
        let sources = peers.iter().map(|&a| async move {
            let mut done = Vec::new();
            for &b in peers.iter().filter(|&&b| b != a) {
                let link = Link::new(a, b);
                let Some(from) = record.change(link, impairment) else {
                    continue;
                };
                let seed = Intent::seed(self.seed, link, impairment);
                let cut = record.is_cut(link);
                if let Err(e) = self
                    .backend
                    .set_impairment(link, from, impairment, cut, seed)
                    .await
                {
                    return (done, Some(e));
                }
                trace_applied(self, link, impairment);
                done.push(link);
            }
            (done, None)
        });
        let outcomes = futures::future::join_all(sources).await;
        let mut first_error = None;
        for (done, error) in outcomes {
            for link in done {
                intent.set(link, impairment.clone());
            }
            if first_error.is_none() {
                first_error = error;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the impairment of one direction: it behaves like a plain wire again.
    pub async fn clear_impairment(&self, link: Link) -> Result<()> {
        self.apply_impairment(link, LinkImpairment::default()).await
    }

    /// The impairment a direction has now.
    pub async fn impairment(&self, link: Link) -> Result<LinkImpairment> {
        self.check_link(link)?;
        Ok(self.intent.lock().await.impairment(link).clone())
    }

    /// Cuts both directions between `a` and `b`: every IP packet is dropped silently,
    /// as by a failed switch. The impairments stay configured for [`Network::heal`].
    ///
    /// Kernel: the destination's u32 filter is re-pointed at the blackhole class
    /// (`tc filter replace ... flowid 1:ffff`, a `pfifo limit 0`), one request per
    /// direction, no sch_netem needed. Userspace: packets are dropped as they enter the
    /// link and counted as dropped by partition. On both, packets already queued still
    /// leave, and ARP and IPv6 neighbour discovery still pass (the kernel backend's
    /// destination filters match IP packets, and filters ahead of them pass neighbour
    /// solicitations and advertisements; the userspace backend passes all neighbour
    /// discovery), so a heal works at once and a one-way cut leaves the other direction
    /// working.
    pub async fn partition(&self, a: PeerId, b: PeerId) -> Result<()> {
        self.partition_one_way(Link::new(a, b)).await?;
        self.partition_one_way(Link::new(b, a)).await
    }

    /// Cuts one direction only.
    pub async fn partition_one_way(&self, link: Link) -> Result<()> {
        self.check_link(link)?;
        let mut intent = self.intent.lock().await;
        self.set_cut(&mut intent, link, true).await
    }

    /// Restores both directions between `a` and `b`, with their impairments.
    pub async fn heal(&self, a: PeerId, b: PeerId) -> Result<()> {
        self.heal_one_way(Link::new(a, b)).await?;
        self.heal_one_way(Link::new(b, a)).await
    }

    /// Restores one direction.
    pub async fn heal_one_way(&self, link: Link) -> Result<()> {
        self.check_link(link)?;
        let mut intent = self.intent.lock().await;
        self.set_cut(&mut intent, link, false).await
    }

    /// Cuts `peer` off from every other peer, both ways.
    pub async fn isolate(&self, peer: PeerId) -> Result<()> {
        self.cut_all(peer, true).await
    }

    /// Heals every cut of `peer`, both ways.
    pub async fn rejoin(&self, peer: PeerId) -> Result<()> {
        self.cut_all(peer, false).await
    }

    /// The counters of a link. The userspace backend counts every link, impaired or not,
    /// with what happened to each packet ([`LinkStats::fates`]); the kernel backend
    /// reads the link's qdisc (`tc -s qdisc`), which exists only for an impaired or cut
    /// link (`None` for a plain wire), and its counters restart when the link goes from
    /// impaired to plain and back.
    pub async fn link_stats(&self, link: Link) -> Result<Option<LinkStats>> {
        self.check_link(link)?;
        let (impairment, cut) = {
            let intent = self.intent.lock().await;
            (intent.impairment(link).clone(), intent.is_cut(link))
        };
        self.backend.link_stats(link, &impairment, cut).await
    }

    fn check_link(&self, link: Link) -> Result<()> {
        intent::check_link(link, self.peer_count())?;
        self.backend.check_link(link)
    }

    async fn set_impairment(
        &self,
        intent: &mut Intent,
        link: Link,
        impairment: LinkImpairment,
    ) -> Result<()> {
        let Some(from) = intent.change(link, &impairment) else {
            return Ok(());
        };
        let seed = Intent::seed(self.seed, link, &impairment);
        self.backend
            .set_impairment(link, from, &impairment, intent.is_cut(link), seed)
            .await?;
        trace_applied(self, link, &impairment);
        intent.set(link, impairment);
        Ok(())
    }

    async fn set_cut(&self, intent: &mut Intent, link: Link, cut: bool) -> Result<()> {
        if !intent.cut_changes(link, cut) {
            return Ok(());
        }
        self.backend
            .set_cut(link, cut, intent.impairment(link))
            .await?;
        tracing::debug!(
            network = self.id,
            backend = %self.backend.kind(),
            %link,
            "{}",
            if cut { "link cut" } else { "link healed" }
        );
        intent.set_cut(link, cut);
        Ok(())
    }

    async fn cut_all(&self, peer: PeerId, cut: bool) -> Result<()> {
        self.peer(peer)?;
        let links: Vec<Link> = intent::links_of(peer, self.peer_count()).collect();
        for &link in &links {
            self.check_link(link)?;
        }
        let mut intent = self.intent.lock().await;
        for link in links {
            self.set_cut(&mut intent, link, cut).await?;
        }
        Ok(())
    }
}

/// The event of a change in force: which link, and what it does now as tc would say it.
fn trace_applied(net: &Network, link: Link, impairment: &LinkImpairment) {
    tracing::debug!(
        network = net.id,
        backend = %net.backend.kind(),
        %link,
        impairment = %crate::impairment::summary(impairment),
        "impairment applied"
    );
}
