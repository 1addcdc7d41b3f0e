//! One namespace test at a time, across threads and processes.
//!
//! Networks are isolated, so running tests together is safe; the lock exists because
//! timing-sensitive tests (latency, bandwidth) measure wrong when they share two cores
//! with others. Under `cargo nextest`, each test is its own process, hence the file
//! lock beside the in-process one. Tests marked `parallel` skip both.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Held while a serialized test runs.
#[derive(Debug)]
pub struct SerialGuard {
    _file: Option<Flock<File>>,
    _local: MutexGuard<'static, ()>,
}

/// The lock file: per user (users cannot disturb each other's namespaces), in the
/// runtime directory when there is one.
pub fn lock_path(uid: u32) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("linkem-test-{uid}.lock"))
}

/// Takes the in-process lock, then the file lock (blocking). A file lock that cannot be
/// had (read-only file system) degrades to the in-process lock alone.
pub fn serialize(path: &std::path::Path) -> SerialGuard {
    let local = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    SerialGuard {
        _file: file,
        _local: local,
    }
}
