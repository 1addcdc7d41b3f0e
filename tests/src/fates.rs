//! What a seeded link did to numbered datagrams, as a receiver sees it: the material of
//! the determinism tests (tests/tests/determinism.rs) and of the `seeded-fates` binary
//! they run with `LINKEM_SEED` set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use linkem::impairment::{Distribution, LinkImpairment};
use linkem::network::{BackendKind, FateCounts, Link, Network, PeerId};
use linkem::Error;

use crate::probe::Probe;

/// Datagrams per run: a few thousand.
pub const COUNT: u32 = 3000;

/// The impairment of the judged link (1 -> 2) on `backend`: every kind of random fate
/// at once, except corruption on the kernel backend.
///
/// netem decides *whether* to corrupt a packet with its seeded generator, but picks the
/// byte and bit to flip with `get_random_u32_below()`, the kernel's unseeded one
/// (`netem_enqueue()` in net/sched/sch_netem.c, Linux 6.12). Whether a corrupted
/// datagram then reaches the receiver (a flip in the source MAC address) or is dropped
/// by a checksum (anywhere else) is therefore not replayable: in the 6.12 lane that
/// made 6 of 264 losses differ between two runs of one seed. Nothing a receiver sees
/// of corruption replays there, so the kernel's runs leave it out.
pub fn impairment(backend: BackendKind) -> LinkImpairment {
    let imp = LinkImpairment::new()
        .with_loss(5.0)
        .with_duplicate(5.0)
        .with_latency(Duration::from_millis(50))
        .with_jitter(Duration::from_millis(40))
        .with_distribution(Distribution::Uniform);
    match backend {
        BackendKind::Kernel => imp,
        _ => imp.with_corrupt(5.0),
    }
}

/// The fates of one run, by sequence number.
///
/// A corrupted datagram is either dropped by the receiving kernel (a flip in a header
/// or under the UDP checksum) and then counts as lost, or arrives altered; which one
/// depends on the flipped bit, which the seed draws too, so both sets are part of the
/// replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fates {
    /// Never arrived.
    pub lost: BTreeSet<u32>,
    /// Arrived more than once.
    pub duplicated: BTreeSet<u32>,
    /// Arrived altered (at least one copy).
    pub altered: BTreeSet<u32>,
    /// The one-way delay of each arrived datagram's first copy, in microseconds
    /// (measured: the drawn delay plus this machine's lateness).
    pub delays: BTreeMap<u32, u64>,
    /// The link's per-cause counters, where the backend keeps them (userspace).
    pub counted: Option<FateCounts>,
}

impl Fates {
    /// The median difference of the delays of datagrams both runs delivered, in ms.
    pub fn median_delay_difference(&self, other: &Fates) -> f64 {
        let mut diffs: Vec<f64> = self
            .delays
            .iter()
            .filter_map(|(seq, d)| Some((*d as f64 - *other.delays.get(seq)? as f64).abs()))
            .collect();
        assert!(!diffs.is_empty(), "no datagram arrived in both runs");
        diffs.sort_by(f64::total_cmp);
        diffs[diffs.len() / 2] / 1e3
    }

    /// Spearman's rank correlation of the delays of datagrams both runs delivered, and
    /// how many those were. A measured delay is the drawn one plus this machine's
    /// lateness, which inside user-mode-linux reached a median of 30 ms and a 95th
    /// percentile of 200 ms with two flows of window 32 in flight: enough to make two runs' delays
    /// differ by more than two seeds' do, but not to hide which datagrams drew long
    /// delays and which short. Two independent streams correlate by chance only within
    /// about `1 / sqrt(n - 1)`.
    pub fn delay_rank_correlation(&self, other: &Fates) -> (f64, usize) {
        let (mine, theirs): (Vec<u64>, Vec<u64>) = self
            .delays
            .iter()
            .filter_map(|(seq, d)| Some((*d, *other.delays.get(seq)?)))
            .unzip();
        let (x, y) = (ranks(&mine), ranks(&theirs));
        let n = x.len();
        let mean = (n as f64 - 1.0) / 2.0;
        // Both are permutations of 0..n (ties are ranked in order), so they spread
        // alike and one sum of squares stands for both.
        let (mut xy, mut xx) = (0.0, 0.0);
        for (a, b) in x.iter().zip(&y) {
            xy += (a - mean) * (b - mean);
            xx += (a - mean) * (a - mean);
        }
        (xy / xx, n)
    }

    /// The median measured delay, in ms.
    pub fn median_delay(&self) -> f64 {
        let mut d: Vec<u64> = self.delays.values().copied().collect();
        d.sort_unstable();
        d.get(d.len() / 2).map_or(f64::NAN, |&us| us as f64 / 1e3)
    }

    /// The sets and counters, without the measured delays (which carry timing noise).
    pub fn drawn(
        &self,
    ) -> (
        &BTreeSet<u32>,
        &BTreeSet<u32>,
        &BTreeSet<u32>,
        Option<FateCounts>,
    ) {
        (
            &self.lost,
            &self.duplicated,
            &self.altered,
            self.counted.map(without_control),
        )
    }
}

/// The rank of each value (0 for the smallest; ties in their order).
fn ranks(values: &[u64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| values[i]);
    let mut rank = vec![0.0; values.len()];
    for (r, i) in order.into_iter().enumerate() {
        rank[i] = r as f64;
    }
    rank
}

/// The counters without the control frames the kernel sends by itself (their number
/// depends on timing, not on the seed).
fn without_control(mut c: FateCounts) -> FateCounts {
    c.control_packets = 0;
    c
}

impl fmt::Display for Fates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |s: &BTreeSet<u32>| s.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        writeln!(f, "lost {}", list(&self.lost))?;
        writeln!(f, "duplicated {}", list(&self.duplicated))?;
        writeln!(f, "altered {}", list(&self.altered))?;
        let delays: Vec<String> = self
            .delays
            .iter()
            .map(|(s, d)| format!("{s}:{d}"))
            .collect();
        writeln!(f, "delays {}", delays.join(","))
    }
}

impl std::str::FromStr for Fates {
    type Err = String;

    /// Reads what [`Fates`]' Display wrote (without the counters).
    fn from_str(text: &str) -> Result<Fates, String> {
        let mut fates = Fates {
            lost: BTreeSet::new(),
            duplicated: BTreeSet::new(),
            altered: BTreeSet::new(),
            delays: BTreeMap::new(),
            counted: None,
        };
        for line in text.lines() {
            let (key, values) = line.split_once(' ').unwrap_or((line, ""));
            let values = values.split(',').filter(|v| !v.is_empty());
            let set = match key {
                "lost" => &mut fates.lost,
                "duplicated" => &mut fates.duplicated,
                "altered" => &mut fates.altered,
                "delays" => {
                    for v in values {
                        let (s, d) = v.split_once(':').ok_or(format!("bad delay {v}"))?;
                        fates.delays.insert(
                            s.parse().map_err(|_| format!("bad seq {s}"))?,
                            d.parse().map_err(|_| format!("bad delay {d}"))?,
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            for v in values {
                set.insert(v.parse().map_err(|_| format!("bad seq {v}"))?);
            }
        }
        Ok(fates)
    }
}

/// A 3-peer network on `backend` seeded with `seed` (the builder's seed: the
/// environment's `LINKEM_SEED` wins over it).
pub async fn seeded_network(backend: BackendKind, seed: u64) -> Result<Network, Error> {
    let subnet = linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24);
    let mut net = Network::builder(subnet)
        .backend(backend)
        .seed(seed)
        .build()
        .await?;
    for _ in 0..3 {
        net.add_peer().await?;
    }
    Ok(net)
}

/// Sends [`COUNT`] numbered datagrams over 1 -> 2 (impaired by [`impairment`]) and
/// records their fates; with `crosstalk`, link 1 -> 3 carries its own impaired stream
/// at the same time.
pub async fn run(net: &Network, crosstalk: bool) -> Result<Fates, Error> {
    const P1: PeerId = PeerId(1);
    const P2: PeerId = PeerId(2);
    const P3: PeerId = PeerId(3);
    // Neighbours first, over the plain wires: nothing judged waits for ARP. ARP never
    // draws from a link's stream anyway (it passes unimpaired on both backends, and
    // the IFB of the kernel's duplicating link sends nothing of its own).
    // Every warm-up datagram must have arrived before the impairment goes on: one
    // still waiting for ARP (a slow kernel under load took more than the silence once)
    // would cross the impaired link first, draw the first fates and shift every
    // datagram's fate by one (the same 140 losses, 30 of them on other datagrams).
    for to in [P2, P3] {
        let mut arrived = 0;
        for attempt in 0..5u16 {
            let warm = Probe::new(5, 7800 + attempt * 10)
                .silence(Duration::from_secs(2))
                .run(net, P1, to)
                .await?;
            arrived = warm.arrived.len();
            if arrived == 5 {
                break;
            }
            // Let what is still on its way (in the neighbour queue) arrive.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert_eq!(
            arrived, 5,
            "the warm-up to peer {to} never got through whole"
        );
    }
    let judged = Link::new(P1, P2);
    // Counters from here: the userspace backend counts the plain wire too.
    let before = net.link_stats(judged).await?.and_then(|s| s.fates);
    let impairment = impairment(net.backend());
    net.apply_impairment(judged, impairment.clone()).await?;
    if crosstalk {
        net.apply_impairment(Link::new(P1, P3), impairment.with_loss(20.0))
            .await?;
    }
    // Both flows are paced in small bursts: the fates of a link's k-th packet replay
    // only if the same packets reach it, and on a slow kernel (user-mode-linux, one CPU)
    // an unpaced second flow from the same peer overflowed buffers before the link (56
    // of 3,000 judged datagrams never reached it in one lane run). A window of 16
    // datagrams rather than a wait for each burst's last: with 10 to 90 ms of delay
    // that wait made each run take 20 s. (On user-mode-linux's single CPU, 64 made the
    // userspace engine late by 5 to 11 ms in the median; on a slower host 32 made it
    // late by up to 60 ms, 200 ms at the 95th percentile, and a lane ran no faster.)
    let probe = Probe::new(COUNT, 7801)
        .size(200)
        .bursts(10, Duration::ZERO)
        .window(16)
        .silence(Duration::from_millis(1500))
        .keep_listening();
    let other = Probe::new(COUNT, 7802)
        .size(200)
        .bursts(10, Duration::ZERO)
        .window(16)
        .silence(Duration::from_millis(1500))
        .keep_listening();
    let (delivery, noise) = tokio::join!(probe.run(net, P1, P2), async {
        if crosstalk {
            other.run(net, P1, P3).await.map(Some)
        } else {
            Ok(None)
        }
    });
    let delivery = delivery?;
    noise?;
    delivery.assert_no_socket_overflow();
    let mut copies = BTreeMap::<u32, u32>::new();
    let mut altered = BTreeSet::new();
    let mut delays = BTreeMap::new();
    for a in &delivery.arrived {
        if a.seq >= COUNT {
            continue;
        }
        *copies.entry(a.seq).or_default() += 1;
        if !a.intact {
            altered.insert(a.seq);
        }
        let sent = delivery.sent[a.seq as usize];
        delays
            .entry(a.seq)
            .or_insert_with(|| (a.at - sent).as_micros() as u64);
    }
    let counted = net.link_stats(judged).await?.and_then(|s| s.fates);
    let counted = counted.map(|after| {
        let b = before.unwrap_or_default();
        FateCounts {
            sent_packets: after.sent_packets - b.sent_packets,
            sent_bytes: after.sent_bytes - b.sent_bytes,
            dropped_loss: after.dropped_loss - b.dropped_loss,
            dropped_queue: after.dropped_queue - b.dropped_queue,
            dropped_partition: after.dropped_partition - b.dropped_partition,
            dropped_unreachable: after.dropped_unreachable - b.dropped_unreachable,
            duplicated: after.duplicated - b.duplicated,
            corrupted: after.corrupted - b.corrupted,
            reordered: after.reordered - b.reordered,
            control_packets: after.control_packets - b.control_packets,
        }
    });
    Ok(Fates {
        lost: (0..COUNT).filter(|s| !copies.contains_key(s)).collect(),
        duplicated: copies
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| *s)
            .collect(),
        altered,
        delays,
        counted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_delays(delays: impl IntoIterator<Item = (u32, u64)>) -> Fates {
        Fates {
            lost: BTreeSet::new(),
            duplicated: BTreeSet::new(),
            altered: BTreeSet::new(),
            delays: delays.into_iter().collect(),
            counted: None,
        }
    }

    #[test]
    fn the_rank_correlation_ignores_a_lateness_offset_and_sees_an_order() {
        let drawn = |k: u32| u64::from(k.wrapping_mul(2_654_435_761) % 80_000 + 10_000);
        let a = with_delays((0..1000).map(|k| (k, drawn(k))));
        // The same draws, all 30 ms later, one datagram missing.
        let late = with_delays((1..1000).map(|k| (k, drawn(k) + 30_000)));
        let (rho, n) = a.delay_rank_correlation(&late);
        assert_eq!(n, 999);
        assert!((rho - 1.0).abs() < 1e-9, "{rho}");
        // The same values in the opposite order.
        let mut sorted: Vec<u64> = (0..1000).map(drawn).collect();
        sorted.sort_unstable();
        let up = with_delays((0..1000).map(|k| (k, sorted[k as usize])));
        let down = with_delays((0..1000).map(|k| (k, sorted[999 - k as usize])));
        assert!((up.delay_rank_correlation(&down).0 + 1.0).abs() < 1e-9);
    }
}
