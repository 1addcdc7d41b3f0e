//! Software segmentation of offload super-packets into wire packets.
//!
//! A veth with GSO on hands a packet socket TCP frames of up to 64 KB, described by the
//! virtio-net header (`gso_type`, `gso_size` = the MSS). The engine decides each wire
//! packet's fate, so where fates differ it cuts the super-packet the way the kernel's
//! GSO would (tcp_gso_segment()/tcp4_gso_segment()/tcp6_gso_segment(),
//! __udp_gso_segment()): every segment gets the headers, its own IPv4 total length and
//! ID (incremented per segment, as inet_gso_segment() does without FIXEDID), IPv6
//! payload length, TCP sequence number, flags (FIN and PSH only on the last segment,
//! CWR only on the first: tcp_gso_segment() clears them), UDP length, and complete
//! checksums. Segments leave without a GSO or NEEDS_CSUM header, so the receiver
//! verifies their checksums in software, like frames from a real wire.
//!
//! Pure: byte slices in, buffers out.

use super::frame::{
    fix_ipv4_header_checksum, fold, pseudo_header_sum, sum, VnetHdr, ETH_HLEN, ETH_P_IP,
    ETH_P_IPV6, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, IPPROTO_TCP, IPPROTO_UDP, VNET_HDR_LEN,
};

/// How many wire packets a frame stands for, and their lengths (the whole Ethernet
/// frame each, as tc counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wire {
    /// Number of wire packets (1 for an ordinary frame).
    pub(crate) count: u32,
    /// Length of each but the last.
    pub(crate) full: u32,
    /// Length of the last (the only one when `count` is 1).
    pub(crate) last: u32,
}

impl Wire {
    /// One wire packet of `len` bytes.
    pub(crate) fn single(len: usize) -> Wire {
        Wire {
            count: 1,
            full: len as u32,
            last: len as u32,
        }
    }

    /// The length of wire packet `i`.
    pub(crate) fn len_of(&self, i: u32) -> u32 {
        if i + 1 == self.count {
            self.last
        } else {
            self.full
        }
    }

    /// All wire bytes together.
    pub(crate) fn bytes(&self) -> u64 {
        (self.count as u64 - 1) * self.full as u64 + self.last as u64
    }
}

/// Where the headers of a segmentable super-packet are.
#[derive(Debug, Clone, Copy)]
struct Layout {
    ipv4: bool,
    /// Offset of the TCP or UDP header.
    l4: usize,
    /// Offset of the payload.
    payload: usize,
    /// Payload bytes per segment.
    mss: usize,
    proto: u8,
}

fn layout(hdr: &VnetHdr, frame: &[u8]) -> Option<Layout> {
    let gso = hdr.gso();
    if gso == GSO_NONE || hdr.gso_size == 0 || frame.len() < ETH_HLEN + 40 {
        return None;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[ETH_HLEN..];
    let (ipv4, proto, l4) = match ethertype {
        ETH_P_IP if ip[0] >> 4 == 4 => (true, ip[9], ETH_HLEN + (ip[0] & 0x0f) as usize * 4),
        // TSO over IPv6 extension headers is not produced by Linux's TCP; a frame that
        // has them is left whole.
        ETH_P_IPV6 if ip[0] >> 4 == 6 => (false, ip[6], ETH_HLEN + 40),
        _ => return None,
    };
    let l4_len = match (gso, proto) {
        (GSO_TCPV4, IPPROTO_TCP) if ipv4 => (*frame.get(l4 + 12)? >> 4) as usize * 4,
        (GSO_TCPV6, IPPROTO_TCP) if !ipv4 => (*frame.get(l4 + 12)? >> 4) as usize * 4,
        (GSO_UDP_L4, IPPROTO_UDP) => 8,
        _ => return None,
    };
    let payload = l4 + l4_len;
    if l4_len < 8 || payload > frame.len() {
        return None;
    }
    Some(Layout {
        ipv4,
        l4,
        payload,
        mss: hdr.gso_size as usize,
        proto,
    })
}

/// The wire packets `frame` (after its virtio-net header `hdr`) stands for. A frame
/// whose GSO kind the engine cannot segment counts as one packet and is sent whole.
pub(crate) fn wire(hdr: &VnetHdr, frame: &[u8]) -> Wire {
    let Some(l) = layout(hdr, frame) else {
        return Wire::single(frame.len());
    };
    let payload = frame.len() - l.payload;
    if payload <= l.mss {
        return Wire::single(frame.len());
    }
    let count = payload.div_ceil(l.mss);
    Wire {
        count: count as u32,
        full: (l.payload + l.mss) as u32,
        last: (l.payload + payload - (count - 1) * l.mss) as u32,
    }
}

/// Cuts `frame` into its wire packets, each in a buffer of its own that starts with a
/// zeroed virtio-net header (no GSO, checksums complete). `None` when the frame is not
/// a super-packet the engine can segment (then it is one wire packet, see [`wire`]).
pub(crate) fn segment(hdr: &VnetHdr, frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    let l = layout(hdr, frame)?;
    let headers = &frame[..l.payload];
    let payload = &frame[l.payload..];
    if payload.len() <= l.mss {
        return None;
    }
    let count = payload.len().div_ceil(l.mss);
    let ip_id = u16::from_be_bytes([frame[ETH_HLEN + 4], frame[ETH_HLEN + 5]]);
    let seq0 = u32::from_be_bytes(frame[l.l4 + 4..l.l4 + 8].try_into().ok()?);
    let mut out = Vec::with_capacity(count);
    for (i, chunk) in payload.chunks(l.mss).enumerate() {
        let mut b = vec![0u8; VNET_HDR_LEN + headers.len() + chunk.len()];
        let f = &mut b[VNET_HDR_LEN..];
        f[..headers.len()].copy_from_slice(headers);
        f[headers.len()..].copy_from_slice(chunk);
        let l4_len = f.len() - l.l4;
        {
            let ip = &mut f[ETH_HLEN..];
            if l.ipv4 {
                let total = (l.l4 - ETH_HLEN + l4_len) as u16;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[4..6].copy_from_slice(&ip_id.wrapping_add(i as u16).to_be_bytes());
                fix_ipv4_header_checksum(ip);
            } else {
                ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
        }
        let pseudo = pseudo_header_sum(&f[ETH_HLEN..], l.proto, l4_len);
        let l4 = &mut f[l.l4..];
        let csum_field = if l.proto == IPPROTO_TCP {
            let seq = seq0.wrapping_add((i * l.mss) as u32);
            l4[4..8].copy_from_slice(&seq.to_be_bytes());
            const FIN: u8 = 0x01;
            const PSH: u8 = 0x08;
            const CWR: u8 = 0x80;
            if i + 1 != count {
                l4[13] &= !(FIN | PSH);
            }
            if i != 0 {
                l4[13] &= !CWR;
            }
            16
        } else {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            6
        };
        l4[csum_field] = 0;
        l4[csum_field + 1] = 0;
        let c = fold(sum(l4, pseudo));
        // A UDP checksum of 0 means "none"; a computed 0 is sent as 0xffff (RFC 768).
        let c = if c == 0 && l.proto == IPPROTO_UDP {
            0xffff
        } else {
            c
        };
        l4[csum_field..csum_field + 2].copy_from_slice(&c.to_be_bytes());
        out.push(b);
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::frame::{F_NEEDS_CSUM, GSO_ECN};
    use super::*;

    /// A TCP super-packet over IPv4 or IPv6 with `payload` bytes, flags `flags`, as
    /// veth hands it over: checksum field holding only the pseudo-header sum.
    pub(crate) fn tcp_super_packet(ipv4: bool, payload: usize, flags: u8) -> (VnetHdr, Vec<u8>) {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let l4_len = 20 + payload;
        if ipv4 {
            f.extend_from_slice(&ETH_P_IP.to_be_bytes());
            let total = (20 + l4_len) as u16;
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&[0xff, 0xfe, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            fix_ipv4_header_checksum(&mut f[ETH_HLEN..]);
        } else {
            f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[IPPROTO_TCP, 64]);
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[15] = 1;
            f.extend_from_slice(&a);
            a[15] = 2;
            f.extend_from_slice(&a);
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89]);
        f.extend_from_slice(&0xffff_fff0u32.to_be_bytes()); // seq wraps within the packet
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&data);
        let pseudo = pseudo_header_sum(&f[ETH_HLEN..], IPPROTO_TCP, l4_len);
        let partial = !fold(pseudo);
        f[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if ipv4 { GSO_TCPV4 } else { GSO_TCPV6 } | GSO_ECN,
            hdr_len: (l4 + 20) as u16,
            gso_size: 1448,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        (hdr, f)
    }

    fn valid_l4_checksum(seg: &[u8], l4: usize, proto: u8) -> bool {
        let pseudo = pseudo_header_sum(&seg[ETH_HLEN..], proto, seg.len() - l4);
        fold(sum(&seg[l4..], pseudo)) == 0
    }

    #[test]
    fn tcp_over_ipv4_is_cut_like_the_kernel_does() {
        const FIN: u8 = 0x01;
        const PSH: u8 = 0x08;
        const ACK: u8 = 0x10;
        const CWR: u8 = 0x80;
        let (hdr, frame) = tcp_super_packet(true, 1448 * 3 + 100, ACK | PSH | FIN | CWR);
        let w = wire(&hdr, &frame);
        assert_eq!(
            w,
            Wire {
                count: 4,
                full: 14 + 20 + 20 + 1448,
                last: 14 + 20 + 20 + 100
            }
        );
        let segs = segment(&hdr, &frame).unwrap();
        assert_eq!(segs.len(), 4);
        let mut payload = Vec::new();
        for (i, b) in segs.iter().enumerate() {
            assert_eq!(VnetHdr::parse(b).unwrap(), VnetHdr::default());
            let s = &b[VNET_HDR_LEN..];
            assert_eq!(s.len() as u32, w.len_of(i as u32));
            let ip = &s[ETH_HLEN..];
            assert_eq!(
                u16::from_be_bytes([ip[2], ip[3]]) as usize,
                s.len() - ETH_HLEN
            );
            assert_eq!(
                u16::from_be_bytes([ip[4], ip[5]]),
                0xfffeu16.wrapping_add(i as u16)
            );
            assert_eq!(fold(sum(&ip[..20], 0)), 0, "IPv4 header checksum");
            let tcp = &s[34..];
            let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1448 * i as u32));
            let flags = tcp[13];
            assert_eq!(flags & ACK, ACK);
            assert_eq!(flags & (FIN | PSH) != 0, i == 3, "segment {i}");
            assert_eq!(flags & CWR != 0, i == 0, "segment {i}");
            assert!(valid_l4_checksum(s, 34, IPPROTO_TCP), "segment {i}");
            payload.extend_from_slice(&tcp[20..]);
        }
        assert_eq!(payload, frame[54..]);
    }

    #[test]
    fn tcp_over_ipv6_is_cut_with_payload_lengths() {
        let (hdr, frame) = tcp_super_packet(false, 1448 * 2 + 1, 0x18);
        let segs = segment(&hdr, &frame).unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(
            wire(&hdr, &frame).bytes(),
            segs.iter().map(|s| (s.len() - 10) as u64).sum()
        );
        for s in &segs {
            let s = &s[VNET_HDR_LEN..];
            let plen = u16::from_be_bytes([s[18], s[19]]) as usize;
            assert_eq!(plen, s.len() - 54);
            assert!(valid_l4_checksum(s, 54, IPPROTO_TCP));
        }
    }

    #[test]
    fn udp_gso_is_cut_into_datagrams() {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let payload = 1000 * 2 + 500;
        let total = (20 + 8 + payload) as u16;
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 1, 0, 0, 64, IPPROTO_UDP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x13, 0x89]);
        f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend((0..payload).map(|i| i as u8));
        let hdr = VnetHdr {
            gso_type: GSO_UDP_L4,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let segs = segment(&hdr, &f).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            let s = &s[VNET_HDR_LEN..];
            assert_eq!(u16::from_be_bytes([s[38], s[39]]) as usize, s.len() - 34);
            assert!(valid_l4_checksum(s, 34, IPPROTO_UDP));
        }
    }

    #[test]
    fn ordinary_frames_are_one_wire_packet() {
        let (mut hdr, frame) = tcp_super_packet(true, 1448, 0x10);
        assert_eq!(wire(&hdr, &frame), Wire::single(frame.len()));
        assert!(segment(&hdr, &frame).is_none());
        hdr.gso_type = GSO_NONE;
        let (_, big) = tcp_super_packet(true, 5000, 0x10);
        assert_eq!(wire(&hdr, &big), Wire::single(big.len()));
        assert!(segment(&hdr, &big).is_none());
    }
}
