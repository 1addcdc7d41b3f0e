//! Privileges for a plain binary: enter an unprivileged user namespace at the start of
//! `main`, so linkem works for a normal user as it does for root.
//!
//! linkem needs CAP_NET_ADMIN and CAP_SYS_ADMIN over the namespaces it creates. Root has
//! them; a normal user gets them by becoming root inside a new user namespace
//! (user_namespaces(7)): the network namespaces created from there belong to it. The
//! `linkem-test` harness does this for tests; a binary of its own (an example, a demo,
//! a tool) calls [`enter`] first thing in `main`:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     // Before any thread exists: before a tokio runtime is built.
//!     if let Err(e) = linkem::userns::enter() {
//!         eprintln!("{e}");
//!         return std::process::ExitCode::FAILURE;
//!     }
//!     let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//!     runtime.block_on(async { /* build networks here */ });
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! Why "before any thread exists": unshare(2) refuses `CLONE_NEWUSER` with EINVAL in a
//! multi-threaded process (a user namespace is a property of the whole thread group,
//! `unshare_userns()` via `check_unshare_flags()` in kernel/fork.c), and `#[tokio::main]`
//! starts its worker threads before the body runs. [`enter`] checks the thread count
//! itself and says so, instead of an EINVAL.
//!
//! Where it cannot work, the error says exactly why and what to change: unprivileged
//! user namespaces disabled (`kernel.unprivileged_userns_clone=0` on Debian-patched
//! kernels, `user.max_user_namespaces=0`), or Ubuntu 23.10 and later's
//! `kernel.apparmor_restrict_unprivileged_userns=1`, which lets the user namespace be
//! created but takes its capabilities away (seen only when the next step, a network
//! namespace, is refused with EPERM).

use std::fmt;
use std::fs;

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{getegid, geteuid};

/// CAP_NET_ADMIN and CAP_SYS_ADMIN, include/uapi/linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const NEEDED_CAPS: u64 = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN);

/// What [`enter`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    /// The process already had CAP_NET_ADMIN and CAP_SYS_ADMIN (root): nothing changed.
    Root,
    /// The process entered a new user namespace and is root in it, mapped to its real
    /// user and group outside.
    UserNamespace {
        /// The user id outside, mapped to 0 inside.
        uid: u32,
        /// The group id outside, mapped to 0 inside.
        gid: u32,
    },
}

impl fmt::Display for Privileges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Privileges::Root => f.write_str("root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"),
            Privileges::UserNamespace { uid, gid } => write!(
                f,
                "root in an unprivileged user namespace (uid {uid}, gid {gid} outside)"
            ),
        }
    }
}

/// The sysctls that decide whether unprivileged user namespaces work, as read from
/// /proc/sys (`None` where the file does not exist on this kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sysctls {
    /// `kernel.unprivileged_userns_clone` (Debian and Arch kernels carry this patch).
    pub unprivileged_userns_clone: Option<u64>,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10 and later).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
}

impl Sysctls {
    /// Reads them from /proc/sys.
    pub fn read() -> Sysctls {
        let read = |path: &str| {
            fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Sysctls {
            unprivileged_userns_clone: read("/proc/sys/kernel/unprivileged_userns_clone"),
            max_user_namespaces: read("/proc/sys/user/max_user_namespaces"),
            apparmor_restrict_unprivileged_userns: read(
                "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            ),
        }
    }
}

/// Why [`enter`] could not give the process the privileges linkem needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsernsError {
    /// The process already runs more than one thread.
    Threads {
        /// How many threads /proc/self/status counts.
        count: u32,
    },
    /// `kernel.unprivileged_userns_clone` is 0.
    DisabledByClone,
    /// `user.max_user_namespaces` is 0 (or the limit is reached).
    DisabledByMax {
        /// The limit read from /proc/sys/user/max_user_namespaces.
        max: u64,
    },
    /// unshare(CLONE_NEWUSER) failed for another reason.
    Unshare {
        /// The errno.
        errno: Errno,
    },
    /// Writing /proc/self/setgroups, uid_map or gid_map failed.
    Map {
        /// The file.
        file: &'static str,
        /// The errno.
        errno: Errno,
    },
    /// The user namespace exists but a network namespace is refused with EPERM while
    /// `kernel.apparmor_restrict_unprivileged_userns` is 1.
    AppArmor,
    /// A network namespace is refused although the process holds (or was given) the
    /// capabilities: a container's seccomp profile or a missing CONFIG_NET_NS.
    NetNamespace {
        /// Whether the process was root before (no user namespace entered).
        was_root: bool,
        /// The errno.
        errno: Errno,
    },
}

impl fmt::Display for UsernsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NEED: &str = "linkem needs CAP_NET_ADMIN and CAP_SYS_ADMIN over its namespaces";
        match self {
            UsernsError::Threads { count } => write!(
                f,
                "{NEED}, and a normal user gets them by entering a user namespace, which is \
                 only possible while the process has a single thread; this one has {count}. \
                 Call linkem::userns::enter() first thing in main, before a tokio runtime \
                 (#[tokio::main] starts threads before the body runs: use a plain fn main \
                 that builds the runtime after the call), or run as root."
            ),
            UsernsError::DisabledByClone => write!(
                f,
                "{NEED}; this user is not root, and unprivileged user namespaces are \
                 disabled (kernel.unprivileged_userns_clone = 0). Allow them with \
                 `sysctl kernel.unprivileged_userns_clone=1`, or run as root."
            ),
            UsernsError::DisabledByMax { max } => write!(
                f,
                "{NEED}; this user is not root, and no user namespace can be created \
                 (user.max_user_namespaces = {max}). Raise it with \
                 `sysctl user.max_user_namespaces=15000`, or run as root."
            ),
            UsernsError::Unshare { errno } => write!(
                f,
                "{NEED}; this user is not root, and creating an unprivileged user namespace \
                 failed ({errno}). Allow unprivileged user namespaces (a container may need \
                 a seccomp profile that permits unshare), or run as root."
            ),
            UsernsError::Map { file, errno } => write!(
                f,
                "{NEED}; entered a user namespace but writing {file} failed ({errno}), so \
                 this user could not become root in it. Run as root."
            ),
            UsernsError::AppArmor => write!(
                f,
                "{NEED}; the user namespace was created but AppArmor took its capabilities \
                 away (kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu 23.10 and \
                 later), so creating a network namespace failed with EPERM. Either run \
                 `sysctl kernel.apparmor_restrict_unprivileged_userns=0`, or give this \
                 binary an AppArmor profile that allows `userns,` \
                 (see /etc/apparmor.d/ for examples), or run as root."
            ),
            UsernsError::NetNamespace {
                was_root: true,
                errno,
            } => write!(
                f,
                "{NEED}; the process has them, yet creating a network namespace failed \
                 ({errno}). In a container, allow unshare(CLONE_NEWNET) in its seccomp \
                 profile (or run it with --privileged); otherwise the kernel may lack \
                 CONFIG_NET_NS."
            ),
            UsernsError::NetNamespace {
                was_root: false,
                errno,
            } => write!(
                f,
                "{NEED}; the user namespace was entered, yet creating a network namespace \
                 in it failed ({errno}). In a container, allow unshare(CLONE_NEWNET) in its \
                 seccomp profile; otherwise the kernel may lack CONFIG_NET_NS. Or run as \
                 root."
            ),
        }
    }
}

impl std::error::Error for UsernsError {}

/// Gives the process what linkem needs: nothing to do as root (or with CAP_NET_ADMIN and
/// CAP_SYS_ADMIN), else enters a new user namespace that maps the caller's uid and gid
/// to 0. Either way a network namespace is then created on a throwaway thread, to prove
/// it works (so an AppArmor or seccomp refusal is reported here, in a sentence, rather
/// than at the first netlink request).
///
/// Call it at the very start of `main`, while the process has one thread. Calling it
/// again after it succeeded is harmless (the process then has the capabilities).
pub fn enter() -> Result<Privileges, UsernsError> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status_field(&status, "CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok());
    if has_needed_caps(caps) {
        probe_netns().map_err(|errno| probe_error(errno, true, Sysctls::read()))?;
        return Ok(Privileges::Root);
    }
    let threads = status_field(&status, "Threads:").and_then(|v| v.parse().ok());
    if let Some(count) = threads.filter(|&n: &u32| n > 1) {
        return Err(UsernsError::Threads { count });
    }
    let (uid, gid) = (geteuid().as_raw(), getegid().as_raw());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|errno| unshare_error(errno, Sysctls::read()))?;
    // setgroups must be denied before an unprivileged process may write gid_map
    // (user_namespaces(7); since Linux 3.19, commit 66d2f338ee4c).
    for (file, content) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ] {
        if let Err(e) = fs::write(file, content) {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            let sysctls = Sysctls::read();
            if errno == Errno::EPERM && sysctls.apparmor_restrict_unprivileged_userns == Some(1) {
                return Err(UsernsError::AppArmor);
            }
            return Err(UsernsError::Map { file, errno });
        }
    }
    probe_netns().map_err(|errno| probe_error(errno, false, Sysctls::read()))?;
    Ok(Privileges::UserNamespace { uid, gid })
}

/// Whether the process already has CAP_NET_ADMIN and CAP_SYS_ADMIN (root): [`enter`]
/// would change nothing.
pub fn privileged() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    has_needed_caps(status_field(&status, "CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok()))
}

/// The value of one `Name:\tvalue` line of /proc/self/status.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
}

fn has_needed_caps(effective: Option<u64>) -> bool {
    effective.is_some_and(|caps| caps & NEEDED_CAPS == NEEDED_CAPS)
}

/// Which sysctl explains a refused unshare(CLONE_NEWUSER).
fn unshare_error(errno: Errno, sysctls: Sysctls) -> UsernsError {
    match (errno, sysctls) {
        // EPERM from the Debian patch's check in create_user_ns().
        (
            Errno::EPERM,
            Sysctls {
                unprivileged_userns_clone: Some(0),
                ..
            },
        ) => UsernsError::DisabledByClone,
        // ENOSPC (EUSERS before 4.9) from inc_user_namespaces() in kernel/ucount.c.
        (
            Errno::ENOSPC | Errno::EUSERS | Errno::EPERM,
            Sysctls {
                max_user_namespaces: Some(max),
                ..
            },
        ) if errno != Errno::EPERM || max == 0 => UsernsError::DisabledByMax { max },
        _ => UsernsError::Unshare { errno },
    }
}

/// Why a network namespace was refused after the privileges looked right.
fn probe_error(errno: Errno, was_root: bool, sysctls: Sysctls) -> UsernsError {
    if !was_root
        && errno == Errno::EPERM
        && sysctls.apparmor_restrict_unprivileged_userns == Some(1)
    {
        UsernsError::AppArmor
    } else {
        UsernsError::NetNamespace { was_root, errno }
    }
}

/// Creates (and drops) a network namespace on a throwaway thread: unshare(CLONE_NEWNET)
/// changes only the calling thread, so the process's own namespace stays as it was.
fn probe_netns() -> Result<(), Errno> {
    std::thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET))
        .join()
        .unwrap_or(Err(Errno::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tquickstart\nUmask:\t0022\nThreads:\t3\n\
        CapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";

    #[test]
    fn status_fields_are_parsed() {
        assert_eq!(status_field(STATUS, "Threads:"), Some("3"));
        assert_eq!(status_field(STATUS, "CapEff:"), Some("000001ffffffffff"));
        assert_eq!(status_field(STATUS, "CapBnd:"), None);
    }

    #[test]
    fn both_capabilities_are_needed() {
        assert!(has_needed_caps(Some(0x1ff_ffff_ffff)));
        assert!(has_needed_caps(Some(NEEDED_CAPS)));
        assert!(!has_needed_caps(Some(1 << CAP_NET_ADMIN)));
        assert!(!has_needed_caps(Some(1 << CAP_SYS_ADMIN)));
        assert!(!has_needed_caps(Some(0)));
        assert!(!has_needed_caps(None));
    }

    #[test]
    fn refused_unshare_names_the_sysctl() {
        let clone_off = Sysctls {
            unprivileged_userns_clone: Some(0),
            max_user_namespaces: Some(1000),
            ..Default::default()
        };
        assert_eq!(
            unshare_error(Errno::EPERM, clone_off),
            UsernsError::DisabledByClone
        );
        let max_zero = Sysctls {
            max_user_namespaces: Some(0),
            ..Default::default()
        };
        assert_eq!(
            unshare_error(Errno::ENOSPC, max_zero),
            UsernsError::DisabledByMax { max: 0 }
        );
        assert_eq!(
            unshare_error(Errno::EPERM, max_zero),
            UsernsError::DisabledByMax { max: 0 }
        );
        // A limit reached (ENOSPC) is reported with the limit even when it is not 0.
        let max_some = Sysctls {
            max_user_namespaces: Some(5),
            ..Default::default()
        };
        assert_eq!(
            unshare_error(Errno::ENOSPC, max_some),
            UsernsError::DisabledByMax { max: 5 }
        );
        // EPERM with the sysctls allowing it: something else (seccomp) refused.
        assert_eq!(
            unshare_error(Errno::EPERM, max_some),
            UsernsError::Unshare {
                errno: Errno::EPERM
            }
        );
    }

    #[test]
    fn eperm_on_netns_under_apparmor_restriction_is_apparmor() {
        let restricted = Sysctls {
            apparmor_restrict_unprivileged_userns: Some(1),
            ..Default::default()
        };
        assert_eq!(
            probe_error(Errno::EPERM, false, restricted),
            UsernsError::AppArmor
        );
        // Root is not subject to the restriction: another cause.
        assert_eq!(
            probe_error(Errno::EPERM, true, restricted),
            UsernsError::NetNamespace {
                was_root: true,
                errno: Errno::EPERM
            }
        );
        assert_eq!(
            probe_error(Errno::EPERM, false, Sysctls::default()),
            UsernsError::NetNamespace {
                was_root: false,
                errno: Errno::EPERM
            }
        );
    }

    #[test]
    fn messages_are_sentences_naming_the_fix() {
        let apparmor = UsernsError::AppArmor.to_string();
        assert!(apparmor.contains("sysctl kernel.apparmor_restrict_unprivileged_userns=0"));
        assert!(apparmor.contains("userns,"));
        assert!(apparmor.contains("root"));
        let threads = UsernsError::Threads { count: 5 }.to_string();
        assert!(threads.contains("has 5"));
        assert!(threads.contains("before a tokio runtime"));
        assert!(UsernsError::DisabledByClone
            .to_string()
            .contains("sysctl kernel.unprivileged_userns_clone=1"));
        for e in [
            UsernsError::DisabledByMax { max: 0 },
            UsernsError::Unshare {
                errno: Errno::EPERM,
            },
            UsernsError::Map {
                file: "/proc/self/uid_map",
                errno: Errno::EPERM,
            },
        ] {
            let text = e.to_string();
            assert!(text.ends_with('.'), "{text}");
            assert!(!text.contains("{ "), "a Debug dump: {text}");
        }
    }

    #[test]
    fn sysctls_are_read_where_they_exist() {
        // Every kernel since 4.9 has user.max_user_namespaces.
        let s = Sysctls::read();
        let exists = std::path::Path::new("/proc/sys/user/max_user_namespaces").exists();
        assert_eq!(s.max_user_namespaces.is_some(), exists);
    }
}
