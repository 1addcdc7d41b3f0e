//! The one error type of linkem.
//!
//! Every variant says which object failed (peer, link, namespace) and keeps the errno
//! and the kernel's own message where there is one, so a failing test explains itself.

use std::fmt;
use std::net::IpAddr;

use nix::errno::Errno;

use crate::link::{Link, PeerId};

/// Result alias used across linkem.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
///
/// `Debug` prints the same sentence as `Display` (followed by the errors it was caused
/// by), as `anyhow` does: a `main` returning `Result<(), Box<dyn Error>>` and a test
/// body returning `Result` show what a reader wants, not a struct dump. `{:#?}` adds
/// the variant's name.
#[derive(thiserror::Error)]
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
        /// The field, as named in [`LinkImpairment`](crate::impairment::LinkImpairment).
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// A packet-capture setting outside what linkem accepts.
    #[error("invalid capture setting: {setting} = {value}: must be {rule}")]
    InvalidCapture {
        /// The setting, as named in [`CaptureConfig`](crate::capture::CaptureConfig).
        setting: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },

    /// A setting (an environment variable or option) with a value linkem does not know.
    #[error("invalid setting: {setting} = {value:?}: must be {rule}")]
    InvalidSetting {
        /// The setting, e.g. the environment variable's name.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What it may be.
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

// The hints, each written once: linkem's errors carry them, and the linkem-test harness
// says them when it decides what can run. Macros, so that `concat!` can build the
// longer ones from the shorter.
macro_rules! userns_hint {
    () => {
        "unprivileged user namespaces must be allowed: sysctl kernel.unprivileged_userns_clone=1 \
         (Debian and derivatives) and user.max_user_namespaces above 0"
    };
}
macro_rules! apparmor_hint {
    () => {
        "Ubuntu 23.10 and later let an unprivileged user namespace be created but deny it the \
         capabilities to configure it (kernel.apparmor_restrict_unprivileged_userns=1): allow it \
         with sysctl kernel.apparmor_restrict_unprivileged_userns=0, or give the test binary an \
         AppArmor profile with the `userns` permission, or run as root"
    };
}

/// How to allow unprivileged user namespaces.
#[doc(hidden)]
pub const USERNS_HINT: &str = userns_hint!();

/// What to do on a system whose AppArmor strips user namespaces of their capabilities.
#[doc(hidden)]
pub const APPARMOR_HINT: &str = apparmor_hint!();

/// The hint given with EPERM/EACCES.
#[doc(hidden)]
pub const PRIVILEGE_HINT: &str = concat!(
    "linkem needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the namespaces it creates: run as root, \
     or let the linkem-test harness enter an unprivileged user namespace (",
    userns_hint!(),
    "; ",
    apparmor_hint!(),
    ")"
);

/// How to get sch_netem, for `Unsupported` errors and the harness's notice about
/// tests it ignores for the lack of it.
#[doc(hidden)]
pub const NETEM_HINT: &str = "load it (modprobe sch_netem; on Ubuntu it is in \
linux-modules-extra), or run on a kernel built with CONFIG_NET_SCH_NETEM (the kernel lane: \
scripts/kernel-lane); bandwidth limits alone work without it";

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.to_string();
        f.write_str(&shown)?;
        // The causes the sentence does not already say (`Io` quotes its source).
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, "\n\ncaused by: {text}")?;
                shown.push_str(&text);
            }
            source = cause.source();
        }
        if f.alternate() {
            write!(f, "\n\n(linkem::Error::{})", self.variant())?;
        }
        Ok(())
    }
}

impl Error {
    /// The variant's name, for `{:#?}`.
    fn variant(&self) -> &'static str {
        match self {
            Error::InvalidSubnet { .. } => "InvalidSubnet",
            Error::SubnetExhausted { .. } => "SubnetExhausted",
            Error::InvalidImpairment { .. } => "InvalidImpairment",
            Error::InvalidCapture { .. } => "InvalidCapture",
            Error::InvalidSetting { .. } => "InvalidSetting",
            Error::UnknownPeer(_) => "UnknownPeer",
            Error::SelfLink(_) => "SelfLink",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::Netlink { .. } => "Netlink",
            Error::System { .. } => "System",
            Error::Unsupported { .. } => "Unsupported",
            Error::PeerPanicked { .. } => "PeerPanicked",
            Error::ShutDown => "ShutDown",
            Error::TcPlan { .. } => "TcPlan",
            Error::Io { .. } => "Io",
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_sentence() {
        let e = Error::UnknownPeer(PeerId(7));
        assert_eq!(
            format!("{e:?}"),
            "unknown peer 7: this network has no such peer"
        );
        assert_eq!(
            format!("{e:#?}"),
            "unknown peer 7: this network has no such peer\n\n(linkem::Error::UnknownPeer)"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(Error::Unsupported {
            feature: "delay".into(),
            module: "sch_netem",
            hint: NETEM_HINT,
        });
        // What `main() -> Result<(), Box<dyn Error>>` prints after "Error: ".
        let shown = format!("{boxed:?}");
        assert!(
            shown.starts_with("delay is not supported by this kernel"),
            "{shown}"
        );
        assert!(!shown.contains("Unsupported {"), "{shown}");
    }

    #[test]
    fn debug_says_a_cause_once() {
        let e = Error::Io {
            op: "read /proc/x".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(format!("{e:?}"), "read /proc/x: gone");
    }

    #[test]
    fn the_privilege_hint_says_every_way_out() {
        for part in [USERNS_HINT, APPARMOR_HINT, "run as root"] {
            assert!(PRIVILEGE_HINT.contains(part), "{part}");
        }
    }
}
