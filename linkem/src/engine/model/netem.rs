//! The netem stage of a link: duplication, loss, corruption, queue limit, reordering,
//! delay with jitter and netem's own `rate`, in `netem_enqueue`'s order (Linux 6.x).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::tc::dist;
use crate::tc::impairment::LinkImpairment;
use crate::tc::netem::{effective_limit, percent};

use super::delay::tabledist;
use super::loss::Loss;
use super::shaper::l2t;
use super::stream::{Correlated, Stream};
use super::{DropCause, Nanos};

/// What netem decided for one copy that entered its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Enqueued {
    /// When netem lets it go (its `time_to_send`, never before the arrival).
    pub(crate) leaves: Nanos,
    /// The delay drawn (`tabledist`), 0 when negative or reordered.
    pub(crate) delay: Nanos,
    /// The bit to flip, when corrupted.
    pub(crate) corrupt_bit: Option<u32>,
    /// Sent at once, ahead of the delayed packets.
    pub(crate) reordered: bool,
}

/// netem's settings and state (`struct netem_sched_data`).
#[derive(Debug, Clone)]
pub(crate) struct Netem {
    latency: i64,
    jitter: i32,
    table: Option<&'static [i16]>,
    duplicate: u32,
    corrupt: u32,
    reorder: u32,
    gap: u32,
    /// netem's `rate` in bytes per second.
    rate: Option<u64>,
    limit: u32,
    loss: Loss,
    delay_cor: Correlated,
    dup_cor: Correlated,
    reorder_cor: Correlated,
    corrupt_cor: Correlated,
    /// netem's `counter`: delayed packets since the last reordered one.
    counter: u32,
    /// `time_to_send` of each packet in netem's time-ordered queue (tfifo).
    pending: BinaryHeap<Reverse<Nanos>>,
    /// The latest `time_to_send` in `pending` (netem's "last" packet, for `rate`).
    last: Nanos,
}

impl Netem {
    /// netem as `netem_init` / `netem_change` set it up from linkem's options.
    pub(crate) fn new(imp: &LinkImpairment, stream: &mut Stream) -> Self {
        let mut netem = Netem {
            latency: 0,
            jitter: 0,
            table: None,
            duplicate: 0,
            corrupt: 0,
            reorder: 0,
            gap: 0,
            rate: None,
            limit: 0,
            loss: Loss::new(imp, stream),
            delay_cor: Correlated::new(0.0, stream),
            dup_cor: Correlated::new(0.0, stream),
            reorder_cor: Correlated::new(0.0, stream),
            corrupt_cor: Correlated::new(0.0, stream),
            counter: 0,
            pending: BinaryHeap::new(),
            last: 0,
        };
        netem.change(imp, stream);
        netem
    }

    /// netem_change with the options linkem sends (`crate::tc::netem::change_options`):
    /// every setting is replaced, `counter` restarts, the loss model restarts in its
    /// first state, and every correlation's memory is drawn anew (linkem always sends
    /// CORR, REORDER and CORRUPT on a change). What is queued stays queued.
    pub(crate) fn change(&mut self, imp: &LinkImpairment, stream: &mut Stream) {
        self.latency = i64::from(imp.latency) * 1000;
        // netem_change: jitter = min(abs(jitter), INT_MAX) nanoseconds.
        self.jitter = i32::try_from(u64::from(imp.jitter) * 1000).unwrap_or(i32::MAX);
        self.table = dist::table(imp.jitter_distribution);
        self.duplicate = percent(imp.duplicate);
        self.corrupt = percent(imp.corrupt);
        // linkem sends reordering with gap 1 when no gap is given (as tc does); a gap
        // without a reorder probability reorders nothing (see the module docs).
        self.reorder = percent(imp.reorder);
        self.gap = if imp.reorder > 0.0 { imp.gap.max(1) } else { 0 };
        self.rate = imp.netem_rate.map(|r| r.as_bytes_per_sec().max(1));
        self.limit = effective_limit(imp);
        self.loss = Loss::new(imp, stream);
        self.delay_cor = Correlated::new(imp.latency_correlation, stream);
        self.dup_cor = Correlated::new(imp.duplicate_correlation, stream);
        self.reorder_cor = Correlated::new(imp.reorder_correlation, stream);
        self.corrupt_cor = Correlated::new(imp.corrupt_correlation, stream);
        self.counter = 0;
    }

    /// Forgets the packets netem has let go by `now`.
    pub(crate) fn expire(&mut self, now: Nanos) {
        while let Some(&Reverse(at)) = self.pending.peek() {
            if at > now {
                break;
            }
            self.pending.pop();
        }
    }

    /// The duplication draw: `q->duplicate && q->duplicate >= get_crandom(&q->dup_cor)`.
    pub(crate) fn duplicates(&mut self, stream: &mut Stream) -> bool {
        self.dup_cor.hit(self.duplicate, stream)
    }

    /// The loss draw (`loss_event`).
    pub(crate) fn loses(&mut self, stream: &mut Stream) -> bool {
        self.loss.lost(stream)
    }

    /// The rest of `netem_enqueue` for one copy of `len` bytes arriving at `now`, after
    /// duplication and loss: corruption, the queue limit, then reordering or the delay
    /// (with `rate`).
    pub(crate) fn enqueue(
        &mut self,
        now: Nanos,
        len: u32,
        stream: &mut Stream,
    ) -> Result<Enqueued, DropCause> {
        let corrupt_bit = if self.corrupt_cor.hit(self.corrupt, stream) && len > 0 {
            // netem flips bit `below(8)` of byte `below(headlen)`: one bit uniform in
            // the frame, as here.
            Some(stream.below(u64::from(len) * 8) as u32)
        } else {
            None
        };
        if self.pending.len() >= self.limit as usize {
            return Err(DropCause::QueueFull);
        }
        let delayed = self.gap == 0
            || self.counter < self.gap - 1
            || self.reorder < self.reorder_cor.next(stream);
        if !delayed {
            // Put at the head of netem's queue: it goes before every delayed packet,
            // and (netem_dequeue serves that queue before the tfifo and the child)
            // without passing the shaper.
            self.counter = 0;
            return Ok(Enqueued {
                leaves: now,
                delay: 0,
                corrupt_bit,
                reordered: true,
            });
        }
        let delay = tabledist(
            self.latency,
            self.jitter,
            &mut self.delay_cor,
            stream,
            self.table,
        );
        let mut send = now as i128 + i128::from(delay);
        if let Some(rate) = self.rate {
            // The last packet still queued is the reference: it goes out first, this
            // one `len / rate` after it or after its own delay, whichever is later.
            if !self.pending.is_empty() {
                send = send.max(i128::from(self.last));
            }
            send += i128::from(l2t(u64::from(len), rate));
        }
        self.counter = self.counter.saturating_add(1);
        let leaves = send.max(i128::from(now)) as Nanos;
        if self.pending.is_empty() || leaves > self.last {
            self.last = leaves;
        }
        self.pending.push(Reverse(leaves));
        Ok(Enqueued {
            leaves,
            delay: delay.max(0) as Nanos,
            corrupt_bit,
            reordered: false,
        })
    }

    /// Packets in netem's queue (for tests: memory is bounded by the limit).
    #[cfg(test)]
    pub(crate) fn in_queue(&self) -> usize {
        self.pending.len()
    }
}
