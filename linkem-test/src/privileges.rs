//! What the process may do with namespaces, decided once, first thing in `main`.
//!
//! Root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) runs as is. Otherwise the harness enters a
//! fresh user namespace, where it is root over the network namespaces it creates, with
//! [`linkem::userns::enter`] (the one home of that logic, shared with plain binaries):
//! it must happen while the process is still single-threaded, and it proves the result
//! by creating a network namespace, so that systems which let the user namespace be
//! created but strip its capabilities (Ubuntu 23.10 and later, with
//! `kernel.apparmor_restrict_unprivileged_userns=1`) are recognised before any test
//! runs and reported with their fix, rather than as the EPERM of the first netlink
//! request. Whatever stops it becomes the reason every namespace test is ignored.

use linkem::userns::{self, UsernsError};
use nix::unistd::geteuid;

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

/// Decides and, if needed, enters a user namespace. Call before any thread starts.
pub fn acquire() -> Privileges {
    if !userns::privileged() && std::env::var_os(NO_USERNS_ENV).is_some() {
        let uid = geteuid().as_raw();
        return Privileges::None(format!(
            "namespace tests need CAP_NET_ADMIN and CAP_SYS_ADMIN; uid {uid} has neither, and \
             {NO_USERNS_ENV} forbids entering a user namespace. Run as root (sudo -E cargo test) \
             or unset {NO_USERNS_ENV}."
        ));
    }
    match userns::enter() {
        Ok(userns::Privileges::Root) => Privileges::Root,
        Ok(userns::Privileges::UserNamespace { uid, .. }) => Privileges::Rootless { uid },
        Err(e) => Privileges::None(reason(&e)),
    }
}

/// Why namespace tests are ignored when [`userns::enter`] failed.
fn reason(error: &UsernsError) -> String {
    format!("namespace tests cannot run: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn apparmor_confinement_is_named_with_its_fix() {
        let text = reason(&UsernsError::AppArmor);
        assert!(text.starts_with("namespace tests cannot run: "), "{text}");
        assert!(
            text.contains("kernel.apparmor_restrict_unprivileged_userns = 1"),
            "{text}"
        );
        assert!(
            text.contains("sysctl kernel.apparmor_restrict_unprivileged_userns=0"),
            "{text}"
        );
        assert!(
            text.contains("`userns,`") && text.contains("root"),
            "{text}"
        );
        assert!(text.contains("EPERM"), "{text}");
        let other = reason(&UsernsError::NetNamespace {
            was_root: false,
            errno: Errno::ENOSPC,
        });
        assert!(!other.contains("AppArmor"), "{other}");
    }

    #[test]
    fn this_process_is_judged_as_enter_judges_it() {
        // The unit tests run under libtest (threads exist): no user namespace is
        // entered here, only the root case can be checked.
        if userns::privileged() {
            assert_eq!(acquire(), Privileges::Root);
        }
    }
}
