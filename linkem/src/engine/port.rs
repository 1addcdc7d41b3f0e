//! One switch port: an AF_PACKET socket on a hub-side veth end, with virtio-net
//! headers.
//!
//! PACKET_VNET_HDR makes the socket pass offload super-packets both ways: on receive,
//! packet_rcv() prepends the header virtio_net_hdr_from_skb() fills from the skb's GSO
//! and checksum state; on send, packet_snd() rebuilds that state with
//! virtio_net_hdr_to_skb(), so a 64 KB TCP super-packet crosses the engine as one
//! frame and a CHECKSUM_PARTIAL frame stays partial (veth leaves TCP checksums to the
//! "hardware", which for veth-to-veth is nobody: without the header the frame would
//! arrive with only its pseudo-header sum and be dropped).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::error::Result;
use crate::namespace::NetNs;
use crate::packet_socket::{self, ask_for_buffer, setsockopt};

/// Receive and send buffer the socket asks for: a few MB, since the default 212 KB
/// holds only about three super-packets.
const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// The largest frame a packet socket hands over from a veth with GSO (64 KB IP packet
/// plus Ethernet header), with the virtio-net header before it.
pub(crate) const MAX_FRAME: usize = super::frame::VNET_HDR_LEN + 65_536 + 64;

/// A packet socket bound to one interface.
#[derive(Debug)]
pub(crate) struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a socket bound to interface `ifindex` of namespace `ns` (see
    /// packet_socket::open_in).
    pub(crate) fn open_in(ns: &Arc<NetNs>, ifindex: u32, what: &str) -> Result<PacketSocket> {
        packet_socket::open_in(ns, &format!("the packet socket of {what}"), move || {
            PacketSocket::open(ifindex)
        })
    }

    /// Opens a socket bound to `ifindex` in the calling thread's namespace.
    pub(crate) fn open(ifindex: u32) -> io::Result<PacketSocket> {
        let fd = packet_socket::open_bound(ifindex, |raw| {
            if !setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1) {
                return Err(io::Error::last_os_error());
            }
            // Every frame carries the kernel's stamp of its arrival (see `clock`).
            // Without it frames count from when the engine read them.
            let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
            // Frames the hub's own stack sends out of this port (its IPv6 link-local
            // chatter) and, on old kernels, our own sends are not traffic to switch.
            // PACKET_IGNORE_OUTGOING exists since Linux 4.20; `recv` also checks.
            let _ = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1);
            // Sends go straight to the veth's xmit (packet_direct_xmit()), past the
            // hub's qdisc layer, which has nothing to do here.
            let _ = setsockopt(raw, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
            // In a user namespace the buffers stay near the default (about 14
            // full-size super-packets or 300 MTU frames). What a full buffer drops is
            // counted (`take_drops`, `Engine::receive_drops`) and TCP recovers from it;
            // the engine drains a port in batches, so ordinary loads never fill it.
            ask_for_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, SOCKET_BUFFER);
            ask_for_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SOCKET_BUFFER);
            Ok(())
        })?;
        Ok(PacketSocket { fd })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives one frame (virtio-net header first) into `buf`: its length and the
    /// kernel's stamp of its arrival (CLOCK_REALTIME nanoseconds, see `clock`), or
    /// `Ok(None)` when nothing is waiting. Frames leaving the interface are skipped.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Option<i64>)>> {
        // Room for one control message: the SCM_TIMESTAMPNS timespec.
        let mut control = [0u64; 8];
        loop {
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: msghdr is plain data (null pointers, zero lengths).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: every pointer in `msg` is valid for the length given with it.
            let n = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let n = n as usize;
            if n > buf.len() {
                // Truncated (cannot happen with MAX_FRAME): not a frame to forward.
                continue;
            }
            return Ok(Some((n, stamp(&msg))));
        }
    }

    /// Frames the kernel dropped for this socket since the last call, because its
    /// receive buffer was full (PACKET_STATISTICS: reading `tp_drops` resets it,
    /// packet_getsockopt()). `None` if the kernel would not say.
    pub(crate) fn take_drops(&self) -> Option<u32> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` and `len` are valid for the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(stats.tp_drops)
    }

    /// Sends one frame (virtio-net header first).
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(());
        }
    }
}

/// The SCM_TIMESTAMPNS stamp among a received message's control messages.
fn stamp(msg: &libc::msghdr) -> Option<i64> {
    // SAFETY: `msg` was filled by recvmsg(2); the CMSG_* walk stays inside its
    // control buffer, and a timespec is read unaligned from the message's data.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}
