//! Network namespaces held by file descriptors.
//!
//! A namespace lives as long as something references it: a thread inside it, an open
//! `/proc/thread-self/ns/net` descriptor, or a socket created in it. linkem keeps only
//! descriptors and sockets (never bind mounts under /run/netns), so every namespace it
//! made disappears with the process, even after SIGKILL.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{Error, Result};

/// A network namespace, alive while this value (or a clone of its `Arc`) exists.
#[derive(Debug)]
pub(crate) struct NetNs {
    fd: OwnedFd,
    inode: u64,
}

impl NetNs {
    /// Creates a namespace and an rtnetlink socket inside it.
    ///
    /// unshare(CLONE_NEWNET) moves only the calling thread, so this runs on a
    /// short-lived thread of its own: the caller's thread (maybe a tokio worker) never
    /// changes namespace. The thread's reference ends when it exits; the returned
    /// descriptor and socket keep the namespace.
    pub(crate) fn create(what: &str) -> Result<(NetNs, Socket)> {
        let what = what.to_string();
        std::thread::Builder::new()
            .name("linkem-unshare".into())
            .spawn(move || -> Result<(NetNs, Socket)> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::system(format!("create the namespace of {what}"), e))?;
                let ns = NetNs::of_current_thread()
                    .map_err(|e| Error::io(format!("open the namespace of {what}"), e))?;
                let socket = route_socket().map_err(|e| {
                    Error::io(format!("open rtnetlink in the namespace of {what}"), e)
                })?;
                Ok((ns, socket))
            })
            .map_err(|e| Error::io("spawn a thread", e))?
            .join()
            .map_err(|_| Error::System {
                op: "create a namespace".into(),
                errno: Errno::EFAULT,
            })?
    }

    /// The namespace of the calling thread.
    pub(crate) fn of_current_thread() -> std::io::Result<NetNs> {
        let file = File::open("/proc/thread-self/ns/net")?;
        let inode = file.metadata()?.ino();
        Ok(NetNs {
            fd: file.into(),
            inode,
        })
    }

    /// Moves the calling thread into this namespace. Only for threads linkem owns.
    pub(crate) fn enter(&self) -> std::result::Result<(), Errno> {
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
    }

    /// The namespace's inode number: its identity in /proc/*/ns/net.
    pub(crate) fn inode(&self) -> u64 {
        self.inode
    }

    /// The raw descriptor, e.g. for IFLA_NET_NS_FD.
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// An rtnetlink socket in the calling thread's namespace, with extended acks (the
/// kernel's error text) and capped acks (errors echo only the request's header, which
/// keeps error replies small and their TLVs at a known offset).
pub(crate) fn route_socket() -> std::io::Result<Socket> {
    let socket = Socket::new(NETLINK_ROUTE)?;
    // Both options exist since Linux 4.12/4.3; failing to set them costs only the
    // kernel's message text, so an old kernel is not refused for it.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);
    Ok(socket)
}
