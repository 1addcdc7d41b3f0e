//! Per-link counters: written by the engine thread, read by anyone at any time.
//!
//! Each counter is an atomic with a single writer (the engine thread), so reading
//! never stops the data path; a snapshot taken while packets flow may be a few packets
//! apart between fields, each field is exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one link's counters. Packets are wire packets (at most one MTU each;
/// a super-packet counts as its segments), bytes are whole Ethernet frames, as tc
/// counts them.
///
/// Control traffic the kernel sends by itself (ARP, neighbour and router discovery,
/// MLD, IGMP) passes the link unimpaired and is counted only in `control_packets`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LinkCounters {
    /// Packets that entered the link (before loss, cut or a full queue).
    pub(crate) sent_packets: u64,
    /// Bytes that entered the link.
    pub(crate) sent_bytes: u64,
    /// Copies handed to the destination (duplicates included).
    pub(crate) delivered_packets: u64,
    /// Bytes handed to the destination.
    pub(crate) delivered_bytes: u64,
    /// Dropped by the loss model.
    pub(crate) dropped_loss: u64,
    /// Dropped because the link's queue was full.
    pub(crate) dropped_queue: u64,
    /// Dropped because the link was cut.
    pub(crate) dropped_partition: u64,
    /// Dropped at departure because the destination's port was gone or refused it.
    pub(crate) dropped_unreachable: u64,
    /// Extra copies made by duplication.
    pub(crate) duplicated: u64,
    /// Copies with a flipped bit.
    pub(crate) corrupted: u64,
    /// Copies sent ahead of the delayed ones.
    pub(crate) reordered: u64,
    /// Copies queued now.
    pub(crate) queued_packets: u64,
    /// Bytes queued now.
    pub(crate) queued_bytes: u64,
    /// Control frames switched past the impairments.
    pub(crate) control_packets: u64,
}

impl LinkCounters {
    /// Every copy is accounted for: what entered, plus duplicates, is delivered,
    /// dropped or still queued.
    pub(crate) fn balanced(&self) -> bool {
        self.sent_packets + self.duplicated
            == self.delivered_packets
                + self.dropped_loss
                + self.dropped_queue
                + self.dropped_partition
                + self.dropped_unreachable
                + self.queued_packets
    }
}

/// The live counters of one link.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub(crate) sent_packets: AtomicU64,
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) delivered_packets: AtomicU64,
    pub(crate) delivered_bytes: AtomicU64,
    pub(crate) dropped_loss: AtomicU64,
    pub(crate) dropped_queue: AtomicU64,
    pub(crate) dropped_partition: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) corrupted: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) queued_packets: AtomicU64,
    pub(crate) queued_bytes: AtomicU64,
    pub(crate) control_packets: AtomicU64,
}

/// Adds to a counter that only the engine thread writes: a load and a store, no
/// read-modify-write bus lock on the data path.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts from a single-writer counter.
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

impl AtomicCounters {
    pub(crate) fn snapshot(&self) -> LinkCounters {
        LinkCounters {
            sent_packets: self.sent_packets.load(Relaxed),
            sent_bytes: self.sent_bytes.load(Relaxed),
            delivered_packets: self.delivered_packets.load(Relaxed),
            delivered_bytes: self.delivered_bytes.load(Relaxed),
            dropped_loss: self.dropped_loss.load(Relaxed),
            dropped_queue: self.dropped_queue.load(Relaxed),
            dropped_partition: self.dropped_partition.load(Relaxed),
            dropped_unreachable: self.dropped_unreachable.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            corrupted: self.corrupted.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            queued_packets: self.queued_packets.load(Relaxed),
            queued_bytes: self.queued_bytes.load(Relaxed),
            control_packets: self.control_packets.load(Relaxed),
        }
    }
}
