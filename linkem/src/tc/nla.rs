//! Raw netlink attributes, for the qdisc options netlink-packet-route has no types for.
//!
//! An attribute is `struct nlattr { u16 len; u16 type; }` followed by its payload and
//! padded to 4 bytes; `len` counts header and payload but not the padding. Values are in
//! host byte order. The kind of a tc object's `TCA_OPTIONS` decides its layout (a flat
//! struct for netem, nested attributes for HTB and TBF), so linkem builds the payload
//! here and hands it to netlink-packet-route as an opaque attribute ([`options`]).

use rtnetlink::packet_core::DefaultNla;
use rtnetlink::packet_route::tc::TcAttribute;

/// `TCA_OPTIONS`, the attribute that carries a qdisc's, class's or filter's options.
pub const TCA_OPTIONS: u16 = 2;

/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// Rounds a length up to netlink's 4-byte alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Appends one attribute: header, payload, padding.
///
/// # Panics
/// If the payload does not fit an attribute (65531 bytes); linkem's largest is netem's
/// delay table, 8192 bytes.
pub fn put(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(NLA_HDRLEN + payload.len()).expect("netlink attribute too long");
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

/// Appends a `u32` attribute.
pub fn put_u32(out: &mut Vec<u8>, kind: u16, value: u32) {
    put(out, kind, &value.to_ne_bytes());
}

/// Appends a `u64` attribute.
pub fn put_u64(out: &mut Vec<u8>, kind: u16, value: u64) {
    put(out, kind, &value.to_ne_bytes());
}

/// Appends an `i64` attribute.
pub fn put_i64(out: &mut Vec<u8>, kind: u16, value: i64) {
    put(out, kind, &value.to_ne_bytes());
}

/// Appends a nested attribute whose payload `fill` writes.
pub fn put_nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    put(out, kind, &inner);
}

/// A `TCA_OPTIONS` attribute carrying `payload` as it is.
///
/// This is how the flat netem struct must travel: `TcAttribute::Options` would wrap
/// it in typed options, and the kernel reads `TCA_OPTIONS`' payload directly.
pub fn options(payload: Vec<u8>) -> TcAttribute {
    TcAttribute::Other(DefaultNla::new(TCA_OPTIONS, payload))
}

/// Iterates over the attributes in `buf` as `(type, payload)`; stops at the first
/// malformed header.
pub fn iter(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let header = buf.get(pos..pos + NLA_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]);
        if len < NLA_HDRLEN {
            return None;
        }
        let payload = buf.get(pos + NLA_HDRLEN..pos + len)?;
        pos += align(len);
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::Emitable;

    #[test]
    fn pads_to_four_bytes() {
        let mut out = vec![];
        put(&mut out, 1, b"mirred\0");
        assert_eq!(out, b"\x0b\x00\x01\x00mirred\0\0");
        put_u32(&mut out, 7, 0x01020304);
        assert_eq!(&out[12..], &[8, 0, 7, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn nested_counts_its_children() {
        let mut out = vec![];
        put_nested(&mut out, 5, |inner| {
            put_u32(inner, 1, 1);
            put_u64(inner, 2, 2);
        });
        assert_eq!(&out[..4], &[24, 0, 5, 0]);
        let children: Vec<_> = iter(&out[4..]).map(|(k, v)| (k, v.len())).collect();
        assert_eq!(children, [(1, 4), (2, 8)]);
    }

    #[test]
    fn iter_stops_on_truncation() {
        let mut out = vec![];
        put_i64(&mut out, 10, -1);
        assert_eq!(iter(&out).count(), 1);
        assert_eq!(iter(&out[..8]).count(), 0);
        assert_eq!(iter(&[2, 0, 1, 0]).count(), 0, "length below the header");
    }

    #[test]
    fn options_are_emitted_verbatim() {
        let attr = options(vec![1, 2, 3, 4]);
        let mut buf = vec![0; attr.buffer_len()];
        attr.emit(&mut buf);
        assert_eq!(buf, [8, 0, 2, 0, 1, 2, 3, 4]);
    }
}
