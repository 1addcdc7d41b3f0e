//! The kernel backend's packet capture: what each peer sent, before its impairments,
//! and what the hub delivered to it.
//!
//! # What is observable, and where
//!
//! A peer's frames cross, in order: its stack, the egress hook of its `eth0`
//! (`sch_handle_egress`), the HTB/netem/TBF tree on `eth0` (where loss, delay,
//! duplication, corruption, shaping and cuts happen), the veth pair, the hub's bridge,
//! and the destination's hub port `p<m>`, out of which the bridge sends them
//! (`dev_queue_xmit` on `p<m>`, whose packet taps run in `xmit_one`) into the
//! destination's `eth0`. A packet socket on a peer's `eth0` sees its frames only after
//! the tree (taps run after the qdisc's dequeue), as does one on its hub port `p<n>`,
//! so neither shows a drop. The capture therefore taps two places per peer `n`, and
//! records both on one pcapng interface named `p<n>`:
//!
//! - **inbound** (`epb_flags` inbound): the frames peer `n` sent, as its stack sent
//!   them, before its impairments. A `clsact` qdisc on its `eth0` mirrors every frame
//!   on the egress hook ([`crate::tc::clsact`]) to `cap0`, one end of a veth pair whose
//!   other end, `c<n>`, sits unused in the hub (the mirror copy dies there: the hub has
//!   no address to deliver it to). A socket on `cap0` records the copies, and only
//!   frames from `eth0`'s MAC address (`cap0`'s own IPv6 chatter is not the peer's
//!   traffic).
//! - **outbound**: the frames the hub sent to peer `n`, after the sender's impairments
//!   (a socket on `p<n>`, frames leaving it). They include broadcast and multicast
//!   flooded by the bridge, and what the bridge itself sends.
//!
//! So a frame peer 1 sent to peer 2 appears inbound on `p1` and, if the link let it
//! through, outbound on `p2`, later by the delay it met; a frame lost, cut or dropped
//! by a full queue appears only inbound on `p1`; a duplicated one appears once inbound
//! and twice outbound; a corrupted one differs between the two. The kernel does not say
//! why a frame went missing: the capture carries no annotations (the link's counters,
//! `Network::link_stats`, count the causes together).
//!
//! What it cannot show: frames the peer's tree reordered appear in their arrival order
//! only; a TCP super-packet (GSO) is recorded as the stack handed it over, while a
//! shaper (`tbf_segment`) or corruption (`netem_segment`) may split it on the way, so
//! frame counts of TCP traffic can differ between the two sides; frames the destination
//! itself drops (a full socket buffer) are recorded outbound all the same. Timestamps
//! are the kernel's, taken when each tap saw the frame (`SIOCGSTAMPNS`).
//!
//! The peer sees one extra interface, `cap0`, without an address. One thread reads
//! every socket (epoll); it is stopped and joined when the backend is dropped, and the
//! file is finished then. Its size is bounded by the capture's cap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capture::{Capture, CaptureConfig, Direction, IfaceId, LinkType};
use crate::error::{Error, Result};
use crate::link::PeerId;
use crate::namespace::NetNs;
use crate::packet_socket::{self, ask_for_buffer};

/// The name of the mirror's end in the peer's namespace.
pub(crate) const MIRROR_IFNAME: &str = "cap0";
/// Its ifindex there: after `lo` (1) and `eth0` (2), far below the IFB devices.
pub(crate) const MIRROR_IFINDEX: u32 = 3;

/// The ifindex of the mirror's unused end `c<n>` in the hub: above every hub port
/// (`n + 2`) a network could hold.
pub(crate) fn hub_mirror_index(id: PeerId) -> Option<u32> {
    u32::try_from(id.0)
        .ok()
        .and_then(|n| n.checked_add(0x4000_0000))
        .filter(|&i| i <= i32::MAX as u32)
}

/// A socket's receive buffer: room for bursts while the reader thread waits its turn.
const SOCKET_BUFFER: libc::c_int = 4 << 20;
/// The largest frame a tap hands over (a 64 KB GSO packet and its Ethernet header).
const MAX_FRAME: usize = 65_536 + 64;
/// `SIOCGSTAMPNS` (`SIOCGSTAMPNS_OLD` in asm-generic/sockios.h, the 64-bit `timespec`
/// one on 64-bit targets): the kernel's timestamp of the last frame read.
const SIOCGSTAMPNS: libc::c_ulong = 0x8907;

/// Opens a capture socket on `ifindex` in the calling thread's namespace: every frame,
/// both ways, kernel timestamps on.
fn open_socket(ifindex: u32) -> io::Result<OwnedFd> {
    packet_socket::open_bound(ifindex, |raw| {
        // The first SIOCGSTAMPNS turns timestamping on (sock_enable_timestamp); from
        // then on every frame read leaves its kernel timestamp in the socket
        // (sk_stamp). Not SO_TIMESTAMPNS: with it the kernel puts the stamp in a
        // control message only and leaves sk_stamp alone (sock_recv_timestamp).
        let _ = timestamp(raw);
        ask_for_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, SOCKET_BUFFER);
        Ok(())
    })
}

/// Opens a capture socket on `ifindex` of namespace `ns` (see packet_socket::open_in).
pub(crate) fn open_socket_in(ns: &Arc<NetNs>, ifindex: u32, what: &str) -> Result<OwnedFd> {
    packet_socket::open_in(ns, &format!("the capture socket of {what}"), move || {
        open_socket(ifindex)
    })
}

/// One tapped place: which side of which peer's interface its frames go to.
#[derive(Debug)]
struct Tap {
    fd: OwnedFd,
    iface: IfaceId,
    direction: Direction,
    /// Record only frames leaving the tapped device with this source MAC (`None`: all
    /// frames leaving it).
    source: Option<[u8; 6]>,
}

#[derive(Debug)]
struct State {
    capture: Capture,
    taps: Vec<Tap>,
}

/// The capture of one kernel-backend network (see the module docs).
#[derive(Debug)]
pub(crate) struct KernelCapture {
    state: Arc<Mutex<State>>,
    epoll: Arc<OwnedFd>,
    stop: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The epoll key of the stop event.
const STOP: u64 = u64::MAX;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl KernelCapture {
    /// Creates the file and starts the reader thread (no interface yet).
    pub(crate) fn start(config: &CaptureConfig) -> Result<KernelCapture> {
        let capture = Capture::create(config)?;
        let io_err = |e| Error::io("start the capture's reader", e);
        // SAFETY: plain system calls; results are checked before use.
        let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map_err(io_err)?;
        // SAFETY: `epoll` was just returned and is owned by nobody else.
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(epoll) });
        // SAFETY: as above.
        let stop = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(io_err)?;
        // SAFETY: as above.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(stop) });
        watch(&epoll, stop.as_raw_fd(), STOP).map_err(io_err)?;
        let state = Arc::new(Mutex::new(State {
            capture,
            taps: Vec::new(),
        }));
        let (s, e) = (Arc::clone(&state), Arc::clone(&epoll));
        let thread = std::thread::Builder::new()
            .name("linkem-capture".into())
            .spawn(move || read_loop(&s, &e))
            .map_err(|e| Error::io("spawn the capture's reader thread", e))?;
        Ok(KernelCapture {
            state,
            epoll,
            stop,
            thread: Some(thread),
        })
    }

    /// Describes peer `id`'s interface and starts recording its two taps: `mirror`
    /// (on `cap0`, frames from `mac`) inbound, `port` (on `p<n>`) outbound.
    pub(crate) fn add_peer(&self, id: PeerId, mac: [u8; 6], mirror: OwnedFd, port: OwnedFd) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let iface = state.capture.add_interface(
            &format!("p{id}"),
            &format!(
                "peer {id}: inbound, the frames it sent, before its impairments; outbound, \
                 the frames the hub delivered to it"
            ),
            LinkType::Ethernet,
        );
        for (fd, direction, source) in [
            (mirror, Direction::Inbound, Some(mac)),
            (port, Direction::Outbound, None),
        ] {
            let key = state.taps.len() as u64;
            if let Err(e) = watch(&self.epoll, fd.as_raw_fd(), key) {
                tracing::warn!("capture of peer {id}: cannot watch a socket: {e}");
            }
            state.taps.push(Tap {
                fd,
                iface,
                direction,
                source,
            });
        }
    }
}

fn watch(epoll: &OwnedFd, fd: RawFd, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: key,
    };
    // SAFETY: `event` is valid for the call.
    cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })
        .map(|_| ())
}

/// The reader thread: waits for frames on any tap, records them, until the stop event.
fn read_loop(state: &Mutex<State>, epoll: &OwnedFd) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 32];
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        // SAFETY: `events` is valid for its length.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                -1,
            )
        };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("capture reader stopped: {}", io::Error::last_os_error());
            return;
        }
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        for event in &events[..n as usize] {
            let key = event.u64;
            if key == STOP {
                // What the taps saw before the stop is still queued on their sockets
                // (a frame sent just before the network was dropped): record it too.
                for index in 0..state.taps.len() {
                    while drain(&mut state, index, &mut buf) {}
                }
                return;
            }
            drain(&mut state, key as usize, &mut buf);
        }
    }
}

/// Records what is waiting on tap `index` (at most a batch, so no tap starves the
/// others; epoll reports the rest again). True when the batch was full, so more may
/// be waiting.
fn drain(state: &mut State, index: usize, buf: &mut [u8]) -> bool {
    let State { capture, taps } = state;
    let Some(tap) = taps.get(index) else {
        return false;
    };
    for _ in 0..64 {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf`, `from` and `len` are valid for the sizes given.
        let n = unsafe {
            libc::recvfrom(
                tap.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return false;
        }
        let original = n as usize;
        let frame = &buf[..original.min(buf.len())];
        // Both taps record frames leaving their device only.
        if from.sll_pkttype != libc::PACKET_OUTGOING {
            continue;
        }
        if tap
            .source
            .is_some_and(|mac| frame.get(6..12) != Some(&mac[..]))
        {
            continue;
        }
        capture.record(
            tap.iface,
            timestamp(tap.fd.as_raw_fd()),
            frame,
            original,
            Some(tap.direction),
            None,
        );
    }
    true
}

/// The kernel's timestamp of the frame just read from `fd`, else now.
fn timestamp(fd: RawFd) -> SystemTime {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for the call; SIOCGSTAMPNS writes a timespec.
    let rc = unsafe { libc::ioctl(fd, SIOCGSTAMPNS as _, &mut ts) };
    if rc == 0 && ts.tv_sec > 0 {
        UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    } else {
        SystemTime::now()
    }
}

impl Drop for KernelCapture {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`.
        let _ = unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The sockets close with the state; the file is finished by the capture's drop.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.taps.clear();
        if let Err(e) = state.capture.flush() {
            tracing::warn!("capture: {e}");
        }
    }
}
