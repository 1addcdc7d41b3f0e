//! What the engine reads from a frame: the virtio-net header a packet socket puts in
//! front of it, the Ethernet addresses, whether the kernel sent it by itself (control
//! traffic), and Internet checksums.
//!
//! Pure: byte slices in, values out.

/// `sizeof(struct virtio_net_hdr)`: the header PACKET_VNET_HDR puts before each frame
/// (include/uapi/linux/virtio_net.h).
pub(crate) const VNET_HDR_LEN: usize = 10;
/// Ethernet header without VLAN tag.
pub(crate) const ETH_HLEN: usize = 14;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` on is still to be done
/// (the frame is CHECKSUM_PARTIAL); the field holds the pseudo-header sum only.
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub(crate) const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub(crate) const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub(crate) const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (UDP_SEGMENT).
pub(crate) const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`, or'ed into `gso_type`.
pub(crate) const GSO_ECN: u8 = 0x80;

pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_ICMPV6: u8 = 58;

/// `struct virtio_net_hdr`. Packet sockets use the legacy header in host byte order
/// (`vio_le()` is the host's endianness, virtio_net_hdr_from_skb()).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct VnetHdr {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    pub(crate) hdr_len: u16,
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
}

impl VnetHdr {
    pub(crate) fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    pub(crate) fn write(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }

    /// The GSO kind without the ECN bit.
    pub(crate) fn gso(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }
}

/// A MAC address.
pub(crate) type Mac = [u8; 6];

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// One station.
    Unicast(Mac),
    /// Broadcast or multicast: every other port.
    Flood,
}

/// What the switch needs to know about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) destination: Destination,
    /// Sent by the kernel on its own (ARP, IPv6 neighbour discovery, router discovery,
    /// MLD, IGMP): switched, but past every impairment.
    pub(crate) control: bool,
}

/// Classifies an Ethernet frame; `None` when it is shorter than an Ethernet header.
pub(crate) fn classify(frame: &[u8]) -> Option<Classified> {
    if frame.len() < ETH_HLEN {
        return None;
    }
    let dst: Mac = frame[0..6].try_into().ok()?;
    // The group bit (I/G) is the least significant bit of the first octet; broadcast
    // has it too.
    let destination = if dst[0] & 1 != 0 {
        Destination::Flood
    } else {
        Destination::Unicast(dst)
    };
    Some(Classified {
        destination,
        control: is_control(frame),
    })
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

/// Traffic the kernel's neighbour and multicast machinery sends by itself.
fn is_control(frame: &[u8]) -> bool {
    let l3 = &frame[ETH_HLEN..];
    match ethertype(frame) {
        ETH_P_ARP => true,
        ETH_P_IP => l3.len() >= 20 && l3[9] == IPPROTO_IGMP,
        ETH_P_IPV6 => match ipv6_upper_layer(l3) {
            Some((IPPROTO_ICMPV6, off)) => l3.get(off).is_some_and(|&t| {
                // MLD query/report/done (130-132), router solicitation/advertisement,
                // neighbour solicitation/advertisement, redirect (133-137), MLDv2
                // report (143).
                matches!(t, 130..=137 | 143)
            }),
            _ => false,
        },
        _ => false,
    }
}

/// The upper-layer protocol of an IPv6 packet and its offset, past the extension
/// headers (MLD reports carry a hop-by-hop router alert).
pub(crate) fn ipv6_upper_layer(ip: &[u8]) -> Option<(u8, usize)> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let mut next = ip[6];
    let mut off = 40;
    for _ in 0..8 {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units,
            // not counting the first 8.
            0 | 43 | 60 => {
                let h = ip.get(off..off + 2)?;
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            // Fragment header: 8 octets.
            44 => {
                next = *ip.get(off)?;
                off += 8;
            }
            _ => return Some((next, off)),
        }
    }
    None
}

/// Ones' complement sum of `data` (as big-endian 16-bit words, odd length padded),
/// added to `initial`; not folded.
pub(crate) fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Four words at once: the sum of 16-bit words equals the folded sum of wider
        // big-endian words (RFC 1071, "byte order independence" and "parallel sum").
        let w = u64::from_be_bytes(c.try_into().unwrap());
        let (s, carry) = acc.overflowing_add(w);
        acc = s + carry as u64;
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        let (s, carry) = acc.overflowing_add(u16::from_be_bytes([w[0], w[1]]) as u64);
        acc = s + carry as u64;
    }
    if let [last] = words.remainder() {
        let (s, carry) = acc.overflowing_add((*last as u64) << 8);
        acc = s + carry as u64;
    }
    acc
}

/// Folds a sum to 16 bits and complements it: the value for a checksum field.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Completes a CHECKSUM_PARTIAL frame as skb_checksum_help() does: the field at
/// `csum_start + csum_offset` holds the pseudo-header sum; the checksum covers
/// everything from `csum_start`. A result of 0 is sent as 0xffff (CSUM_MANGLED_0,
/// which UDP needs and TCP accepts). `false` when the offsets lie outside the frame.
pub(crate) fn complete_checksum(frame: &mut [u8], csum_start: u16, csum_offset: u16) -> bool {
    let start = csum_start as usize;
    let field = start + csum_offset as usize;
    if field + 2 > frame.len() {
        return false;
    }
    let c = fold(sum(&frame[start..], 0));
    let c = if c == 0 { 0xffff } else { c };
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// The IPv4 header checksum, recomputed in place.
pub(crate) fn fix_ipv4_header_checksum(ip: &mut [u8]) {
    let ihl = (ip[0] & 0x0f) as usize * 4;
    ip[10] = 0;
    ip[11] = 0;
    let c = fold(sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The sum of the pseudo-header of an IPv4 or IPv6 packet whose `ip` header starts
/// the slice, for an upper-layer length `l4_len` and protocol `proto`.
pub(crate) fn pseudo_header_sum(ip: &[u8], proto: u8, l4_len: usize) -> u64 {
    let mut acc = proto as u64 + l4_len as u64;
    if ip[0] >> 4 == 4 {
        acc = sum(&ip[12..20], acc);
    } else {
        acc = sum(&ip[8..40], acc);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(dst: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 9]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(next);
        h.push(255);
        h.extend_from_slice(&[0; 32]);
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(h.gso(), GSO_TCPV4);
        assert_eq!(VnetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn unicast_broadcast_and_multicast() {
        let unicast = eth([2, 0, 0, 0, 0, 1], ETH_P_IP, &[0x45; 20]);
        assert_eq!(
            classify(&unicast).unwrap().destination,
            Destination::Unicast([2, 0, 0, 0, 0, 1])
        );
        let bcast = eth([0xff; 6], ETH_P_IP, &[0x45; 20]);
        assert_eq!(classify(&bcast).unwrap().destination, Destination::Flood);
        let mcast6 = eth([0x33, 0x33, 0, 0, 0, 1], ETH_P_IPV6, &ipv6(17, &[0; 8]));
        assert_eq!(classify(&mcast6).unwrap().destination, Destination::Flood);
        assert_eq!(classify(&[0; 13]), None);
    }

    #[test]
    fn control_traffic_is_recognised() {
        let arp = eth([0xff; 6], ETH_P_ARP, &[0; 28]);
        assert!(classify(&arp).unwrap().control);
        let mut igmp = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 1, IPPROTO_IGMP];
        igmp.resize(28, 0);
        assert!(
            classify(&eth([1, 0, 0x5e, 0, 0, 22], ETH_P_IP, &igmp))
                .unwrap()
                .control
        );
        // Neighbour solicitation (135).
        let ns = eth(
            [0x33, 0x33, 0xff, 0, 0, 2],
            ETH_P_IPV6,
            &ipv6(58, &[135, 0, 0, 0]),
        );
        assert!(classify(&ns).unwrap().control);
        // MLDv2 report (143) behind a hop-by-hop header with router alert.
        let mut hbh = vec![58, 0, 5, 2, 0, 0, 1, 0];
        hbh.extend_from_slice(&[143, 0, 0, 0]);
        let mld = eth([0x33, 0x33, 0, 0, 0, 0x16], ETH_P_IPV6, &ipv6(0, &hbh));
        assert!(classify(&mld).unwrap().control);
        // An echo request (128) is the test's own traffic.
        let echo = eth([2, 0, 0, 0, 0, 1], ETH_P_IPV6, &ipv6(58, &[128, 0, 0, 0]));
        assert!(!classify(&echo).unwrap().control);
        let mut udp = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_UDP];
        udp.resize(28, 0);
        assert!(!classify(&eth([0xff; 6], ETH_P_IP, &udp)).unwrap().control);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), !0xddf2);
        // Odd length: the last byte is padded with zero.
        assert_eq!(fold(sum(&[0x12], 0)), !0x1200);
        // Wide and narrow paths agree.
        let long: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let narrow = long
            .chunks(2)
            .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u64)
            .sum::<u64>();
        assert_eq!(fold(sum(&long, 0)), fold(narrow));
    }

    #[test]
    fn a_known_ipv4_header_checksum() {
        // The example header of Wikipedia's "IPv4 header checksum": checksum b861.
        let mut ip = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        fix_ipv4_header_checksum(&mut ip);
        assert_eq!(&ip[10..12], &[0xb8, 0x61]);
    }

    #[test]
    fn completing_a_partial_checksum_gives_a_valid_one() {
        // A UDP datagram over IPv4 whose field holds the pseudo-header sum, as
        // CHECKSUM_PARTIAL leaves it.
        let mut ip = vec![
            0x45,
            0,
            0,
            30,
            0,
            0,
            0,
            0,
            64,
            IPPROTO_UDP,
            0,
            0,
            10,
            0,
            0,
            1,
        ];
        ip.extend_from_slice(&[10, 0, 0, 2]);
        let mut udp = vec![0x30, 0x39, 0x00, 0x35, 0, 10, 0, 0, b'h', b'i'];
        let pseudo = pseudo_header_sum(&ip, IPPROTO_UDP, udp.len());
        let partial = !fold(pseudo);
        udp[6..8].copy_from_slice(&partial.to_be_bytes());
        ip.extend_from_slice(&udp);
        let mut frame = eth([2, 0, 0, 0, 0, 1], ETH_P_IP, &ip);
        assert!(complete_checksum(&mut frame, 34, 6));
        // Verify: the sum over pseudo-header and datagram folds to zero.
        let l4 = &frame[34..];
        assert_eq!(
            fold(sum(l4, pseudo_header_sum(&frame[14..], IPPROTO_UDP, 10))),
            0
        );
        assert!(!complete_checksum(&mut frame, 40, 10));
    }
}
