//! The departure queue: every copy waiting for its departure time, across all links of
//! one engine, in time order; copies due at the same nanosecond leave in the order they
//! were queued (a link's FIFO order is kept whenever its departure times are).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::model::Nanos;

#[derive(Debug)]
struct Entry<T> {
    at: Nanos,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // BinaryHeap is a max-heap: the earliest (time, then sequence) must be greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Items ordered by departure time, FIFO among equal times.
#[derive(Debug)]
pub(crate) struct Schedule<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for Schedule<T> {
    fn default() -> Self {
        Schedule {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> Schedule<T> {
    pub(crate) fn push(&mut self, at: Nanos, item: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    /// The earliest departure time.
    pub(crate) fn next_at(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest item if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Nanos) -> Option<T> {
        if self.heap.peek()?.at <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops every item for which `keep` is false.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        let mut keep = keep;
        self.heap.retain(|e| keep(&e.item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departures_leave_in_time_order_fifo_among_equals() {
        let mut s = Schedule::default();
        s.push(30, "c");
        s.push(10, "a1");
        s.push(20, "b");
        s.push(10, "a2");
        s.push(10, "a3");
        assert_eq!(s.next_at(), Some(10));
        assert_eq!(s.pop_due(9), None);
        let mut out = Vec::new();
        while let Some(x) = s.pop_due(25) {
            out.push(x);
        }
        assert_eq!(out, ["a1", "a2", "a3", "b"]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.next_at(), Some(30));
        s.retain(|x| *x != "c");
        assert_eq!(s.next_at(), None);
    }
}
