//! The engine thread: ports, links, switching, the departure queue and the clock.
//!
//! One thread per engine waits in epoll(7) on every port's socket, an eventfd for
//! commands and a timerfd for the next departure, so it sleeps when nothing is queued
//! and nothing arrives (an idle network costs no CPU).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::clock::{now, Stamps};
use super::counters::{add, sub, AtomicCounters};
use super::frame::{self, Destination, Mac, VnetHdr, F_NEEDS_CSUM, VNET_HDR_LEN};
use super::model::{DropCause, LinkModel, Nanos, Verdict};
use super::port::{PacketSocket, MAX_FRAME};
use super::recorder::Recorder;
use super::sched::Schedule;
use super::segment::{self, Wire};
use crate::capture::{Annotation, DropReason};
use crate::error::{Error, Result};
use crate::namespace::NsThread;
use crate::network::{Link, PeerId};
use crate::tc::impairment::LinkImpairment;

/// How long before a departure the timer fires at first; the thread polls (without
/// sleeping) for the rest. The margin then follows the timer's measured lateness
/// ([`Margin`]): measured on a loaded 2-core VM, a timerfd wakeup with a timer slack
/// of 1 ns ends about 25 us late (p90 40 us) whatever the sleep's length, with rare
/// multi-millisecond outliers when the thread is not scheduled (no margin helps then).
pub(crate) const SPIN_BEFORE_DEADLINE: Nanos = 200_000;

/// The adaptive margin's bounds: never less (a wakeup is never punctual to the
/// microsecond), never more (an outlier must not turn the engine into a spinner).
const MARGIN_MIN: Nanos = 30_000;
const MARGIN_MAX: Nanos = 500_000;

/// How long before a departure the timer fires: twice the recent average lateness of
/// the timer's wakeups plus 20 us, within [`MARGIN_MIN`, `MARGIN_MAX`]. Lateness
/// samples are clipped at `MARGIN_MAX` so that one descheduled wakeup moves it little.
#[derive(Debug)]
pub(crate) struct Margin {
    /// Average lateness, in ns, times 8 (an exponential average with weight 1/8).
    late_x8: Nanos,
}

impl Default for Margin {
    fn default() -> Self {
        // Start where the fixed margin was: (2 * 90 us + 20 us) = 200 us.
        Margin {
            late_x8: 90_000 * 8,
        }
    }
}

impl Margin {
    pub(crate) fn now(&self) -> Nanos {
        (2 * (self.late_x8 / 8) + 20_000).clamp(MARGIN_MIN, MARGIN_MAX)
    }

    /// The timer armed for `armed` fired and the thread ran at `woke`.
    pub(crate) fn observe(&mut self, armed: Nanos, woke: Nanos) {
        let late = woke.saturating_sub(armed).min(MARGIN_MAX);
        self.late_x8 = self.late_x8 - self.late_x8 / 8 + late;
    }
}

/// After a frame was received or a queued copy departed, the thread keeps polling this long before it sleeps:
/// the answer to a request usually comes back within tens of microseconds, and
/// catching it without a wakeup is what keeps the added round-trip time small. Bounded,
/// so an idle engine sleeps.
pub(crate) const POLL_AFTER_ACTIVITY: Nanos = 100_000;

/// The queue bound of a link without an impairment (nothing waits there: packets leave
/// at once); an impaired link's is [`LinkModel::capacity`].
const DEFAULT_LIMIT: u64 = 1000;

/// Frames taken from one port before the others get their turn.
const RECV_BATCH: usize = 64;

const TOKEN_WAKE: u64 = 0;
const TOKEN_TIMER: u64 = 1;
const TOKEN_PORT: u64 = 2;

/// The counters of every link that has seen traffic or configuration.
pub(crate) type Registry = Mutex<HashMap<Link, Arc<AtomicCounters>>>;

/// What the engine's owner asks of its thread.
#[derive(Debug)]
pub(crate) enum Command {
    AddPort {
        peer: PeerId,
        socket: PacketSocket,
        mac: Mac,
        ack: oneshot::Sender<Result<()>>,
    },
    RemovePort {
        peer: PeerId,
        ack: oneshot::Sender<()>,
    },
    SetLink {
        link: Link,
        impairment: Box<LinkImpairment>,
        seed: u64,
        ack: oneshot::Sender<()>,
    },
    SetCut {
        link: Link,
        cut: bool,
        ack: oneshot::Sender<()>,
    },
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The descriptors the thread waits on, created by the owner so that a failure is an
/// error of `Engine::start`.
#[derive(Debug)]
pub(crate) struct Fds {
    pub(crate) epoll: OwnedFd,
    pub(crate) timer: OwnedFd,
    pub(crate) wake: Arc<OwnedFd>,
}

impl Fds {
    pub(crate) fn new() -> io::Result<Fds> {
        // SAFETY: plain system calls; each result is checked before it is owned.
        unsafe {
            let epoll = OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let timer = OwnedFd::from_raw_fd(check(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?);
            let wake = OwnedFd::from_raw_fd(check(libc::eventfd(
                0,
                libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
            ))?);
            let fds = Fds {
                epoll,
                timer,
                wake: Arc::new(wake),
            };
            epoll_add(fds.epoll.as_raw_fd(), fds.wake.as_raw_fd(), TOKEN_WAKE)?;
            epoll_add(fds.epoll.as_raw_fd(), fds.timer.as_raw_fd(), TOKEN_TIMER)?;
            Ok(fds)
        }
    }
}

fn epoll_add(epoll: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is valid for the call.
    check(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    Ok(())
}

fn epoll_del(epoll: RawFd, fd: RawFd) {
    // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

/// Reads an eventfd or timerfd to reset it.
fn drain(fd: RawFd) {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
}

/// Wakes the thread (the owner calls this after queueing a command).
pub(crate) fn wake(fd: RawFd) {
    let v = 1u64;
    // SAFETY: writes 8 bytes from `v`.
    unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
}

#[derive(Debug)]
struct Port {
    socket: PacketSocket,
    mac: Mac,
    /// Its socket has dropped frames (said once).
    dropped: bool,
    /// Frames were received since its drop counter was last read.
    unread: bool,
    /// When its latest frame arrived.
    arrived: Nanos,
}

#[derive(Debug)]
struct LinkState {
    counters: Arc<AtomicCounters>,
    /// `None` until the link is configured: a plain wire, every frame delivered at once.
    model: Option<LinkModel>,
    cut: bool,
    /// The datapath's own bound on queued copies, whatever the model says.
    limit: u64,
}

/// A copy waiting for its departure time.
#[derive(Debug)]
struct Queued {
    link: Link,
    /// Virtio-net header and frame.
    buf: Vec<u8>,
    wire: Wire,
}

/// The engine thread's state.
#[derive(Debug)]
pub(crate) struct Switch {
    fds: Fds,
    commands: mpsc::Receiver<Command>,
    registry: Arc<Registry>,
    ports: BTreeMap<PeerId, Port>,
    macs: HashMap<Mac, PeerId>,
    links: HashMap<Link, LinkState>,
    schedule: Schedule<Queued>,
    /// The absolute time the timerfd is armed for.
    armed: Option<Nanos>,
    /// Poll without sleeping until this time (see [`POLL_AFTER_ACTIVITY`]).
    poll_until: Nanos,
    /// How early the timer fires before a departure.
    margin: Margin,
    /// Arrival times from the ports' receive stamps.
    stamps: Stamps,
    /// Frames the ports' sockets dropped (full receive buffers), for the owner.
    receive_drops: Arc<std::sync::atomic::AtomicU64>,
    /// The network's capture, when it has one.
    recorder: Option<Recorder>,
}

impl Switch {
    pub(crate) fn new(
        fds: Fds,
        commands: mpsc::Receiver<Command>,
        registry: Arc<Registry>,
        recorder: Option<Recorder>,
        receive_drops: Arc<std::sync::atomic::AtomicU64>,
    ) -> Switch {
        Switch {
            fds,
            commands,
            registry,
            ports: BTreeMap::new(),
            macs: HashMap::new(),
            links: HashMap::new(),
            schedule: Schedule::default(),
            armed: None,
            poll_until: 0,
            margin: Margin::default(),
            stamps: Stamps::default(),
            receive_drops,
            recorder,
        }
    }

    /// Runs until the owner hangs up. Queued copies are dropped then; every socket
    /// closes when `self` drops.
    pub(crate) fn run(mut self) {
        self.serve();
        if let Some(recorder) = self.recorder.take() {
            recorder.finish();
        }
        // Each port's close waits for an RCU grace period (synchronize_net() in
        // packet_release()), 8-16 ms on this machine: one after another they were most
        // of a userspace network's teardown. Closed on a thread each, the waits overlap
        // (concurrent synchronize_rcu() callers share grace periods). The threads are
        // NsThreads, so the engine's drop returns only once the kernel has let go of
        // them too. The rest of `self` closes when it drops.
        close_concurrently(std::mem::take(&mut self.ports).into_values());
    }

    fn serve(&mut self) {
        // A timer slack of 1 ns: the default 50 us would be added to every sleep
        // (hrtimer slack, PR_SET_TIMERSLACK in prctl(2)).
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        let mut buf = vec![0u8; MAX_FRAME];
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        loop {
            let now = now();
            self.depart(now);
            let timeout = self.timeout(now);
            if timeout < 0 {
                // Going to sleep: the ports that received since the last look say what
                // their kernel buffers dropped (off the busy path, and read before the
                // network goes idle, so the count is current once traffic stops).
                self.read_drops();
            }
            // SAFETY: `events` is valid for its length.
            let n = unsafe {
                libc::epoll_wait(
                    self.fds.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout,
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("the engine's epoll_wait failed; the engine stops");
                return;
            }
            for ev in &events[..n as usize] {
                match ev.u64 {
                    TOKEN_WAKE => {
                        drain(self.fds.wake.as_raw_fd());
                        if !self.commands() {
                            return;
                        }
                    }
                    TOKEN_TIMER => {
                        drain(self.fds.timer.as_raw_fd());
                        if let Some(armed) = self.armed.take() {
                            self.margin.observe(armed, self::now());
                        }
                    }
                    token => {
                        let peer = PeerId((token - TOKEN_PORT) as usize);
                        let failed = ev.events & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
                        self.receive(peer, &mut buf, failed);
                    }
                }
            }
        }
    }

    /// The epoll timeout: 0 to poll (a departure is close, or traffic was just seen),
    /// else -1 with the timerfd armed for the next departure.
    fn timeout(&mut self, now: Nanos) -> i32 {
        if let Some(next) = self.schedule.next_at() {
            let margin = self.margin.now();
            if next <= now + margin {
                return 0;
            }
            let wake_at = next - margin;
            if self.armed != Some(wake_at) {
                self.arm(wake_at);
            }
        }
        if now < self.poll_until {
            0
        } else {
            -1
        }
    }

    fn arm(&mut self, at: Nanos) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / 1_000_000_000) as libc::time_t,
                tv_nsec: (at % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is valid; the old value is not asked for.
        unsafe {
            libc::timerfd_settime(
                self.fds.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        self.armed = Some(at);
    }

    /// Adds what every port's socket dropped since the last read to the engine's count,
    /// and says so once per port.
    fn read_drops(&mut self) {
        for (peer, port) in self.ports.iter_mut().filter(|(_, p)| p.unread) {
            port.unread = false;
            let Some(n) = port.socket.take_drops().filter(|&n| n > 0) else {
                continue;
            };
            self.receive_drops
                .fetch_add(u64::from(n), std::sync::atomic::Ordering::Relaxed);
            if !port.dropped {
                port.dropped = true;
                tracing::warn!(
                    peer = %peer,
                    frames = n,
                    "the kernel dropped frames peer {peer} sent before the engine read \
                     them: the port's receive buffer was full (in a user namespace it is \
                     capped by net.core.rmem_max)"
                );
            }
        }
    }

    /// Handles every waiting command; `false` when the owner is gone.
    fn commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(c) => self.command(c),
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::AddPort {
                peer,
                socket,
                mac,
                ack,
            } => {
                let _ = ack.send(self.add_port(peer, socket, mac));
            }
            Command::RemovePort { peer, ack } => {
                self.remove_port(peer);
                let _ = ack.send(());
            }
            Command::SetLink {
                link,
                impairment,
                seed,
                ack,
            } => {
                let state = self.link(link);
                state.limit = LinkModel::capacity(&impairment);
                match &mut state.model {
                    Some(model) => model.reconfigure(&impairment),
                    None => state.model = Some(LinkModel::new(&impairment, seed)),
                }
                let _ = ack.send(());
            }
            Command::SetCut { link, cut, ack } => {
                self.link(link).cut = cut;
                let _ = ack.send(());
            }
        }
    }

    fn add_port(&mut self, peer: PeerId, socket: PacketSocket, mac: Mac) -> Result<()> {
        if self.ports.contains_key(&peer) {
            return Err(Error::System {
                op: format!("add the engine port of peer {peer}: it has one already"),
                errno: nix::errno::Errno::EEXIST,
            });
        }
        if let Some(other) = self.macs.get(&mac) {
            return Err(Error::System {
                op: format!(
                    "add the engine port of peer {peer}: its MAC address is peer {other}'s"
                ),
                errno: nix::errno::Errno::EADDRINUSE,
            });
        }
        epoll_add(
            self.fds.epoll.as_raw_fd(),
            socket.raw_fd(),
            TOKEN_PORT + peer.0 as u64,
        )
        .map_err(|e| Error::io(format!("watch the engine port of peer {peer}"), e))?;
        self.macs.insert(mac, peer);
        self.ports.insert(
            peer,
            Port {
                socket,
                mac,
                dropped: false,
                unread: false,
                arrived: 0,
            },
        );
        Ok(())
    }

    fn remove_port(&mut self, peer: PeerId) {
        if let Some(port) = self.ports.remove(&peer) {
            epoll_del(self.fds.epoll.as_raw_fd(), port.socket.raw_fd());
            self.macs.remove(&port.mac);
            tracing::debug!(peer = %peer, "engine port removed");
        }
    }

    /// The state of `link`, created (a plain wire) on first use.
    fn link(&mut self, link: Link) -> &mut LinkState {
        let registry = &self.registry;
        self.links.entry(link).or_insert_with(|| {
            let counters = Arc::clone(
                registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(link)
                    .or_default(),
            );
            LinkState {
                counters,
                model: None,
                cut: false,
                limit: DEFAULT_LIMIT,
            }
        })
    }

    /// Takes the frames waiting on `peer`'s port.
    fn receive(&mut self, peer: PeerId, buf: &mut [u8], failed: bool) {
        for _ in 0..RECV_BATCH {
            let Some(port) = self.ports.get(&peer) else {
                return;
            };
            match port.socket.recv(buf) {
                Ok(Some((len, stamp))) => {
                    let read = now();
                    self.poll_until = read + POLL_AFTER_ACTIVITY;
                    let Some(port) = self.ports.get_mut(&peer) else {
                        return;
                    };
                    port.unread = true;
                    // Kept in order per port, so a link's model never sees time go
                    // back (stamps of one interface are taken in order, the offset's
                    // error may not be).
                    let arrived = self.stamps.arrival(stamp, read).max(port.arrived);
                    port.arrived = arrived;
                    self.ingress(peer, &buf[..len], arrived);
                }
                Ok(None) => break,
                Err(e) => {
                    // ENETDOWN: the interface went away (packet_notifier() on
                    // NETDEV_UNREGISTER), as when the peer's namespace is destroyed.
                    tracing::debug!(peer = %peer, error = %e, "engine port failed");
                    self.remove_port(peer);
                    return;
                }
            }
        }
        if failed && self.ports.contains_key(&peer) {
            tracing::debug!(peer = %peer, "engine port reported an error");
            self.remove_port(peer);
        }
    }

    /// Switches one frame (virtio-net header first) that arrived on `source`'s port.
    fn ingress(&mut self, source: PeerId, pkt: &[u8], now: Nanos) {
        let (Some(hdr), Some(class)) = (
            VnetHdr::parse(pkt),
            pkt.get(VNET_HDR_LEN..).and_then(frame::classify),
        ) else {
            return;
        };
        let mut destinations = [PeerId(0); 1];
        let flood: Vec<PeerId>;
        let destinations: &[PeerId] = match class.destination {
            Destination::Unicast(mac) => match self.macs.get(&mac) {
                Some(&d) if d != source => {
                    destinations[0] = d;
                    &destinations
                }
                // Unknown unicast reaches nobody: every station on this switch is a
                // known peer, so no flooding is needed to find it.
                _ => return,
            },
            Destination::Flood => {
                flood = self
                    .ports
                    .keys()
                    .copied()
                    .filter(|&p| p != source)
                    .collect();
                &flood
            }
        };
        if class.control {
            for &d in destinations {
                let link = Link::new(source, d);
                add(&self.link(link).counters.control_packets, 1);
                self.send_to(d, pkt);
                self.record(link, now, pkt, Wire::single(pkt.len() - VNET_HDR_LEN), None);
            }
            return;
        }
        let frame = &pkt[VNET_HDR_LEN..];
        let wire = segment::wire(&hdr, frame);
        for &d in destinations {
            self.forward(Link::new(source, d), pkt, &hdr, wire, now);
        }
    }

    /// Sends to `peer`'s port; `false` when the port is gone or refused the frame. A
    /// port whose interface disappeared is removed.
    fn send_to(&mut self, peer: PeerId, pkt: &[u8]) -> bool {
        let Some(port) = self.ports.get(&peer) else {
            return false;
        };
        match port.socket.send(pkt) {
            Ok(()) => true,
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENXIO | libc::ENETDOWN | libc::ENODEV)
                ) {
                    tracing::debug!(peer = %peer, error = %e, "engine port gone");
                    self.remove_port(peer);
                }
                false
            }
        }
    }

    /// Delivers a copy now and counts it.
    fn deliver(&mut self, link: Link, pkt: &[u8], wire: Wire) {
        let delivered = self.send_to(link.destination, pkt);
        let c = &self.link(link).counters;
        if delivered {
            add(&c.delivered_packets, wire.count as u64);
            add(&c.delivered_bytes, wire.bytes());
        } else {
            add(&c.dropped_unreachable, wire.count as u64);
        }
    }

    /// One frame entering one link.
    fn forward(&mut self, link: Link, pkt: &[u8], hdr: &VnetHdr, wire: Wire, now: Nanos) {
        let state = self.link(link);
        add(&state.counters.sent_packets, wire.count as u64);
        add(&state.counters.sent_bytes, wire.bytes());
        if state.cut {
            add(&state.counters.dropped_partition, wire.count as u64);
            let a = Annotation::dropped(DropReason::Partition);
            self.record(link, now, pkt, wire, Some(&a));
            return;
        }
        let Some(model) = state.model.as_mut() else {
            self.deliver(link, pkt, wire);
            let a = Annotation::delivered(std::time::Duration::ZERO);
            self.record(link, now, pkt, wire, Some(&a));
            return;
        };
        if wire.count == 1 {
            let verdict = model.admit(now, wire.last);
            self.apply(link, verdict, pkt, wire, now);
            return;
        }
        // A super-packet: one fate per wire packet. When every segment meets the same
        // plain fate (always so on a uniform link with room in its queue), it travels
        // whole; otherwise it is cut and each segment goes its own way.
        let verdicts: Vec<Verdict> = (0..wire.count)
            .map(|i| model.admit(now, wire.len_of(i)))
            .collect();
        let first_at = match &verdicts[0] {
            Verdict::Send { first, .. } => Some(first.at),
            Verdict::Drop(_) => None,
        };
        let whole = first_at.is_some()
            && verdicts.iter().all(|v| {
                matches!(v, Verdict::Send { first, duplicate: None }
                    if Some(first.at) == first_at && first.corrupt_bit.is_none() && !first.reordered)
            });
        if whole {
            self.apply(link, verdicts[0].clone(), pkt, wire, now);
            return;
        }
        match segment::segment(hdr, &pkt[VNET_HDR_LEN..]) {
            Some(segments) => {
                for (seg, verdict) in segments.iter().zip(verdicts) {
                    let w = Wire::single(seg.len() - VNET_HDR_LEN);
                    self.apply(link, verdict, seg, w, now);
                }
            }
            // `wire` found more than one segment, so `segment` cannot refuse; should it,
            // the frame is one packet with the first fate.
            None => self.apply(link, verdicts[0].clone(), pkt, wire, now),
        }
    }

    /// Carries out the model's verdict for a copy that stands for `wire` (one wire
    /// packet unless a whole super-packet meets one plain fate).
    fn apply(&mut self, link: Link, verdict: Verdict, pkt: &[u8], wire: Wire, now: Nanos) {
        let (first, duplicate) = match verdict {
            Verdict::Drop(cause) => {
                let c = &self.link(link).counters;
                let reason = match cause {
                    DropCause::Loss => {
                        add(&c.dropped_loss, wire.count as u64);
                        DropReason::Loss
                    }
                    DropCause::QueueFull => {
                        add(&c.dropped_queue, wire.count as u64);
                        DropReason::QueueFull
                    }
                };
                self.record(link, now, pkt, wire, Some(&Annotation::dropped(reason)));
                return;
            }
            Verdict::Send { first, duplicate } => (first, duplicate),
        };
        if duplicate.is_some() {
            add(&self.link(link).counters.duplicated, wire.count as u64);
        }
        for (copy_index, departure) in std::iter::once(first).chain(duplicate).enumerate() {
            let state = self.link(link);
            if departure.reordered {
                add(&state.counters.reordered, wire.count as u64);
            }
            let corrupted = departure.corrupt_bit.map(|bit| {
                add(&state.counters.corrupted, wire.count as u64);
                corrupt(pkt, bit)
            });
            let copy: &[u8] = corrupted.as_deref().unwrap_or(pkt);
            // What the capture says of this copy, unless the engine's bound drops it.
            let annotate = |fate: Annotation| {
                let mut a = fate;
                if copy_index > 0 {
                    a = a.duplicate();
                }
                if let Some(bit) = departure.corrupt_bit {
                    a = a.corrupted(flipped_bit(pkt.len() - VNET_HDR_LEN, bit));
                }
                if departure.reordered {
                    a = a.reordered();
                }
                a
            };
            let delivered = annotate(Annotation::delivered(std::time::Duration::from_nanos(
                departure.at.saturating_sub(now),
            )));
            if departure.at <= now {
                self.departed(link, wire);
                self.deliver(link, copy, wire);
                self.record(link, now, copy, wire, Some(&delivered));
                continue;
            }
            let state = self.link(link);
            let queued = state
                .counters
                .queued_packets
                .load(std::sync::atomic::Ordering::Relaxed);
            if queued + wire.count as u64 > state.limit {
                // The model let it in but the engine's own bound says no: memory stays
                // bounded by the configured limit whatever the model does.
                self.departed(link, wire);
                add(&self.link(link).counters.dropped_queue, wire.count as u64);
                let dropped = annotate(Annotation::dropped(DropReason::QueueFull));
                self.record(link, now, copy, wire, Some(&dropped));
                continue;
            }
            add(&state.counters.queued_packets, wire.count as u64);
            add(&state.counters.queued_bytes, wire.bytes());
            self.record(link, now, copy, wire, Some(&delivered));
            let buf = corrupted.unwrap_or_else(|| pkt.to_vec());
            self.schedule.push(departure.at, Queued { link, buf, wire });
        }
    }

    /// Records `pkt` (standing for `wire`) on `link`'s capture interface, when the
    /// network captures (see `recorder`).
    fn record(
        &mut self,
        link: Link,
        now: Nanos,
        pkt: &[u8],
        wire: Wire,
        annotation: Option<&Annotation>,
    ) {
        if let Some(recorder) = &mut self.recorder {
            recorder.record(link, now, pkt, wire, annotation);
        }
    }

    /// Tells the link's model that the copy left (or will never be queued).
    fn departed(&mut self, link: Link, wire: Wire) {
        if let Some(model) = self.link(link).model.as_mut() {
            for i in 0..wire.count {
                model.departed(wire.len_of(i));
            }
        }
    }

    /// Sends every copy whose departure time has come.
    fn depart(&mut self, now: Nanos) {
        while let Some(q) = self.schedule.pop_due(now) {
            // The answer to a delayed request comes back soon: poll for it.
            self.poll_until = now + POLL_AFTER_ACTIVITY;
            let state = self.link(q.link);
            sub(&state.counters.queued_packets, q.wire.count as u64);
            sub(&state.counters.queued_bytes, q.wire.bytes());
            self.departed(q.link, q.wire);
            self.deliver(q.link, &q.buf, q.wire);
        }
    }
}

/// The bit that [`corrupt`] flips in a frame of `frame_len` bytes when asked for `bit`.
fn flipped_bit(frame_len: usize, bit: u32) -> u32 {
    if frame_len == 0 {
        return bit;
    }
    (bit as u64 % (frame_len as u64 * 8)) as u32
}

/// A corrupted copy of `pkt` (virtio-net header first): its checksum is completed
/// first, so the receiver sees a wrong one (netem calls skb_checksum_help() before
/// flipping a bit, netem_enqueue()), then bit `bit` of the frame (modulo its length)
/// is flipped.
fn corrupt(pkt: &[u8], bit: u32) -> Vec<u8> {
    let mut copy = pkt.to_vec();
    if let Some(mut hdr) = VnetHdr::parse(&copy) {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            let (h, frame) = copy.split_at_mut(VNET_HDR_LEN);
            if frame::complete_checksum(frame, hdr.csum_start, hdr.csum_offset) {
                hdr.flags &= !F_NEEDS_CSUM;
                hdr.csum_start = 0;
                hdr.csum_offset = 0;
                hdr.write(h);
            }
        }
    }
    let frame = &mut copy[VNET_HDR_LEN..];
    if !frame.is_empty() {
        let bit = flipped_bit(frame.len(), bit) as usize;
        frame[bit / 8] ^= 1 << (bit % 8);
    }
    copy
}

/// Drops every item on a thread of its own and returns when all of them, and their
/// threads, are gone. An item whose thread cannot start is dropped here instead.
fn close_concurrently<T: Send + 'static>(items: impl IntoIterator<Item = T>) {
    let threads: Vec<NsThread<()>> = items
        .into_iter()
        .filter_map(|item| NsThread::spawn("linkem-close".into(), move || drop(item)).ok())
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_margin_follows_the_timers_lateness_within_its_bounds() {
        let mut m = Margin::default();
        assert_eq!(m.now(), SPIN_BEFORE_DEADLINE);
        for i in 0..100 {
            m.observe(i * 1_000_000, i * 1_000_000 + 25_000);
        }
        // 2 * 25 us + 20 us, give or take the average's rounding.
        assert!((69_000..=71_000).contains(&m.now()), "{}", m.now());
        // One descheduled wakeup moves it by at most MARGIN_MAX / 8 * 2.
        m.observe(0, 50_000_000);
        assert!(
            m.now() <= 70_000 + 2 * MARGIN_MAX / 8 + 1_000,
            "{}",
            m.now()
        );
        for _ in 0..100 {
            m.observe(0, 10_000_000);
        }
        assert_eq!(m.now(), MARGIN_MAX);
        for _ in 0..200 {
            m.observe(5, 5);
        }
        assert_eq!(m.now(), MARGIN_MIN);
    }

    use super::super::frame::{fold, pseudo_header_sum, sum, ETH_HLEN, IPPROTO_TCP};
    use super::super::segment::tests::tcp_super_packet;
    use super::*;

    #[test]
    fn a_corrupted_copy_has_a_complete_checksum_that_no_longer_matches() {
        let (mut hdr, frame) = tcp_super_packet(true, 100, 0x18);
        hdr.gso_type = 0;
        hdr.gso_size = 0;
        let mut pkt = vec![0; VNET_HDR_LEN];
        hdr.write(&mut pkt);
        pkt.extend_from_slice(&frame);
        let l4_len = frame.len() - 34;
        let valid = |f: &[u8]| {
            fold(sum(
                &f[34..],
                pseudo_header_sum(&f[ETH_HLEN..], IPPROTO_TCP, l4_len),
            )) == 0
        };
        // Bit 0 of byte 100: inside the payload, so the completed checksum fails.
        let copy = corrupt(&pkt, 100 * 8);
        let h = VnetHdr::parse(&copy).unwrap();
        assert_eq!(h.flags & F_NEEDS_CSUM, 0);
        let f = &copy[VNET_HDR_LEN..];
        assert_eq!(f[100] ^ frame[100], 1);
        assert!(!valid(f));
        // Flipping it back gives a frame whose completed checksum is right.
        let mut fixed = f.to_vec();
        fixed[100] ^= 1;
        assert!(valid(&fixed));
        // Bit indexes wrap at the frame's length.
        let wrapped = corrupt(&pkt, (frame.len() * 8 + 3) as u32);
        assert_eq!(wrapped[VNET_HDR_LEN] ^ frame[0], 1 << 3);
    }
}
