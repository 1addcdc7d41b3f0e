//! The userspace data plane: a switch in the test process that takes the hub's bridge
//! place and impairs every link per wire packet, for kernels without sch_netem.
//!
//! # Design
//!
//! ```text
//!  hub namespace                                  peer n namespace
//!  ┌────────────────────────────────────┐        ┌──────────────────┐
//!  │ engine thread (epoll)              │        │                  │
//!  │   AF_PACKET + vnet hdr ── p<n> ────┼─veth───┼─ eth0 (MAC fixed)│
//!  │   timerfd, eventfd                 │        └──────────────────┘
//!  └────────────────────────────────────┘
//! ```
//!
//! - **Ports.** Each peer keeps its `eth0`; the hub-side end `p<n>` is up and enslaved
//!   to nothing. The engine holds one AF_PACKET socket per hub-side end (see `port`),
//!   opened inside the hub namespace. AF_PACKET works in an unprivileged user
//!   namespace, where /dev/net/tun often does not, and with PACKET_VNET_HDR it passes
//!   offload super-packets (up to 64 KB) both ways: measured here 14.5 Gbit/s with
//!   offloads against 1.7 Gbit/s frame by frame.
//! - **Switching.** The source port names the source peer; the destination MAC names
//!   the destination peer (peers' MACs are fixed by the network and given to
//!   [`Engine::add_port`]). Broadcast and multicast frames are flooded to every other
//!   port, each copy through its own link. Unicast to an unknown MAC reaches nobody.
//! - **Per wire packet.** Each link (source -> destination) has a
//!   [`LinkModel`](model::LinkModel) deciding every wire packet's fate. A super-packet
//!   asks the model once per segment it stands for; when all segments meet the same
//!   plain fate (the case of unimpaired, delay-only links) it travels whole, otherwise
//!   it is cut in software (`segment`) and each segment goes its own way. Counters and
//!   the model's queue always see wire packets and wire bytes.
//! - **Checksums.** veth leaves TCP (and more) CHECKSUM_PARTIAL; a frame forwarded
//!   whole keeps its NEEDS_CSUM header, which packet_snd() turns back into
//!   CHECKSUM_PARTIAL, so the receiving stack trusts it as it would on veth. Segments
//!   get complete checksums. A corrupted copy gets its checksum completed first, then
//!   the bit flipped, as netem does (skb_checksum_help() in netem_enqueue()), so the
//!   receiver sees a bad checksum.
//! - **Control traffic** the kernel sends by itself (ARP, IPv6 neighbour and router
//!   discovery, MLD, IGMP) is switched at once, past the model: it never draws from a
//!   link's random stream, so it never shifts a link's sequence of fates, and it is
//!   neither delayed, lost nor cut. Cuts leave it alone on purpose: the kernel
//!   backend's partitions are u32 filters on IP destinations, which ARP passes too,
//!   and a heal then works at once, without waiting for failed neighbour entries to
//!   be retried. Links count it separately (`control_packets`).
//! - **Cuts.** A cut link drops at admission (counted as dropped by partition); what
//!   is already queued still departs.
//! - **Time.** Departures are scheduled on CLOCK_MONOTONIC with a timerfd
//!   (TFD_TIMER_ABSTIME) and a timer slack of 1 ns (PR_SET_TIMERSLACK); tokio's timer
//!   has millisecond granularity and is not used here. Sleeps end some tens of
//!   microseconds late, so the timer fires a little early and the thread polls the last
//!   stretch: a margin that follows the measured lateness of the timer's wakeups
//!   ([`switch::Margin`], 200 us at first). After traffic the thread also polls a
//!   short while ([`switch::POLL_AFTER_ACTIVITY`]) to catch answers without a wakeup.
//!   Nothing queued and nothing arriving: it sleeps in epoll_wait, costing no CPU.
//!   A frame's delay counts from the kernel's stamp of its arrival at the port, not
//!   from when the thread got to read it (see `clock`): a thread descheduled for a
//!   while sends late what it owes but does not push later packets back.
//! - **Bounded queues.** Every queued copy counts against its link's limit (the
//!   impairment's `limit`, netem's 1000 by default) as the wire packets it stands for,
//!   whatever the model answers, so memory is bounded by configuration, not load.
//! - **Ports going away.** When a peer's namespace dies its veth goes, the socket
//!   reports ENETDOWN (packet_notifier() on NETDEV_UNREGISTER) and the port is dropped;
//!   the engine goes on. Copies still queued for it are counted unreachable.
//! - **Capture.** With a capture configured, every wire packet is recorded on its
//!   link's interface (`1->2`) at admission with its fate (see `recorder`), after it
//!   was sent when it leaves at once.
//! - **One thread.** A single thread per engine (per network) waits on every port, a
//!   command eventfd and the timer. Commands apply between two frames, so a new
//!   impairment applies to the next packet and leaves queued copies alone.

// Not wired into the network yet: the backend seam that uses it lands separately.
#![allow(dead_code)]

pub(crate) mod clock;
pub(crate) mod counters;
pub(crate) mod frame;
pub(crate) mod lab;
pub(crate) mod measure;
pub(crate) mod model;
pub(crate) mod port;
pub(crate) mod recorder;
pub(crate) mod sched;
pub(crate) mod segment;
pub(crate) mod switch;

#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

pub(crate) use counters::LinkCounters;
use port::PacketSocket;
use recorder::Recorder;
use switch::{Command, Fds, Registry, Switch};

use crate::capture::CaptureConfig;
use crate::error::{Error, Result};
use crate::namespace::{NetNs, NsThread};
use crate::network::{Link, PeerId};
use crate::tc::impairment::LinkImpairment;

/// A running engine: its thread and the way to command it. Dropping it stops the
/// thread, drops whatever is queued and closes every descriptor; drop returns when
/// all of that is done.
#[derive(Debug)]
pub(crate) struct Engine {
    commands: Option<mpsc::Sender<Command>>,
    wake: Arc<OwnedFd>,
    registry: Arc<Registry>,
    receive_drops: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<NsThread<()>>,
}

impl Engine {
    /// Starts an engine thread named `name` with no ports, writing `capture` when
    /// given (see `recorder`; the file is complete once the engine has dropped).
    pub(crate) fn start(name: &str, capture: Option<&CaptureConfig>) -> Result<Engine> {
        let fds = Fds::new().map_err(|e| Error::io("create the engine's descriptors", e))?;
        let recorder = capture.map(Recorder::create).transpose()?;
        let wake = Arc::clone(&fds.wake);
        let registry = Arc::new(Registry::default());
        let (commands, receiver) = mpsc::channel();
        let receive_drops = Arc::default();
        let switch = Switch::new(
            fds,
            receiver,
            Arc::clone(&registry),
            recorder,
            Arc::clone(&receive_drops),
        );
        // An NsThread: its join returns only once the kernel has let go of the thread
        // (pthread_join returns earlier, see namespace::NsThread), so a dropped network
        // leaves no engine thread behind, not even for a moment.
        let thread = NsThread::spawn(name.to_string(), move || switch.run())
            .map_err(|e| Error::io("spawn the engine thread", e))?;
        Ok(Engine {
            commands: Some(commands),
            wake,
            registry,
            receive_drops,
            thread: Some(thread),
        })
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .as_ref()
            .ok_or(Error::ShutDown)?
            .send(command)
            .map_err(|_| Error::ShutDown)?;
        switch::wake(self.wake.as_raw_fd());
        Ok(())
    }

    async fn ask<T>(&self, command: Command, reply: oneshot::Receiver<T>) -> Result<T> {
        self.send(command)?;
        reply.await.map_err(|_| Error::ShutDown)
    }

    /// Adds `peer`'s port: opens a packet socket on interface `ifindex` of `hub_ns`
    /// (the hub-side veth end, which must be up: packet_do_bind() reports ENETDOWN for
    /// a down interface) and switches frames for `peer_mac` to it. Returns when the
    /// engine thread has taken it.
    pub(crate) async fn add_port(
        &self,
        peer: PeerId,
        hub_ns: &Arc<NetNs>,
        ifindex: u32,
        peer_mac: [u8; 6],
    ) -> Result<()> {
        let socket = PacketSocket::open_in(hub_ns, ifindex, &format!("peer {peer}'s port"))?;
        let (ack, reply) = oneshot::channel();
        self.ask(
            Command::AddPort {
                peer,
                socket,
                mac: peer_mac,
                ack,
            },
            reply,
        )
        .await?
    }

    /// Removes `peer`'s port and closes its socket (nothing if it has none). Copies
    /// still queued for it are counted unreachable when their time comes.
    pub(crate) async fn remove_port(&self, peer: PeerId) -> Result<()> {
        let (ack, reply) = oneshot::channel();
        self.ask(Command::RemovePort { peer, ack }, reply).await
    }

    /// Configures `link`; applies to the next packet, queued copies keep their times.
    /// The first configuration creates the link's model with `seed`; later ones keep
    /// its random stream and queue state (`LinkModel::reconfigure`), so `seed` is
    /// used once per link. Returns when the engine thread has taken it. The caller
    /// validates `impairment` first.
    pub(crate) async fn set_link(
        &self,
        link: Link,
        impairment: &LinkImpairment,
        seed: u64,
    ) -> Result<()> {
        let (ack, reply) = oneshot::channel();
        self.ask(
            Command::SetLink {
                link,
                impairment: Box::new(impairment.clone()),
                seed,
                ack,
            },
            reply,
        )
        .await
    }

    /// Cuts (`true`) or heals `link`. Returns when the engine thread has taken it.
    pub(crate) async fn set_cut(&self, link: Link, cut: bool) -> Result<()> {
        let (ack, reply) = oneshot::channel();
        self.ask(Command::SetCut { link, cut, ack }, reply).await
    }

    /// `link`'s counters now (all zero for a link that never carried anything). Never
    /// waits for the engine thread.
    pub(crate) fn stats(&self, link: Link) -> LinkCounters {
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&link)
            .map(|c| c.snapshot())
            .unwrap_or_default()
    }
}

impl Engine {
    /// Frames the kernel dropped on the ports before the engine read them (a full
    /// socket receive buffer, PACKET_STATISTICS), summed over every port. Read each
    /// time the engine goes to sleep, so it is current once traffic has stopped.
    pub(crate) fn receive_drops(&self) -> u64 {
        self.receive_drops
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Hanging up is the stop signal: the thread sees the channel disconnected on
        // its next wakeup and returns, dropping its sockets and queued copies.
        drop(self.commands.take());
        switch::wake(self.wake.as_raw_fd());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
