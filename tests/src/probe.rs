//! The suite's UDP probe: numbered datagrams from one peer to another, and what arrived
//! when. Every test that sends datagrams to see what a link does uses this one.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use linkem::network::{Network, PeerId};
use linkem::Error;

/// What to send and how long to listen.
#[derive(Debug, Clone)]
pub struct Probe {
    count: u32,
    port: u16,
    tag: Vec<u8>,
    size: usize,
    burst: u32,
    pause: Duration,
    /// Whether `pause` is the period of a fixed schedule (see `every`).
    scheduled: bool,
    /// With `paced`: how many datagrams the sender may be ahead of the highest one the
    /// receiver has read, at the end of a burst (1: it waits for the burst's last).
    window: u32,
    paced: bool,
    silence: Duration,
    until_count: bool,
    /// Told how many datagrams have been sent, after each send (see `progress`).
    progress: Option<tokio::sync::watch::Sender<u32>>,
}

/// How long a receiver waits for a first contact: a first ARP request lost while a
/// fresh bridge port still comes up is retried after a second, and the datagrams wait
/// for it. The default silence of a [`Probe`].
pub const FIRST_CONTACT: Duration = Duration::from_secs(3);

impl Probe {
    /// `count` datagrams to `port`, back to back, each only its sequence number; the
    /// receiver stops once `count` arrived or after three seconds of silence (a first
    /// ARP request sent while a fresh bridge port still comes up is retried after a
    /// second, and the datagrams wait for it in the neighbour queue).
    pub fn new(count: u32, port: u16) -> Probe {
        Probe {
            count,
            port,
            tag: Vec::new(),
            size: 4,
            burst: count.max(1),
            pause: Duration::ZERO,
            scheduled: false,
            window: 1,
            paced: false,
            silence: FIRST_CONTACT,
            until_count: true,
            progress: None,
        }
    }

    /// Every datagram carries `tag` after its sequence number.
    pub fn tag(mut self, tag: impl Into<Vec<u8>>) -> Probe {
        self.tag = tag.into();
        self.size = self.size.max(4 + self.tag.len());
        self
    }

    /// Datagrams of `size` bytes: sequence number, tag, then bytes that depend on the
    /// sequence number (so a damaged datagram is told from an intact one).
    pub fn size(mut self, size: usize) -> Probe {
        self.size = size.max(4 + self.tag.len());
        self
    }

    /// Sends in bursts of `burst`, with `pause` after each.
    pub fn bursts(mut self, burst: u32, pause: Duration) -> Probe {
        self.burst = burst.max(1);
        self.pause = pause;
        self
    }

    /// Sends a burst of `burst` every `period`, on a fixed schedule from the first: a
    /// sender that slept late sends the bursts it owes at once, so the offered rate holds
    /// (a plain pause after each burst offers less the later its timer fires).
    pub fn every(mut self, burst: u32, period: Duration) -> Probe {
        self.burst = burst.max(1);
        self.pause = period;
        self.scheduled = true;
        self
    }

    /// After each burst, also waits (up to 100 ms: it may be lost) until the receiver
    /// has read the burst's last datagram, so its socket buffer never overflows: on a
    /// slow kernel (user-mode-linux, one CPU for both ends) a sender that only pauses
    /// outruns the receiver, and the socket drops datagrams the link delivered.
    pub fn paced(mut self) -> Probe {
        self.paced = true;
        self.window = 1;
        self
    }

    /// Paced with a window: after each burst the sender waits (up to 100 ms) only until
    /// the receiver has read a datagram at most `window` behind the one just sent, so a
    /// lost datagram or a long delay does not stall every burst, and the receiver's
    /// socket holds at most about `window` datagrams (keep `window` times the
    /// datagram's buffer cost well under `net.core.rmem_default`).
    pub fn window(mut self, window: u32) -> Probe {
        self.paced = true;
        self.window = window.max(1);
        self
    }

    /// The receiver stops after `silence` without a datagram.
    pub fn silence(mut self, silence: Duration) -> Probe {
        self.silence = silence;
        self
    }

    /// The receiver listens until the silence even after `count` arrived (to see
    /// duplicates).
    pub fn keep_listening(mut self) -> Probe {
        self.until_count = false;
        self
    }

    /// Tells `sent` how many datagrams have been sent, after each send, so a test can
    /// act at a point in the stream rather than at a time after the probe was called
    /// (the probe's threads may take tens of milliseconds to start on a loaded
    /// user-mode-linux).
    pub fn progress(mut self, sent: tokio::sync::watch::Sender<u32>) -> Probe {
        self.progress = Some(sent);
        self
    }

    /// The datagram numbered `seq`.
    fn datagram(&self, seq: u32) -> Vec<u8> {
        let mut d = seq.to_ne_bytes().to_vec();
        d.extend_from_slice(&self.tag);
        let filler = self.size - d.len();
        d.extend((0..filler as u32).map(|j| (seq.wrapping_mul(31) ^ j) as u8));
        d
    }

    /// Sends the datagrams from `from` to `to` and returns what happened.
    pub async fn run(&self, net: &Network, from: PeerId, to: PeerId) -> Result<Delivery, Error> {
        let dst = SocketAddr::new(net.addr(to)?, self.port);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // The highest sequence number read so far, for `paced`.
        let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(None::<u32>);
        let probe = self.clone();
        let receive = net.run_in_namespace(to, move |_| async move {
            let socket = tokio::net::UdpSocket::bind(dst).await.unwrap();
            nix::sys::socket::setsockopt(&socket, sockopt::ReceiveTimestampns, &true).unwrap();
            raise_receive_buffer(&socket);
            let overflows = udp_rcvbuf_errors();
            ready_tx.send(()).unwrap();
            let mut arrived = Vec::new();
            let mut reader = StampedReader::new(probe.size.max(64) + 1);
            'read: while let Ok(Ok(batch)) =
                tokio::time::timeout(probe.silence, reader.recv(&socket)).await
            {
                let mut highest = None;
                for (i, &(len, at)) in batch.iter().enumerate() {
                    let buf = &reader.bufs[i][..len];
                    let Some(seq) = buf.get(..4).and_then(|b| b.try_into().ok()) else {
                        arrived.push(Arrival {
                            seq: u32::MAX,
                            at,
                            intact: false,
                        });
                        continue;
                    };
                    let seq = u32::from_ne_bytes(seq);
                    let intact = *buf == probe.datagram(seq)[..];
                    arrived.push(Arrival { seq, at, intact });
                    highest = highest.max(Some(seq));
                    if probe.until_count && arrived.len() == probe.count as usize {
                        break 'read;
                    }
                }
                // Once per batch: each wake of the paced sender is a system call.
                seen_tx.send_if_modified(|max| {
                    let higher = highest > *max;
                    if higher {
                        *max = highest;
                    }
                    higher
                });
            }
            (arrived, udp_rcvbuf_errors() - overflows)
        });
        let probe = self.clone();
        let send = net.run_in_namespace(from, move |_| async move {
            ready_rx.await.unwrap();
            let any: std::net::IpAddr = match dst {
                SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
            };
            let socket = tokio::net::UdpSocket::bind((any, 0)).await.unwrap();
            let mut sent = Vec::with_capacity(probe.count as usize);
            let mut sent_by = Vec::with_capacity(probe.count as usize);
            let started = Instant::now();
            for seq in 0..probe.count {
                let datagram = probe.datagram(seq);
                sent.push(Instant::now());
                socket.send_to(&datagram, dst).await.unwrap();
                sent_by.push(Instant::now());
                if let Some(progress) = &probe.progress {
                    progress.send_replace(seq + 1);
                }
                if seq % probe.burst == probe.burst - 1 {
                    if probe.paced {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(100),
                            seen_rx.wait_for(|max| max.is_some_and(|m| m + probe.window > seq)),
                        )
                        .await;
                    }
                    if probe.scheduled {
                        let bursts = seq / probe.burst + 1;
                        tokio::time::sleep_until((started + probe.pause * bursts).into()).await;
                    } else if !probe.pause.is_zero() {
                        tokio::time::sleep(probe.pause).await;
                    }
                }
            }
            (sent, sent_by)
        });
        let (got, sent) = tokio::join!(receive, send);
        let (sent, sent_by) = sent?;
        let (arrived, rcvbuf_errors) = got?;
        Ok(Delivery {
            sent,
            sent_by,
            arrived,
            rcvbuf_errors,
        })
    }
}

/// How far an arrival time ([`Arrival::at`]) may be off: it comes from the kernel's
/// CLOCK_REALTIME stamp through what [`Clocks`] knows of the realtime clock at a
/// monotonic instant, which is kept within this (narrower once a few readings are in).
pub const STAMP_TOLERANCE: Duration = Duration::from_micros(50);

/// CLOCK_REALTIME against CLOCK_MONOTONIC, for turning receive stamps into Instants.
///
/// The two clocks advance together: NTP and adjtime(3) slew CLOCK_MONOTONIC as they slew
/// CLOCK_REALTIME (clock_gettime(2); both are read from one timekeeper, realtime as
/// monotonic plus `offs_real`, ktime_get_with_offset()). Their difference changes only
/// when the realtime clock is set. So each reading, a monotonic read between two
/// realtime reads, bounds that difference, and every bound holds until the clock is
/// set: the estimate is the intersection of all readings, which only narrows. A
/// reading that does not meet it means the clock was set; the estimate starts again
/// from that reading.
///
/// One reading alone was not enough: in a user-mode-linux lane with both host cores
/// busy, every clock read (a system call there) sometimes took 400 us, four readings
/// in a row were 770 to 800 us wide, and the midpoint of such a reading put arrivals up
/// to 400 us before they happened.
#[derive(Debug, Default)]
pub struct Clocks {
    /// At monotonic `.0`, the realtime clock was between `.1` and `.2`.
    known: Option<(Instant, SystemTime, SystemTime)>,
}

impl Clocks {
    /// The monotonic clock now, and the realtime clock at that moment (within
    /// [`STAMP_TOLERANCE`] unless every reading so far was wider than twice that: a
    /// wide first reading is followed by up to three more).
    pub fn now(&mut self) -> (Instant, SystemTime) {
        for _ in 0..4 {
            let before = SystemTime::now();
            let now = Instant::now();
            let after = SystemTime::now();
            self.learn(now, before, after);
            if self.width() <= 2 * STAMP_TOLERANCE {
                break;
            }
        }
        let (now, lo, hi) = self.known.expect("a reading was just taken");
        let width = hi.duration_since(lo).unwrap_or_default();
        (now, lo + width / 2)
    }

    /// The width of what is known of the realtime clock (zero before the first reading).
    pub fn width(&self) -> Duration {
        self.known
            .and_then(|(_, lo, hi)| hi.duration_since(lo).ok())
            .unwrap_or_default()
    }

    /// Adds a reading: at monotonic `now` the realtime clock was between `before` and
    /// `after`.
    fn learn(&mut self, now: Instant, before: SystemTime, after: SystemTime) {
        // A realtime clock set back between the two reads: not a reading.
        if after < before {
            return;
        }
        let met = self.known.and_then(|(then, lo, hi)| {
            // What was known, carried forward to `now` (the clocks advance together).
            let moved = now.saturating_duration_since(then);
            let (lo, hi) = ((lo + moved).max(before), (hi + moved).min(after));
            (lo <= hi).then_some((now, lo, hi))
        });
        self.known = Some(met.unwrap_or((now, before, after)));
    }
}

/// Datagrams read at most this many at a time.
const BATCH: usize = 64;

/// Reads datagrams and when they arrived: the kernel's receive timestamp
/// (SO_TIMESTAMPNS, taken as the frame enters the peer's `eth0`, in netif_rx() or
/// __netif_receive_skb()), not the moment the receiving task got to run. On a loaded
/// machine the receiver's thread may wait milliseconds for a CPU, and a cluster of
/// datagrams (jitter, a shaper's burst) is read one after another: stamped at the read,
/// each would carry the receiver's scheduling and queueing, which is not the link's.
///
/// The stamp is CLOCK_REALTIME; it becomes an Instant through the time it waited in
/// the socket (realtime now minus the stamp), so a clock step between the two reads is
/// the only error, and only over that short wait.
///
/// Whatever is queued is read in one recvmmsg(2), with one clock pair for the batch:
/// on user-mode-linux every system call (clock reads included: there is no vDSO) costs
/// tens of microseconds, and a receiver reading one datagram per call fell behind a
/// 10 Mbit/s shaper and overflowed its socket while the link delivered every datagram.
struct StampedReader {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Vec<Vec<u8>>,
    clocks: Clocks,
}

impl StampedReader {
    fn new(size: usize) -> StampedReader {
        StampedReader {
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            bufs: vec![vec![0; size]; BATCH],
            clocks: Clocks::default(),
        }
    }

    /// Waits for datagrams; returns the length and arrival of each, in `bufs` order.
    async fn recv(&mut self, socket: &UdpSocket) -> io::Result<Vec<(usize, Instant)>> {
        loop {
            socket.readable().await?;
            let read = socket.try_io(Interest::READABLE, || {
                let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> = self
                    .bufs
                    .iter_mut()
                    .map(|b| [io::IoSliceMut::new(b)])
                    .collect();
                let got = recvmmsg(
                    socket.as_raw_fd(),
                    &mut self.headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                )?;
                // One reading for the batch: on user-mode-linux each clock read is a
                // system call, and a receiver that read clocks per datagram fell behind.
                let (now, real) = self.clocks.now();
                let mut batch = Vec::with_capacity(BATCH);
                for msg in got {
                    let mut at = now;
                    for c in msg.cmsgs()? {
                        if let ControlMessageOwned::ScmTimestampns(ts) = c {
                            let stamped =
                                UNIX_EPOCH + Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32);
                            if let Ok(waited) = real.duration_since(stamped) {
                                at = now.checked_sub(waited).unwrap_or(now);
                            }
                        }
                    }
                    batch.push((msg.bytes, at));
                }
                Ok(batch)
            });
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }
}

/// Asks for a receive buffer far above the default (about 90 datagrams of 1,200
/// bytes): a receiver that a loaded machine stalls for a moment must not drop what the
/// link delivered. SO_RCVBUFFORCE needs CAP_NET_ADMIN over the host (root); in a user
/// namespace the plain SO_RCVBUF applies, capped by net.core.rmem_max.
fn raise_receive_buffer(socket: &UdpSocket) {
    const WANTED: usize = 8 << 20;
    if setsockopt(socket, sockopt::RcvBufForce, &WANTED).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &WANTED);
    }
}

/// One datagram that arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Its sequence number (`u32::MAX` if it was too short to carry one).
    pub seq: u32,
    /// When it reached the receiver's interface (the kernel's receive timestamp, see
    /// `StampedReader`).
    pub at: Instant,
    /// Whether it is exactly the datagram of that number.
    pub intact: bool,
}

/// What a [`Probe`] saw. Both ends live in this process, so their Instants compare.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// When each datagram was sent, by sequence number: read just before the send
    /// call, so never later than the datagram left (a floor for delays).
    pub sent: Vec<Instant>,
    /// When each datagram's send call had returned: the datagram was on its way (in the
    /// sender's qdisc, or past it) by then, even if the sender was preempted between
    /// reading [`sent`](Self::sent) and sending.
    pub sent_by: Vec<Instant>,
    /// What arrived, in arrival order (duplicates included).
    pub arrived: Vec<Arrival>,
    /// Datagrams the receiving namespace's kernel dropped because the socket's buffer
    /// was full (`RcvbufErrors`): not the link's doing.
    pub rcvbuf_errors: u64,
}

impl Delivery {
    /// The one-way delay of each datagram that arrived, in arrival order.
    pub fn delays(&self) -> Vec<Duration> {
        self.arrived
            .iter()
            .filter_map(|a| Some(a.at - *self.sent.get(a.seq as usize)?))
            .collect()
    }

    /// Whether every datagram that arrived is intact.
    pub fn all_intact(&self) -> bool {
        self.arrived.iter().all(|a| a.intact)
    }

    /// Panics unless the receiver's socket buffer never overflowed: a count that
    /// includes the kernel's drops at the socket is not a measurement of the link.
    pub fn assert_no_socket_overflow(&self) {
        assert_eq!(
            self.rcvbuf_errors,
            0,
            "the receiver's socket buffer overflowed ({} datagrams dropped by the kernel, \
             not by the link): the count of {} is not a measurement",
            self.rcvbuf_errors,
            self.arrived.len()
        );
    }
}

/// `RcvbufErrors` of the calling thread's network namespace.
fn udp_rcvbuf_errors() -> u64 {
    // thread-self: peer code runs on a thread that entered the peer's namespace.
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let (Some(names), Some(values)) = (udp.first(), udp.get(1)) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn readings_narrow_what_is_known_of_the_realtime_clock() {
        let mono = Instant::now();
        // The realtime clock is exactly `real0 + (t - mono)`.
        let real0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut clocks = Clocks::default();
        // A wide reading (a preemption between the reads): 800 us, off-centre.
        clocks.learn(mono, real0 - us(700), real0 + us(100));
        assert_eq!(clocks.width(), us(800));
        // A narrow one 5 ms later, its other side off-centre.
        let t = mono + Duration::from_millis(5);
        clocks.learn(
            t,
            real0 + Duration::from_millis(5) - us(10),
            real0 + Duration::from_millis(5) + us(30),
        );
        assert_eq!(clocks.width(), us(40));
        // Later wide readings keep what the narrow one told.
        let t = mono + Duration::from_millis(9);
        let r = real0 + Duration::from_millis(9);
        clocks.learn(t, r - us(400), r + us(400));
        assert_eq!(clocks.width(), us(40));
        // And one that cuts the other side narrows it further.
        clocks.learn(t, r - us(3), r + us(500));
        let (_, lo, hi) = clocks.known.unwrap();
        assert_eq!((lo, hi), (r - us(3), r + us(30)));
        // The truth is always inside.
        assert!(lo <= r && r <= hi);
    }

    #[test]
    fn a_set_clock_starts_again_and_a_clock_set_back_mid_reading_is_ignored() {
        let mono = Instant::now();
        let real0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut clocks = Clocks::default();
        clocks.learn(mono, real0 - us(5), real0 + us(5));
        // Set back between the reads of one reading: ignored.
        clocks.learn(mono + us(100), real0 + us(200), real0 + us(50));
        assert_eq!(clocks.known.unwrap().0, mono);
        // Set forward by a second: the next reading disagrees, and is taken alone.
        let t = mono + Duration::from_millis(1);
        let r = real0 + Duration::from_secs(1) + Duration::from_millis(1);
        clocks.learn(t, r - us(20), r + us(20));
        assert_eq!(clocks.known.unwrap(), (t, r - us(20), r + us(20)));
    }

    #[test]
    fn the_clocks_now_agree_with_the_system() {
        let mut clocks = Clocks::default();
        let (mono, real) = clocks.now();
        // Both answers lie in what the first reading knew, carried forward.
        let width = clocks.width();
        let (mono2, real2) = clocks.now();
        assert!(clocks.width() <= width, "a reading widened what was known");
        let elapsed = mono2 - mono;
        let real_elapsed = real2.duration_since(real).expect("realtime went forward");
        let off = elapsed.abs_diff(real_elapsed);
        assert!(
            off <= width,
            "{elapsed:?} on the monotonic clock, {real_elapsed:?} on the realtime one, \
             {width:?} known"
        );
        assert!(SystemTime::now() + width >= real2);
    }
}
