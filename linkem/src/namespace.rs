//! Network namespaces held by file descriptors.
//!
//! A namespace lives as long as something references it: a thread inside it, an open
//! `/proc/thread-self/ns/net` descriptor, or a socket created in it. linkem keeps only
//! descriptors and sockets (never bind mounts under /run/netns), so every namespace it
//! made disappears with the process, even after SIGKILL.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// unshare(CLONE_NEWNET) moves only the calling thread. The caller's thread (maybe
    /// a tokio worker) is back in its own namespace when this returns: either it went
    /// there and back within this call ([`NetNs::create_here`]), or, when the return
    /// trip cannot be guaranteed, the work runs on a short-lived thread of its own.
    /// The returned descriptor and socket keep the namespace alive.
    pub(crate) fn create(what: &str) -> Result<(NetNs, Socket)> {
        match NetNs::create_here(what) {
            Some(created) => created,
            None => NetNs::create_on_thread(what),
        }
    }

    /// Creates the namespace on the calling thread and moves the thread back, all in
    /// this synchronous call, so nothing else runs on the thread meanwhile. This saves
    /// spawning and joining a thread per namespace, which costs little on an idle
    /// machine but up to a scheduler slice (milliseconds) per namespace on a busy one.
    ///
    /// `None` (nothing changed) when the way back is not certain: setns(2) into the
    /// thread's own namespace is tried first, and it makes the same checks as the
    /// return trip (CAP_SYS_ADMIN over the namespace's owner and in the caller's user
    /// namespace, netns_install() in net/core/net_namespace.c). It fails, for example,
    /// in a user namespace that does not own the current network namespace.
    fn create_here(what: &str) -> Option<Result<(NetNs, Socket)>> {
        let home = NetNs::of_current_thread().ok()?;
        home.enter().ok()?;
        if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
            return Some(Err(Error::system(
                format!("create the namespace of {what}"),
                e,
            )));
        }
        let created = NetNs::of_current_thread()
            .map_err(|e| Error::io(format!("open the namespace of {what}"), e))
            .and_then(|ns| {
                let socket = route_socket().map_err(|e| {
                    Error::io(format!("open rtnetlink in the namespace of {what}"), e)
                })?;
                Ok((ns, socket))
            });
        home.return_here();
        Some(created)
    }

    /// Moves the calling thread back into this namespace after [`NetNs::create_here`]
    /// left it. The same call succeeded a moment ago; should it still fail (the kernel
    /// could not allocate the thread's new nsproxy), the thread would go on in the
    /// wrong namespace and everything it runs later with it, silently. That is worse
    /// than stopping, so the process aborts.
    fn return_here(&self) {
        let mut last = Errno::UnknownErrno;
        for _ in 0..3 {
            match self.enter() {
                Ok(()) => return,
                Err(e) => last = e,
            }
        }
        eprintln!(
            "linkem: cannot move a thread back into its network namespace ({last}) after \
             creating one; aborting, since the thread would use the wrong network"
        );
        std::process::abort();
    }

    /// The fallback of [`NetNs::create`]: a short-lived thread enters the new
    /// namespace and exits; its reference ends with it.
    fn create_on_thread(what: &str) -> Result<(NetNs, Socket)> {
        let what = what.to_string();
        NsThread::spawn(
            "linkem-unshare".into(),
            move || -> Result<(NetNs, Socket)> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::system(format!("create the namespace of {what}"), e))?;
                let ns = NetNs::of_current_thread()
                    .map_err(|e| Error::io(format!("open the namespace of {what}"), e))?;
                let socket = route_socket().map_err(|e| {
                    Error::io(format!("open rtnetlink in the namespace of {what}"), e)
                })?;
                Ok((ns, socket))
            },
        )
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

/// A thread of linkem's, joined only once the kernel is done with it.
///
/// pthread_join(3) returns when the kernel clears the thread's tid, in mm_release()
/// early in do_exit(); the exiting thread still holds its network namespace until
/// exit_task_namespaces() and still shows in /proc until release_task(), both later in
/// do_exit(). On a busy machine the gap is long enough for a caller to find a dropped
/// network's namespace still referenced, or its thread still listed (the reliability
/// suite did, as root and rootless). [`NsThread::join`] therefore also waits until the
/// task is released, so that "joined" means "gone".
#[derive(Debug)]
pub(crate) struct NsThread<T> {
    handle: JoinHandle<T>,
    task: Arc<OnceLock<PathBuf>>,
}

impl<T: Send + 'static> NsThread<T> {
    /// Spawns `f` on a thread named `name`.
    pub(crate) fn spawn(
        name: String,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<NsThread<T>> {
        let task = Arc::new(OnceLock::new());
        let own = Arc::clone(&task);
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            if let Some(entry) = task_entry() {
                let _ = own.set(entry);
            }
            f()
        })?;
        Ok(NsThread { handle, task })
    }

    /// Whether the thread's function has returned.
    pub(crate) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread's function to return and for the kernel to release the
    /// thread, namespaces included.
    pub(crate) fn join(self) -> std::thread::Result<T> {
        let out = self.handle.join();
        // Set before the function ran, so visible after the join.
        if let Some(entry) = self.task.get() {
            wait_released(entry);
        }
        out
    }
}

/// Threads a tokio runtime started (its blocking pool) that have finished their work,
/// so that whoever shuts the runtime down can wait for the kernel to release them.
///
/// Blocking-pool threads of a peer's runtime are spawned inside the peer's namespace
/// and hold it like the peer's own thread; tokio joins them on shutdown, which has the
/// same gap as [`NsThread::join`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeThreads {
    stopped: Arc<Mutex<Vec<PathBuf>>>,
}

impl RuntimeThreads {
    /// Records the runtime's threads as they stop.
    pub(crate) fn watch(&self, builder: &mut tokio::runtime::Builder) {
        let stopped = Arc::clone(&self.stopped);
        builder.on_thread_stop(move || {
            if let Some(entry) = task_entry() {
                stopped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(entry);
            }
        });
    }

    /// Waits until every thread that stopped has been released. Threads still running
    /// (work the runtime's shutdown timed out on) are not waited for.
    pub(crate) fn wait_released(&self) {
        let stopped = std::mem::take(&mut *self.stopped.lock().unwrap_or_else(|e| e.into_inner()));
        for entry in stopped {
            wait_released(&entry);
        }
    }
}

/// How long [`wait_released`] waits at most: the release follows the thread's end
/// within microseconds on an idle machine, within scheduler slices on a busy one.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// The calling thread's entry in /proc (`/proc/<pid>/task/<tid>`), in the numbering of
/// the mounted /proc (which gettid(2) need not share, in a container).
fn task_entry() -> Option<PathBuf> {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .map(|relative| PathBuf::from("/proc").join(relative))
}

/// Waits until the thread whose /proc entry is `entry` is released: the entry goes
/// away in release_task(), after exit_task_namespaces(). The tid is not reused
/// meanwhile: pids are allocated cyclically (alloc_pid(), idr_alloc_cyclic()), so only
/// after pid_max others.
fn wait_released(entry: &std::path::Path) {
    let started = Instant::now();
    let mut pause = Duration::from_micros(20);
    while entry.exists() {
        if started.elapsed() > RELEASE_TIMEOUT {
            tracing::warn!(
                task = %entry.display(),
                "a joined thread was not released by the kernel in time"
            );
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn current_inode() -> u64 {
        NetNs::of_current_thread().unwrap().inode()
    }

    /// Both ways of creating a namespace leave the caller where it was and give a new
    /// namespace.
    #[test]
    #[ignore = "needs CAP_SYS_ADMIN: run as root with --ignored (CI does)"]
    fn creating_a_namespace_leaves_the_caller_in_its_own() {
        let home = current_inode();
        let (created, _socket) = NetNs::create("a test").unwrap();
        assert_eq!(current_inode(), home);
        assert_ne!(created.inode(), home);

        let (other, _socket) = NetNs::create_on_thread("a test").unwrap();
        assert_eq!(current_inode(), home);
        assert_ne!(other.inode(), home);
        assert_ne!(other.inode(), created.inode());
    }
}
