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
            silence: Duration::from_secs(3),
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
/// CLOCK_REALTIME stamp through a monotonic clock read bracketed by two realtime reads
/// ([`clock_pair`]), whose midpoint is within half their gap of the realtime at the
/// monotonic read; a gap above twice this is read again.
pub const STAMP_TOLERANCE: Duration = Duration::from_micros(50);

/// The monotonic clock now, and the realtime clock at the same moment, within
/// [`STAMP_TOLERANCE`]: the monotonic read sits between two realtime reads, and their
/// midpoint is taken. A preemption between the reads widens the gap; such a pair is
/// read again (up to four times, then the narrowest is used). Two plain reads one after
/// the other carried a preemption into the stamps whole: in a user-mode-linux lane,
/// where each clock read is a system call, a batch of datagrams looked 0.53 ms earlier
/// than it arrived, and a floor check failed.
pub fn clock_pair() -> (Instant, SystemTime) {
    let mut best: Option<(Duration, Instant, SystemTime)> = None;
    for _ in 0..4 {
        let before = SystemTime::now();
        let now = Instant::now();
        let after = SystemTime::now();
        // A realtime clock stepped back between the reads: no bracket, try again.
        let Ok(gap) = after.duration_since(before) else {
            continue;
        };
        if best.is_none_or(|(narrowest, _, _)| gap < narrowest) {
            best = Some((gap, now, before + gap / 2));
        }
        if gap <= 2 * STAMP_TOLERANCE {
            break;
        }
    }
    best.map_or_else(
        || (Instant::now(), SystemTime::now()),
        |(_, now, real)| (now, real),
    )
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
}

impl StampedReader {
    fn new(size: usize) -> StampedReader {
        StampedReader {
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            bufs: vec![vec![0; size]; BATCH],
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
                // One pair for the batch: on user-mode-linux each clock read is a
                // system call, and a receiver that read pairs per datagram fell behind.
                let (now, real) = clock_pair();
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
