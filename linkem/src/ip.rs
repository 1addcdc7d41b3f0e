//! Addressing: the subnet the peers of one network share.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Error;

/// The IPv4 or IPv6 subnet the peers of a network live in. Peer `n` gets the `n`-th
/// host address (`10.0.0.0/24`: peer 1 is `10.0.0.1`).
///
/// [`Subnet::new`] never fails, as in the seed API; a subnet that cannot hold peers is
/// refused by [`Network::new`](crate::network::Network::new) with
/// [`Error::InvalidSubnet`]. [`Subnet::try_new`] checks at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    addr: IpAddr,
    prefix_len: u8,
}

impl Subnet {
    /// A subnet; see [`Subnet::validate`] for what is accepted.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Self {
        Subnet { addr, prefix_len }
    }

    /// A subnet, checked.
    pub fn try_new(addr: IpAddr, prefix_len: u8) -> Result<Self, Error> {
        let subnet = Subnet::new(addr, prefix_len);
        subnet.validate()?;
        Ok(subnet)
    }

    /// The network address as given.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn bits(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    fn as_u128(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => u32::from(a).into(),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// Refuses prefixes longer than the address, host bits set in the address, prefixes
    /// that leave no room for two peers, and loopback, multicast and unspecified ranges.
    pub fn validate(&self) -> Result<(), Error> {
        let refuse = |reason| {
            Err(Error::InvalidSubnet {
                addr: self.addr,
                prefix_len: self.prefix_len,
                reason,
            })
        };
        let bits = self.bits();
        if self.prefix_len > bits {
            return refuse("the prefix length is longer than the address");
        }
        // Two usable host addresses at least: IPv4 loses the network and broadcast
        // addresses, IPv6 the subnet-router anycast address (RFC 4291 2.6.1).
        let max_prefix = match self.addr {
            IpAddr::V4(_) => 30,
            IpAddr::V6(_) => 126,
        };
        if self.prefix_len > max_prefix {
            return refuse("the subnet has room for fewer than two peers");
        }
        let host_bits = u32::from(bits - self.prefix_len);
        let host_mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        if self.as_u128() & host_mask != 0 {
            return refuse("host bits are set: give the network address (e.g. 10.0.0.0/24)");
        }
        let special = match self.addr {
            IpAddr::V4(a) => {
                a.is_loopback() || a.is_multicast() || a.is_unspecified() || a.is_broadcast()
            }
            IpAddr::V6(a) => a.is_loopback() || a.is_multicast() || a.is_unspecified(),
        };
        if special {
            return refuse(
                "loopback, multicast and unspecified ranges cannot be assigned to interfaces",
            );
        }
        Ok(())
    }

    /// How many peers fit: every host address but the network (and, for IPv4, the
    /// broadcast) address. Saturates at `u128::MAX`.
    pub fn capacity(&self) -> u128 {
        let host_bits = u32::from(self.bits().saturating_sub(self.prefix_len));
        let size = 1u128.checked_shl(host_bits).unwrap_or(0);
        match self.addr {
            IpAddr::V4(_) => size.saturating_sub(2),
            IpAddr::V6(_) if size == 0 => u128::MAX,
            IpAddr::V6(_) => size - 1,
        }
    }

    /// The `n`-th host address (`n` from 1), or `None` when the subnet has no such host.
    pub fn host(&self, n: u128) -> Option<IpAddr> {
        if n == 0 || n > self.capacity() {
            return None;
        }
        let value = self.as_u128() + n;
        Some(match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).ok()?)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], p: u8) -> Subnet {
        Subnet::new(Ipv4Addr::from(a).into(), p)
    }

    #[test]
    fn hosts_are_numbered_from_one_and_stop_before_broadcast() {
        let s = v4([10, 0, 0, 0], 30);
        assert_eq!(s.capacity(), 2);
        assert_eq!(s.host(1), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(s.host(2), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(s.host(3), None, "10.0.0.3 is the broadcast address");
        assert_eq!(s.host(0), None);
        let s = v4([192, 168, 0, 0], 16);
        assert_eq!(s.host(256), Some("192.168.1.0".parse().unwrap()));
        assert_eq!(s.capacity(), 65534);
    }

    #[test]
    fn ipv6_hosts() {
        let s = Subnet::try_new("fd00::".parse().unwrap(), 64).unwrap();
        assert_eq!(s.host(1), Some("fd00::1".parse().unwrap()));
        assert_eq!(s.host(0x10000), Some("fd00::1:0".parse().unwrap()));
        let s = Subnet::try_new("fd00::".parse().unwrap(), 126).unwrap();
        assert_eq!(s.capacity(), 3);
        assert_eq!(s.host(3), Some("fd00::3".parse().unwrap()));
        assert_eq!(s.host(4), None);
        let all = Subnet::new("2001:db8::".parse().unwrap(), 0);
        assert_eq!(all.capacity(), u128::MAX);
    }

    #[test]
    fn bad_subnets_are_refused_with_a_reason() {
        let cases = [
            v4([10, 0, 0, 0], 33),
            v4([10, 0, 0, 0], 31),
            v4([10, 0, 0, 0], 32),
            v4([10, 0, 0, 5], 24),
            v4([127, 0, 0, 0], 8),
            v4([224, 0, 0, 0], 24),
            v4([0, 0, 0, 0], 8),
            Subnet::new("fd00::".parse().unwrap(), 129),
            Subnet::new("fd00::".parse().unwrap(), 127),
            Subnet::new("fd00::1".parse().unwrap(), 64),
            Subnet::new("ff02::".parse().unwrap(), 64),
            Subnet::new("::1".parse().unwrap(), 128),
        ];
        for s in cases {
            match s.validate() {
                Err(Error::InvalidSubnet { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{s}: expected InvalidSubnet, got {other:?}"),
            }
        }
        assert!(v4([10, 0, 0, 0], 24).validate().is_ok());
        assert!(v4([10, 0, 0, 0], 30).validate().is_ok());
    }
}
