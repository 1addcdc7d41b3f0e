//! The one error type of linkem.
//!
//! Every variant says which object failed (peer, link, namespace) and keeps the errno
//! and the kernel's own message where there is one, so a failing test explains itself.

use std::net::IpAddr;

use nix::errno::Errno;

use crate::network::{Link, PeerId};

/// Result alias used across linkem.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A subnet that cannot hold peers.
    #[error("invalid subnet {addr}/{prefix_len}: {reason}")]
    InvalidSubnet {
        /// The address given.
        addr: IpAddr,
        /// The prefix length given.
        prefix_len: u8,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The subnet has no host address left for another peer.
    #[error("subnet {subnet} is exhausted: it holds {capacity} peers, and peer {peer} would be one more")]
    SubnetExhausted {
        /// The subnet, as `addr/len`.
        subnet: String,
        /// How many peers it can hold.
        capacity: u128,
        /// The id the next peer would have had.
        peer: PeerId,
    },

    /// An impairment value outside what linkem or the kernel accepts.
    #[error("invalid impairment: {field} = {value}: must be {rule}")]
    InvalidImpairment {
        /// The field, as named in [`LinkImpairment`](crate::tc::impairment::LinkImpairment).
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// A peer id that this network does not have.
    #[error("unknown peer {0}: this network has no such peer")]
    UnknownPeer(PeerId),

    /// A link from a peer to itself.
    #[error("invalid link {0}: a link needs two different peers")]
    SelfLink(Link),

    /// The operation lacks a privilege.
    #[error("{op}: permission denied ({errno}): {hint}")]
    PermissionDenied {
        /// What was being done.
        op: String,
        /// The errno (EPERM or EACCES).
        errno: Errno,
        /// What is missing and how to get it.
        hint: &'static str,
    },

    /// The kernel refused a netlink request.
    #[error("{op}: {errno}{}", .message.as_deref().map(|m| format!(" (kernel: {m})")).unwrap_or_default())]
    Netlink {
        /// What was being done, naming the peer, link or object.
        op: String,
        /// The errno the kernel answered.
        errno: Errno,
        /// The kernel's extended-ack message, when it gave one.
        message: Option<String>,
    },

    /// A system call around namespaces or threads failed.
    #[error("{op}: {errno}")]
    System {
        /// What was being done.
        op: String,
        /// The errno.
        errno: Errno,
    },

    /// The kernel lacks a feature the request needs.
    #[error("{feature} is not supported by this kernel: {module} is missing ({hint})")]
    Unsupported {
        /// What was asked for.
        feature: String,
        /// The kernel module or option that provides it.
        module: &'static str,
        /// How to get it.
        hint: &'static str,
    },

    /// Code run inside a peer's namespace panicked.
    #[error("peer {peer} panicked: {message}")]
    PeerPanicked {
        /// The peer.
        peer: PeerId,
        /// The panic message.
        message: String,
    },

    /// The network was shut down, or its driver thread is gone.
    #[error("the network is shut down")]
    ShutDown,

    /// A traffic-control tree that cannot be built as asked (too many destinations, two
    /// destinations the classifier cannot tell apart).
    #[error("cannot plan traffic control for {what}: {reason}")]
    TcPlan {
        /// What was being planned (the peer or destination).
        what: String,
        /// Why, and what would work.
        reason: String,
    },

    /// An I/O error outside netlink (reading /proc, spawning a process).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The hint given with EPERM/EACCES.
pub(crate) const PRIVILEGE_HINT: &str = "linkem needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the \
namespaces it creates: run as root, or let the linkem-test harness enter an unprivileged user \
namespace (unprivileged user namespaces must be allowed: sysctl kernel.unprivileged_userns_clone=1; \
on Ubuntu 24.04 also kernel.apparmor_restrict_unprivileged_userns=0)";

impl Error {
    /// The errno behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::PermissionDenied { errno, .. }
            | Error::Netlink { errno, .. }
            | Error::System { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// A failed system call, turned into `PermissionDenied` for EPERM/EACCES.
    pub(crate) fn system(op: impl Into<String>, errno: Errno) -> Self {
        match errno {
            Errno::EPERM | Errno::EACCES => Error::PermissionDenied {
                op: op.into(),
                errno,
                hint: PRIVILEGE_HINT,
            },
            _ => Error::System {
                op: op.into(),
                errno,
            },
        }
    }

    /// An I/O error; EPERM/EACCES become `PermissionDenied`.
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        match source.raw_os_error().map(Errno::from_raw) {
            Some(errno @ (Errno::EPERM | Errno::EACCES)) => Error::system(op, errno),
            _ => Error::Io {
                op: op.into(),
                source,
            },
        }
    }
}
