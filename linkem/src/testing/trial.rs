//! What the harness sets on the thread that runs one trial (one test on one backend),
//! and what it learns back from there.
//!
//! A trial runs on one thread, on a current-thread runtime (see `linkem-test`), so
//! every network the test builds is created on that thread, whether the harness builds
//! it or the test's own body does (`Network::new`, `Network::builder(..).build()`):
//! * networks that ask for [`BackendKind::Auto`] get the trial's backend (the
//!   backend's thread default);
//! * networks whose builder sets no seed get the trial's seed, unless `LINKEM_SEED`
//!   overrides both;
//! * networks whose builder sets no capture are captured when the trial captures
//!   (the attribute's `capture`, or `LINKEM_CAPTURE`), into files named after the
//!   trial: `<dir>/<test>.<backend>-net<k>.pcapng`, the `k`-th network of the trial;
//! * each network's seed, backend, subnet and capture are recorded, for the failure
//!   report and the replay command.
//!
//! A network built on another thread (a `std::thread::spawn` of the test's, a
//! multi-thread runtime of its own, `spawn_blocking`) sees none of this: it gets
//! `LINKEM_BACKEND` or Auto, a random seed (or `LINKEM_SEED`), and is not reported.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::backend;
use crate::capture::CaptureConfig;
use crate::ip::Subnet;
use crate::network::BackendKind;

/// One network created on a trial's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    /// The network's number in this process (`linkem-net<id>` in thread names).
    pub id: u64,
    /// Its subnet.
    pub subnet: Subnet,
    /// The backend that realised it.
    pub backend: BackendKind,
    /// The seed its links' random streams were derived from.
    pub seed: u64,
    /// The file its capture is written to, if it has one.
    pub capture: Option<PathBuf>,
}

/// Where a trial's captures go: `dir/<stem>-net<k>.pcapng`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialCapture {
    /// The directory (it exists).
    pub dir: PathBuf,
    /// The start of each file's name: the trial's name with `::` written `.`.
    pub stem: String,
}

impl TrialCapture {
    /// The captures of the trial `name` (`path::to::test::backend`) go into `dir`.
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        TrialCapture {
            dir: dir.into(),
            stem: name.replace("::", "."),
        }
    }
}

#[derive(Debug)]
struct State {
    seed: u64,
    networks: Vec<NetworkRecord>,
    capture: Option<TrialCapture>,
    /// The capture files named for this trial's networks, in order.
    captures: Vec<PathBuf>,
}

thread_local! {
    static TRIAL: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Makes the calling thread run a trial on `backend` with `seed`, capturing its
/// networks if `capture` says where, until the guard is dropped (then the thread's
/// previous settings are back).
pub fn enter(backend: BackendKind, seed: u64, capture: Option<TrialCapture>) -> TrialGuard {
    let backend = (backend != BackendKind::Auto).then_some(backend);
    let previous_backend = backend::set_thread_default(backend);
    let previous = TRIAL.with(|t| {
        t.replace(Some(State {
            seed,
            networks: Vec::new(),
            capture,
            captures: Vec::new(),
        }))
    });
    TrialGuard {
        previous,
        previous_backend,
    }
}

/// The backend of the trial running on this thread, if one is.
pub fn backend() -> Option<BackendKind> {
    backend::thread_default()
}

/// The seed a network built on this thread without a seed of its own takes: the
/// trial's, if a trial runs here.
pub(crate) fn default_seed() -> Option<u64> {
    TRIAL.with(|t| t.borrow().as_ref().map(|s| s.seed))
}

/// The capture of the next network built on this thread without one of its own, if a
/// trial that captures runs here: a new file name each call.
pub(crate) fn capture_config() -> Option<CaptureConfig> {
    TRIAL
        .try_with(|t| {
            let mut t = t.borrow_mut();
            let state = t.as_mut()?;
            let capture = state.capture.as_ref()?;
            let k = state.captures.len() + 1;
            let path = capture.dir.join(format!("{}-net{k}.pcapng", capture.stem));
            state.captures.push(path.clone());
            Some(CaptureConfig::new(path))
        })
        .ok()
        .flatten()
}

/// Notes a network created on this thread (nothing outside a trial).
pub(crate) fn record(network: NetworkRecord) {
    // `try_with`: a network built while the thread's locals are being destroyed.
    let _ = TRIAL.try_with(|t| {
        if let Some(state) = t.borrow_mut().as_mut() {
            state.networks.push(network);
        }
    });
}

/// Ends the trial's settings on its thread when dropped.
#[derive(Debug)]
#[must_use = "the trial's settings end when the guard is dropped"]
pub struct TrialGuard {
    previous: Option<State>,
    previous_backend: Option<BackendKind>,
}

impl TrialGuard {
    /// The networks created on this thread since the trial started, in order.
    pub fn networks(&self) -> Vec<NetworkRecord> {
        Self::read(|s| s.networks.clone())
    }

    /// The capture files the trial named for its networks (not those their builders
    /// set), in order; a file may be missing if its network failed to build.
    pub fn captures(&self) -> Vec<PathBuf> {
        Self::read(|s| s.captures.clone())
    }

    /// `f` of the trial's state on this thread, or the default outside a trial.
    fn read<T: Default>(f: impl FnOnce(&State) -> T) -> T {
        TRIAL.with(|t| t.borrow().as_ref().map(f).unwrap_or_default())
    }

    /// Removes the trial's capture files (a passing trial that keeps them only for
    /// failures). A file already gone is no error.
    pub fn remove_captures(&self) -> std::io::Result<()> {
        for path in self.captures() {
            remove_if_present(&path)?;
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Drop for TrialGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        TRIAL.with(|t| *t.borrow_mut() = previous);
        backend::set_thread_default(self.previous_backend);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: u64) -> NetworkRecord {
        NetworkRecord {
            id,
            subnet: Subnet::new([10, 0, 0, 0].into(), 24),
            backend: BackendKind::Userspace,
            seed: 1,
            capture: None,
        }
    }

    #[test]
    fn a_trial_sets_its_backend_and_seed_on_its_thread_only() {
        assert_eq!(backend(), None);
        assert_eq!(default_seed(), None);
        record(net(1)); // outside a trial: forgotten
        let guard = enter(BackendKind::Userspace, 42, None);
        assert_eq!(backend(), Some(BackendKind::Userspace));
        assert_eq!(
            backend::resolve(BackendKind::Auto).unwrap(),
            BackendKind::Userspace,
            "an Auto network takes the trial's backend"
        );
        assert_eq!(
            backend::resolve(BackendKind::Kernel).unwrap(),
            BackendKind::Kernel,
            "an explicit one keeps its own"
        );
        assert_eq!(default_seed(), Some(42));
        std::thread::spawn(|| {
            assert_eq!(backend(), None, "another thread sees no trial");
            assert_eq!(default_seed(), None);
            record(net(9));
        })
        .join()
        .unwrap();
        record(net(2));
        record(net(3));
        let ids: Vec<u64> = guard.networks().iter().map(|n| n.id).collect();
        assert_eq!(ids, [2, 3]);
        drop(guard);
        assert_eq!(backend(), None);
        assert_eq!(default_seed(), None);
    }

    #[test]
    fn trials_nest_and_restore() {
        let outer = enter(BackendKind::Kernel, 1, None);
        {
            let inner = enter(BackendKind::Userspace, 2, None);
            record(net(5));
            assert_eq!(inner.networks().len(), 1);
            assert_eq!(default_seed(), Some(2));
        }
        assert_eq!(backend(), Some(BackendKind::Kernel));
        assert_eq!(default_seed(), Some(1));
        assert!(outer.networks().is_empty());
    }

    #[test]
    fn a_capturing_trial_names_each_network_after_itself() {
        assert!(capture_config().is_none(), "no trial, no capture");
        let dir = std::env::temp_dir().join(format!("linkem-trial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let guard = enter(
            BackendKind::Userspace,
            1,
            Some(TrialCapture::new(&dir, "net::drops_it::userspace")),
        );
        let first = capture_config().unwrap();
        let second = capture_config().unwrap();
        assert_eq!(first.path(), dir.join("net.drops_it.userspace-net1.pcapng"));
        assert_eq!(
            second.path(),
            dir.join("net.drops_it.userspace-net2.pcapng")
        );
        std::thread::spawn(|| assert!(capture_config().is_none(), "another thread"))
            .join()
            .unwrap();
        std::fs::write(first.path(), b"x").unwrap();
        assert_eq!(guard.captures(), [first.path(), second.path()]);
        guard.remove_captures().unwrap();
        assert!(
            !first.path().exists(),
            "removed; the missing second is no error"
        );
        drop(guard);
        assert!(capture_config().is_none());
        let _ = std::fs::remove_dir(&dir);
        {
            let _plain = enter(BackendKind::Kernel, 1, None);
            assert!(capture_config().is_none(), "a trial without capture");
        }
    }
}
