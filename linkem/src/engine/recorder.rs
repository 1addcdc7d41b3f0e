//! The engine's packet capture: what every link did to every wire packet, written with
//! [`crate::capture`].
//!
//! - **One interface per link direction**, named `1->2` and described "peer 1 to peer
//!   2", added when the link first carries a frame, so a capture of a big network
//!   describes only the links that were used, in the order they were first used.
//! - **One record per wire packet, at admission**, stamped with the time the engine
//!   took it, annotated with its fate: `dropped: loss`, `dropped: queue full`,
//!   `dropped: partition`, or `delivered after` the delay it was given (latency, jitter
//!   and the rate's queueing, as scheduled), `duplicate` for the extra copy (a record of
//!   its own), the bit flipped in a corrupted copy (the record holds the corrupted
//!   bytes), `reordered`. A super-packet that crosses the link whole (every segment met
//!   the same plain fate) is recorded as the segments it stands for, cut in software
//!   after it was sent, so the capture's unit is the counters' unit: per link, the
//!   annotated records are `sent_packets + duplicated` of [`LinkCounters`]
//!   (`super::LinkCounters`), until the capture reaches its cap. Once it has, super-packets
//!   are no longer cut for it.
//! - **Control traffic** (ARP, neighbour and router discovery, MLD, IGMP), which passes
//!   past the model, is recorded too, without a comment: the records without one are
//!   the link's `control_packets`.
//! - What the model cannot know at admission is not in the capture: a copy still
//!   queued when the network shuts down, or one whose destination port vanished before
//!   it left (`dropped_unreachable`), reads as delivered.
//!
//! Recording happens on the engine thread, after the frame it records was sent when it
//! leaves at once, so a record (under a microsecond; a cut super-packet a few tens)
//! never delays the packet it describes, only the engine's next frame.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::frame::{VnetHdr, VNET_HDR_LEN};
use super::model::Nanos;
use super::segment::{self, Wire};
use crate::capture::{Annotation, Capture, CaptureConfig, IfaceId, LinkType};
use crate::error::Result;
use crate::network::Link;

/// The capture of one engine.
#[derive(Debug)]
pub(crate) struct Recorder {
    capture: Capture,
    ifaces: HashMap<Link, IfaceId>,
    /// CLOCK_REALTIME at the monotonic instant `epoch.1`: admission times are
    /// monotonic, capture timestamps wall-clock.
    epoch: (SystemTime, Nanos),
    /// The capture has left something out (its cap): cutting super-packets for it
    /// would be work for nothing.
    full: bool,
}

impl Recorder {
    /// Creates the capture file (an error of the engine's start).
    pub(crate) fn create(config: &CaptureConfig) -> Result<Recorder> {
        let capture = Capture::create(config)?;
        Ok(Recorder {
            capture,
            ifaces: HashMap::new(),
            epoch: (SystemTime::now(), super::clock::now()),
            full: false,
        })
    }

    fn iface(&mut self, link: Link) -> IfaceId {
        let capture = &mut self.capture;
        *self.ifaces.entry(link).or_insert_with(|| {
            capture.add_interface(
                &format!("{}->{}", link.source, link.destination),
                &format!("peer {} to peer {}", link.source, link.destination),
                LinkType::Ethernet,
            )
        })
    }

    fn stamp(&self, at: Nanos) -> SystemTime {
        self.epoch.0 + Duration::from_nanos(at.saturating_sub(self.epoch.1))
    }

    /// Records `pkt` (virtio-net header first), which stands for `wire`, as it entered
    /// `link` at `now`: one record per wire packet, each with `annotation` (`None` for
    /// control traffic).
    pub(crate) fn record(
        &mut self,
        link: Link,
        now: Nanos,
        pkt: &[u8],
        wire: Wire,
        annotation: Option<&Annotation>,
    ) {
        let iface = self.iface(link);
        let at = self.stamp(now);
        let frame = &pkt[VNET_HDR_LEN.min(pkt.len())..];
        if wire.count > 1 && !self.full {
            if let Some(segments) = VnetHdr::parse(pkt).and_then(|h| segment::segment(&h, frame)) {
                for seg in &segments {
                    let seg = &seg[VNET_HDR_LEN..];
                    self.capture
                        .record(iface, at, seg, seg.len(), None, annotation);
                }
                self.full = self.capture.summary().omitted > 0;
                return;
            }
        }
        if self.full {
            // Past the cap nothing is written; each wire packet is counted as left out.
            for _ in 0..wire.count {
                self.capture
                    .record(iface, at, frame, frame.len(), None, annotation);
            }
            return;
        }
        // A single wire packet, or a frame the engine cannot cut (one record).
        self.capture
            .record(iface, at, frame, frame.len(), None, annotation);
    }

    /// Writes the interfaces' statistics and closes the file. A failure is logged: the
    /// engine is going away and has nobody to tell.
    pub(crate) fn finish(self) {
        match self.capture.finish() {
            Ok(summary) => tracing::debug!(capture = %summary, "engine capture written"),
            Err(e) => tracing::warn!("the engine's capture is incomplete: {e}"),
        }
    }
}
