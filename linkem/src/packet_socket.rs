//! AF_PACKET sockets bound to one interface, opened inside the namespace that holds
//! it: the userspace engine's switch ports and the kernel backend's capture taps both
//! open theirs here, and differ only in the options set before bind().

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::namespace::{NetNs, NsThread};

/// Sets an integer socket option; whether the kernel took it.
pub(crate) fn setsockopt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: `value` lives across the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Asks for a buffer of `size` bytes (`force`: SO_RCVBUFFORCE or SO_SNDBUFFORCE), or
/// for as much as the plain option (`plain`) allows. The FORCE variants need
/// CAP_NET_ADMIN in the initial user namespace (sock_setsockopt()); in a user
/// namespace the plain ones apply, capped by net.core.rmem_max/wmem_max (212,992 bytes
/// by default, which the kernel doubles).
pub(crate) fn ask_for_buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int, size: libc::c_int) {
    if !setsockopt(fd, libc::SOL_SOCKET, force, size) {
        let _ = setsockopt(fd, libc::SOL_SOCKET, plain, size);
    }
}

/// Opens a non-blocking packet socket for every protocol on `ifindex` of the calling
/// thread's namespace; `configure` sets its options before it is bound.
pub(crate) fn open_bound(
    ifindex: u32,
    configure: impl FnOnce(RawFd) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives nothing until bind() names the protocol and
    // interface, so no frame of another interface slips in between.
    // SAFETY: plain system call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    configure(fd.as_raw_fd())?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Runs `open` in namespace `ns` and returns what it opened (`what` names it in
/// errors). A socket belongs to the namespace its creator was in (sock_net()), so it
/// is created on a short-lived thread that enters `ns`; the calling thread stays where
/// it is. An NsThread: its join returns only once the kernel has let go of the thread
/// and with it of its reference to `ns` (see namespace::NsThread).
pub(crate) fn open_in<T: Send + 'static>(
    ns: &Arc<NetNs>,
    what: &str,
    open: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    let (ns, what) = (Arc::clone(ns), what.to_string());
    NsThread::spawn("linkem-socket".into(), move || {
        ns.enter()
            .map_err(|e| Error::system(format!("enter a namespace to open {what}"), e))?;
        open().map_err(|e| Error::io(format!("open {what}"), e))
    })
    .map_err(|e| Error::io("spawn a thread", e))?
    .join()
    .unwrap_or_else(|_| Err(Error::ShutDown))
}
