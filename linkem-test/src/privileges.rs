//! What the process may do with namespaces, decided once, first thing in `main`.
//!
//! Root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) runs as is. Otherwise the harness enters a
//! fresh user namespace, where it is root over the network namespaces it creates; that
//! must happen while the process is still single-threaded (unshare(2) refuses
//! CLONE_NEWUSER in a multi-threaded process). Whether it worked is then probed by
//! creating a network namespace, because some systems (Ubuntu 24.04's AppArmor
//! restriction) let the user namespace be created but strip its capabilities.

use std::fs;

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getegid, geteuid};

/// CAP_NET_ADMIN and CAP_SYS_ADMIN, include/uapi/linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Set to skip the user-namespace attempt (to test the no-privilege path).
pub const NO_USERNS_ENV: &str = "LINKEM_TEST_NO_USERNS";

/// How namespace tests will run in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privileges {
    /// Root, or the needed capabilities.
    Root,
    /// Inside a user namespace this harness entered, as the mapped root.
    Rootless {
        /// The real user id outside.
        uid: u32,
    },
    /// Namespace tests cannot run; the reason says what is missing and how to fix it.
    None(String),
}

impl Privileges {
    /// The reason namespace tests are ignored, if they are.
    pub fn missing(&self) -> Option<&str> {
        match self {
            Privileges::None(reason) => Some(reason),
            _ => None,
        }
    }
}

fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
}

fn has_caps() -> bool {
    let need = (1u64 << CAP_NET_ADMIN) | (1u64 << CAP_SYS_ADMIN);
    effective_caps().is_some_and(|caps| caps & need == need)
}

/// Decides and, if needed, enters a user namespace. Call before any thread starts.
pub fn acquire() -> Privileges {
    let uid = geteuid().as_raw();
    let gid = getegid().as_raw();
    if has_caps() {
        return probe().map_or_else(Privileges::None, |()| Privileges::Root);
    }
    if std::env::var_os(NO_USERNS_ENV).is_some() {
        return Privileges::None(format!(
            "namespace tests need CAP_NET_ADMIN and CAP_SYS_ADMIN; uid {uid} has neither, and \
             {NO_USERNS_ENV} forbids entering a user namespace. Run as root (sudo -E cargo test) \
             or unset {NO_USERNS_ENV}."
        ));
    }
    if let Err(errno) = unshare(CloneFlags::CLONE_NEWUSER) {
        return Privileges::None(format!(
            "namespace tests need CAP_NET_ADMIN and CAP_SYS_ADMIN; uid {uid} has neither, and \
             creating an unprivileged user namespace failed ({errno}). Run as root, or allow \
             user namespaces: sysctl kernel.unprivileged_userns_clone=1 (Debian), \
             user.max_user_namespaces > 0, and on Ubuntu 24.04 \
             kernel.apparmor_restrict_unprivileged_userns=0."
        ));
    }
    // Map ourselves to root inside; setgroups must be denied before an unprivileged
    // process may write gid_map (user_namespaces(7)).
    let maps = fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
        .and_then(|()| fs::write("/proc/self/gid_map", format!("0 {gid} 1")));
    if let Err(e) = maps {
        return Privileges::None(format!(
            "entered a user namespace but could not map uid {uid} to root in it ({e})"
        ));
    }
    match probe() {
        Ok(()) => Privileges::Rootless { uid },
        Err(reason) => Privileges::None(reason),
    }
}

/// Creates (and drops) a network namespace on a throwaway thread.
fn probe() -> Result<(), String> {
    let outcome = std::thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET))
        .join()
        .map_err(|_| "the namespace probe thread panicked".to_string())?;
    outcome.map_err(|errno| {
        format!(
            "creating a network namespace failed ({errno}). If this runs inside a user \
             namespace that lost its capabilities, the cause is likely an AppArmor \
             restriction (Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0, \
             or run as root); in a container, it needs CAP_SYS_ADMIN or a seccomp profile \
             allowing unshare."
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_capabilities() {
        assert!(effective_caps().is_some());
    }
}
