//! The per-packet model of one link of the userspace engine: what happens to each wire
//! packet (at most one MTU-sized Ethernet frame) that enters the link.
//!
//! Pure: no clock, no I/O. The caller passes the arrival time; the model answers with a
//! [`Verdict`] (dropped and why, or one or two departures, each with its departure time
//! and what was done to it). Every random draw comes from the link's own stream, seeded
//! once ([`link_seed`], or the impairment's own `seed`), so for a given seed the k-th
//! packet on a link meets the same fate whatever other links carry: the fate is a pure
//! function of the seed, the configurations and the arrival times of the packets before
//! it on the same link.
//!
//! # The same meaning as the kernel backend
//!
//! The kernel backend gives each impaired link a netem qdisc with a TBF under it (see
//! [`crate::tc::handles`]); the model runs the same two stages, in that order, with the
//! algorithms of Linux 6.x `net/sched/sch_netem.c` and `sch_tbf.c` and the numbers linkem
//! sends there (probabilities scaled by [`crate::tc::netem::percent`], the queue length of
//! [`crate::tc::netem::effective_limit`], the shaper of [`crate::tc::tbf::Tbf::from_impairment`]):
//!
//! 1. **netem** (only when [`LinkImpairment::needs_netem`], as on the kernel), per packet
//!    in `netem_enqueue`'s order: the duplication draw; the loss draw (random with
//!    netem's correlation `get_crandom`, Gilbert-Elliott `loss_gilb_ell` or 4-state
//!    `loss_4state`); a packet both duplicated and lost goes on as one copy, as netem
//!    counts (`count = 1 + dup - loss`). A duplicate then passes netem again on its own
//!    with duplication off (netem re-enqueues the clone at the root), before the
//!    original goes on: its own loss draw, corruption, limit, reordering and delay.
//!    Then, per copy: corruption (one bit, uniform over the whole frame); the queue
//!    limit in packets (`limit`, else [`crate::tc::netem::auto_limit`]), counting the
//!    packets whose netem time has not come; reordering (`gap`/`counter` as netem: with
//!    gap `g`, only after `g - 1` delayed packets does a packet draw against `reorder`;
//!    a reordered packet leaves at once and the count restarts); otherwise the delay
//!    `tabledist(latency, jitter)` with its correlation and the distribution tables of
//!    [`crate::tc::dist`] (uniform without a table), and netem's `rate`: the copy leaves
//!    `len / rate` after the later of its own delay and the last packet netem still holds.
//! 2. **the shaper** (when `bandwidth_mbit_s` is set), TBF: a bucket of `burst` bytes
//!    filled at the rate, a queue of `limit_bytes` (`rate * queue_latency + burst`).
//!    A copy reaches it when netem lets it go, leaves once the bucket holds its length,
//!    and is dropped ([`DropCause::QueueFull`]) when it is larger than the bucket or does
//!    not fit the queue's byte limit with what still waits there.
//!
//! Rates count wire bytes, the whole frame the caller passes as `wire_len` (what tc counts
//! as `qdisc_pkt_len` on a veth: Ethernet header included, no FCS or preamble).
//!
//! # Where the model differs from the kernel
//!
//! - **Random stream.** ChaCha8 seeded per link (see `stream`), not the kernel's
//!   `prandom` state: the same seed gives the same fates on every run of this backend,
//!   not the same fates as a seeded netem. netem also takes each correlation's first
//!   memory and the corrupted bit from the unseeded `get_random_u32`; here they come
//!   from the link's stream, so they replay too.
//! - **Changes** ([`LinkModel::reconfigure`]). netem restarts its gap counter, its loss
//!   model (first state) and its correlation memories, as here. But netem also reseeds
//!   its generator on every change (from the link's `seed`, or at random), and a changed
//!   TBF refills its bucket; here the stream goes on (it restarts only when the `seed`
//!   field itself changes) and the bucket keeps its tokens.
//! - **Time.** Departures are exact nanoseconds; the kernel sends when its qdisc watchdog
//!   (an hrtimer, plus the timer slack) fires and the device takes the packet.
//! - **The shaper sees packets in arrival order.** The model decides a packet's fate
//!   when it arrives; TBF takes packets in the order netem lets them go. They differ only
//!   when jitter without netem's `rate` lets a later packet overtake an earlier one while
//!   a shaper is also set: the model then charges the bucket in arrival order (never
//!   faster than the rate, but the overtaking packet may wait for tokens the earlier one
//!   took, and the shaper's queue is counted approximately).
//! - **TBF's arithmetic.** The cost of a packet is `len * 10^9 / rate` rounded down;
//!   the kernel multiplies by a reciprocal (`psched_l2t_ns`) and can be one nanosecond
//!   lower. No `mtu`/`peakrate` (linkem's kernel backend sets none either).
//! - **Jitter** above `i32::MAX` ns (2.1 s) is capped, as netem caps it.
//! - **Duplicates that are lost or refused.** A duplicate lost on its own pass, or
//!   refused by a full queue, is reported as no duplicate (netem counts it as a drop);
//!   when the original is refused but its duplicate was queued, the duplicate is
//!   reported as the packet.
//! - **Reordered packets skip the shaper**, as in netem (`netem_dequeue` delivers its
//!   head queue before its tfifo and child).
//! - **`gap` without `reorder`** reorders nothing here. On the kernel, netem creates
//!   such a link with a reorder probability of 100% (netem's compatibility rule for a
//!   gap without TCA_NETEM_REORDER) but a change to it sends a probability of 0.

// Not used until the datapath lands.
#![allow(dead_code)]

mod delay;
mod loss;
mod netem;
mod shaper;
mod stream;
#[cfg(test)]
mod tests;

use crate::tc::impairment::LinkImpairment;
use crate::tc::netem as tc_netem;
use crate::tc::tbf::Tbf;

use netem::{Enqueued, Netem};
use shaper::Shaper;
use stream::Stream;

/// Nanoseconds on CLOCK_MONOTONIC.
pub(crate) type Nanos = u64;

/// Why a packet was dropped before it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropCause {
    /// Random or model-driven loss (`loss`, `loss_model`).
    Loss,
    /// The link's queue was full (`limit`, or the shaper's `queue_latency` / burst).
    QueueFull,
}

/// One copy of an admitted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Departure {
    /// When the copy leaves the link (CLOCK_MONOTONIC ns), never before the arrival.
    pub(crate) at: Nanos,
    /// The bit to flip (index into the frame, in bits from its first byte) when the copy
    /// is corrupted.
    pub(crate) corrupt_bit: Option<u32>,
    /// The copy was sent ahead of the delayed ones (netem's reordering).
    pub(crate) reordered: bool,
    /// The delay drawn for this copy (latency with jitter), before rate and queueing.
    pub(crate) delay: Nanos,
}

/// The fate of one wire packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Dropped; nothing is queued.
    Drop(DropCause),
    /// The packet, and a duplicate when `duplicate` is set.
    Send {
        /// The packet itself.
        first: Departure,
        /// Its duplicate, when one was made.
        duplicate: Option<Departure>,
    },
}

/// The seed of one link's stream in a network seeded with `network_seed`: the first
/// word of ChaCha8 stream number `(source << 32) | destination` under the network's key.
///
/// Each ordered pair of peers has its own stream, so what one link draws never moves
/// another's sequence, and the two directions of a pair differ.
pub(crate) fn link_seed(network_seed: u64, source: usize, destination: usize) -> u64 {
    Stream::for_link(network_seed, source, destination)
}

/// One link's model: its configuration, its random stream, and its queue state.
#[derive(Debug)]
pub(crate) struct LinkModel {
    impairment: LinkImpairment,
    /// The seed the stream started from (the impairment's own `seed` when it has one).
    seed: u64,
    /// The seed the caller gave (used again when the impairment's `seed` goes away).
    link_seed: u64,
    stream: Stream,
    /// netem's stage, when the impairment needs netem.
    netem: Option<Netem>,
    /// The token-bucket shaper, when the impairment has a bandwidth limit.
    shaper: Option<Shaper>,
    /// Copies admitted and not yet reported departed: packets, bytes.
    queued: (u32, u64),
}

impl LinkModel {
    /// A link with `impairment`, drawing from the stream seeded by `seed` (the network's
    /// [`link_seed`]), or by the impairment's own `seed` when it has one.
    ///
    /// The impairment should have passed [`LinkImpairment::validate`].
    pub(crate) fn new(impairment: &LinkImpairment, seed: u64) -> Self {
        let own = impairment.seed.unwrap_or(seed);
        let mut stream = Stream::new(own);
        let netem = impairment
            .needs_netem()
            .then(|| Netem::new(impairment, &mut stream));
        LinkModel {
            impairment: impairment.clone(),
            seed: own,
            link_seed: seed,
            stream,
            netem,
            shaper: Tbf::from_impairment(impairment).map(|tbf| Shaper::new(&tbf)),
            queued: (0, 0),
        }
    }

    /// The most wire packets a link with `impairment` can hold at once: netem's limit
    /// (when it has netem) plus the shaper's queue (its byte limit in the smallest
    /// frames a peer sends, 42 bytes: Ethernet, IPv4 and UDP headers with no payload).
    /// The engine bounds each link's queue by it, so memory follows the configured
    /// limits and the model, not a fixed count, decides which packet a full queue drops.
    pub(crate) fn capacity(impairment: &LinkImpairment) -> u64 {
        const SMALLEST_FRAME: u64 = 14 + 20 + 8;
        let netem = if impairment.needs_netem() {
            u64::from(tc_netem::effective_limit(impairment))
        } else {
            0
        };
        let shaper = Tbf::from_impairment(impairment).map_or(0, |tbf| {
            u64::from(tbf.limit_bytes()).div_ceil(SMALLEST_FRAME)
        });
        (netem + shaper).max(1)
    }

    /// Takes a new impairment for the packets that arrive from now on. What is queued
    /// keeps its departure time; the random stream and the shaper's state go on.
    ///
    /// What restarts is what netem restarts on a change (its gap counter, its loss
    /// model's state, its correlations' memories), and only when netem's settings
    /// change; the stream restarts only when the impairment's own `seed` changes.
    pub(crate) fn reconfigure(&mut self, impairment: &LinkImpairment) {
        if *impairment == self.impairment {
            return;
        }
        let old = std::mem::replace(&mut self.impairment, impairment.clone());
        if impairment.seed != old.seed {
            let own = impairment.seed.unwrap_or(self.link_seed);
            if own != self.seed {
                self.seed = own;
                self.stream = Stream::new(own);
            }
        }
        match (&mut self.netem, impairment.needs_netem()) {
            (_, false) => self.netem = None,
            (None, true) => self.netem = Some(Netem::new(impairment, &mut self.stream)),
            (Some(netem), true) => {
                let before = tc_netem::options(&old, tc_netem::effective_limit(&old));
                let after = tc_netem::options(impairment, tc_netem::effective_limit(impairment));
                if before != after {
                    netem.change(impairment, &mut self.stream);
                }
            }
        }
        match (&mut self.shaper, Tbf::from_impairment(impairment)) {
            (_, None) => self.shaper = None,
            (None, Some(tbf)) => self.shaper = Some(Shaper::new(&tbf)),
            (Some(shaper), Some(tbf)) => {
                if Tbf::from_impairment(&old) != Some(tbf) {
                    shaper.reconfigure(&tbf);
                }
            }
        }
    }

    /// Decides the fate of one wire packet of `wire_len` bytes (the whole Ethernet frame,
    /// as tc counts it) that arrives at `now`.
    ///
    /// Arrival times should not go backwards; the model takes them as they come.
    pub(crate) fn admit(&mut self, now: Nanos, wire_len: u32) -> Verdict {
        let verdict = self.decide(now, wire_len);
        if let Verdict::Send { first, duplicate } = &verdict {
            let copies = 1 + u32::from(duplicate.is_some());
            self.queued.0 = self.queued.0.saturating_add(copies);
            self.queued.1 = self
                .queued
                .1
                .saturating_add(u64::from(copies) * u64::from(wire_len));
            debug_assert!(first.at >= now);
        }
        verdict
    }

    fn decide(&mut self, now: Nanos, len: u32) -> Verdict {
        let Some(netem) = self.netem.as_mut() else {
            return match self.shaper.as_mut().map(|s| s.admit(now, len)) {
                Some(Err(cause)) => Verdict::Drop(cause),
                Some(Ok(at)) => Verdict::Send {
                    first: Departure {
                        at,
                        corrupt_bit: None,
                        reordered: false,
                        delay: 0,
                    },
                    duplicate: None,
                },
                None => Verdict::Send {
                    first: Departure {
                        at: now,
                        corrupt_bit: None,
                        reordered: false,
                        delay: 0,
                    },
                    duplicate: None,
                },
            };
        };
        netem.expire(now);
        let stream = &mut self.stream;
        let duplicated = netem.duplicates(stream);
        let lost = netem.loses(stream);
        match (duplicated, lost) {
            (false, true) => return Verdict::Drop(DropCause::Loss),
            (true, true) | (false, false) => {
                let first = Self::pass(netem, self.shaper.as_mut(), stream, now, len);
                return match first {
                    Ok(first) => Verdict::Send {
                        first,
                        duplicate: None,
                    },
                    Err(cause) => Verdict::Drop(cause),
                };
            }
            (true, false) => {}
        }
        // The clone goes through netem first, with duplication off: its own loss draw.
        let clone = if netem.loses(stream) {
            None
        } else {
            Self::pass(netem, self.shaper.as_mut(), stream, now, len).ok()
        };
        let original = Self::pass(netem, self.shaper.as_mut(), stream, now, len);
        match (original, clone) {
            (Ok(first), duplicate) => Verdict::Send { first, duplicate },
            (Err(_), Some(first)) => Verdict::Send {
                first,
                duplicate: None,
            },
            (Err(cause), None) => Verdict::Drop(cause),
        }
    }

    /// One copy through the rest of netem, then the shaper (unless reordered).
    fn pass(
        netem: &mut Netem,
        shaper: Option<&mut Shaper>,
        stream: &mut Stream,
        now: Nanos,
        len: u32,
    ) -> Result<Departure, DropCause> {
        let Enqueued {
            leaves,
            delay,
            corrupt_bit,
            reordered,
        } = netem.enqueue(now, len, stream)?;
        let at = match shaper {
            Some(shaper) if !reordered => shaper.admit(leaves, len)?,
            _ => leaves,
        };
        Ok(Departure {
            at,
            corrupt_bit,
            reordered,
            delay,
        })
    }

    /// A copy admitted earlier left the link (its departure time came): frees its place
    /// in the queue.
    ///
    /// Only [`LinkModel::queued`] depends on it; the model's own queue limits follow the
    /// departure times it gave, so fates do not depend on when the caller reports.
    pub(crate) fn departed(&mut self, wire_len: u32) {
        self.queued.0 = self.queued.0.saturating_sub(1);
        self.queued.1 = self.queued.1.saturating_sub(u64::from(wire_len));
    }

    /// Packets and bytes queued now (admitted, not yet departed).
    pub(crate) fn queued(&self) -> (u32, u64) {
        self.queued
    }

    /// Whether every packet meets the same fate: no loss, duplication, corruption,
    /// reordering, jitter or rate, only a constant delay (or none). The datapath may then
    /// keep offload super-packets whole instead of segmenting them.
    ///
    /// An explicit `limit` also makes a link non-uniform (it counts packets, so a
    /// super-packet would count as one); the automatic limit does not.
    pub(crate) fn is_uniform(&self) -> bool {
        let imp = &self.impairment;
        imp.jitter == 0
            && imp.loss == 0.0
            && imp.loss_model.is_none()
            && imp.duplicate == 0.0
            && imp.corrupt == 0.0
            && imp.reorder == 0.0
            && imp.bandwidth_mbit_s.is_none()
            && imp.netem_rate.is_none()
            && imp.limit.is_none()
    }
}
