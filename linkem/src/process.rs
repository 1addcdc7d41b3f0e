//! Unmodified programs inside a peer's namespace.

use std::os::unix::process::CommandExt;
use std::sync::Arc;

use crate::namespace::NetNs;

/// Makes `command`'s child enter `ns` between fork and exec.
///
/// The namespace is captured by `Arc`, so the descriptor stays open as long as the
/// command can still be spawned.
pub(crate) fn enter_before_exec(command: &mut std::process::Command, ns: Arc<NetNs>) {
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // setns(2), which is async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || ns.enter().map_err(std::io::Error::from));
    }
}
