//! The token-bucket shaper behind `bandwidth_mbit_s` (the kernel backend's TBF), with
//! its byte-limited queue (TBF's bfifo child).

use std::collections::VecDeque;

use crate::tc::tbf::Tbf;

use super::{DropCause, Nanos};

/// Nanoseconds to send `len` bytes at `rate` bytes/s, rounded down (`psched_l2t_ns`;
/// the kernel multiplies by a precomputed reciprocal, which may round one nanosecond
/// lower).
pub(crate) fn l2t(len: u64, rate: u64) -> u64 {
    (u128::from(len) * 1_000_000_000 / u128::from(rate.max(1))) as u64
}

/// TBF's state, as the kernel keeps it but folded into one number: `zero`, the time at
/// which the bucket was (or would have been) empty. The bucket holds
/// `min(buffer, t - zero)` nanoseconds' worth of tokens at time `t`, which is
/// `tbf_dequeue`'s `min(now - t_c, buffer) + tokens` capped at `buffer`.
#[derive(Debug, Clone)]
pub(crate) struct Shaper {
    /// Bytes per second (TBF's rate: `Rate::as_bytes_per_sec`).
    rate: u64,
    /// The bucket in bytes (TBF's `max_size`: a larger packet is dropped).
    burst: u32,
    /// The bucket in nanoseconds (TBF's `buffer`).
    buffer: u64,
    /// The queue limit in bytes (the bfifo's limit: `Tbf::limit_bytes`).
    limit: u64,
    /// See the type's docs; `i64::MIN` while the bucket has never been drawn from.
    zero: i64,
    /// The latest time the shaper has seen (an arrival or a departure).
    latest: Nanos,
    /// Departure time and length of each packet waiting in the queue, oldest first.
    queue: VecDeque<(Nanos, u32)>,
    /// Bytes in `queue`.
    backlog: u64,
}

impl Shaper {
    /// A shaper with a full bucket (as `tbf_init` leaves it) and an empty queue.
    pub(crate) fn new(tbf: &Tbf) -> Self {
        let mut shaper = Shaper {
            rate: 0,
            burst: 0,
            buffer: 0,
            limit: 0,
            zero: i64::MIN,
            latest: 0,
            queue: VecDeque::new(),
            backlog: 0,
        };
        shaper.configure(tbf);
        shaper
    }

    fn configure(&mut self, tbf: &Tbf) {
        self.rate = tbf.rate.as_bytes_per_sec().max(1);
        self.burst = tbf.burst;
        self.buffer = l2t(u64::from(tbf.burst), self.rate);
        self.limit = u64::from(tbf.limit_bytes());
    }

    /// The tokens at `t`, in nanoseconds at the current rate.
    fn level(&self, t: Nanos) -> u64 {
        let t = t as i64;
        (t.saturating_sub(self.zero).max(0) as u64).min(self.buffer)
    }

    /// Takes new settings. Queued packets keep their departures; the tokens in the
    /// bucket at the latest time the shaper saw are kept in bytes (capped at the new
    /// bucket) and from then on refill at the new rate.
    pub(crate) fn reconfigure(&mut self, tbf: &Tbf) {
        let full = self.zero == i64::MIN;
        let bytes = u128::from(self.level(self.latest)) * u128::from(self.rate) / 1_000_000_000;
        self.configure(tbf);
        if !full {
            let level = l2t(bytes as u64, self.rate).min(self.buffer);
            self.zero = self.latest as i64 - level as i64;
        }
    }

    /// A packet of `len` bytes reaches the shaper at `arrival`: when it leaves, or why
    /// it is dropped.
    ///
    /// A packet larger than the bucket is dropped (`tbf_enqueue`'s `max_size` check); so
    /// is one that would not fit the queue's byte limit with what still waits at its
    /// arrival (bfifo: `backlog + len > limit`). Otherwise it leaves once the bucket
    /// holds its length: `max(arrival, zero + cost)`.
    pub(crate) fn admit(&mut self, arrival: Nanos, len: u32) -> Result<Nanos, DropCause> {
        self.latest = self.latest.max(arrival);
        if len > self.burst {
            return Err(DropCause::QueueFull);
        }
        while let Some(&(at, bytes)) = self.queue.front() {
            if at > arrival {
                break;
            }
            self.queue.pop_front();
            self.backlog -= u64::from(bytes);
        }
        if self.backlog + u64::from(len) > self.limit {
            return Err(DropCause::QueueFull);
        }
        let cost = l2t(u64::from(len), self.rate) as i64;
        let ready = if self.zero == i64::MIN {
            i64::MIN
        } else {
            self.zero + cost
        };
        let departure = (arrival as i64).max(ready) as Nanos;
        // tbf_dequeue: tokens = min(buffer, level) - cost at the departure.
        let empty = departure as i64 - self.level(departure) as i64;
        self.zero = empty + cost;
        if departure > arrival {
            self.queue.push_back((departure, len));
            self.backlog += u64::from(len);
        }
        self.latest = self.latest.max(departure);
        Ok(departure)
    }

    /// Packets waiting in the shaper's queue (for tests: memory is bounded by the limit).
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.queue.len()
    }
}
