//! What a test body holds: [`Peer`] inside a namespace, [`Controller`] outside.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::{Barrier, Notify};

use crate::network::{Network, PeerContext, PeerId};

/// Who takes part in a test's rendezvous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Who {
    Peer(PeerId),
    Controller,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Peer(peer) => write!(f, "peer {peer}"),
            Who::Controller => f.write_str("the controller"),
        }
    }
}

/// What a body is doing, as far as the rendezvous sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Doing {
    Running,
    WaitingFor(String),
    AtBarrier,
    Done,
}

#[derive(Debug, Default)]
struct State {
    raised: HashSet<String>,
    doing: BTreeMap<Who, Doing>,
}

/// Meeting points shared by the bodies of one test (signals and the barrier), and
/// what each body is waiting on, so that a test that times out can say who was stuck
/// on what.
#[derive(Debug)]
pub(crate) struct Rendezvous {
    barrier: Barrier,
    /// How many bodies call the barrier: every peer running a body.
    parties: usize,
    state: Mutex<State>,
    changed: Notify,
}

impl Rendezvous {
    /// The rendezvous of `bodies` (every peer with a body, and the controller if any).
    pub(crate) fn new(bodies: impl IntoIterator<Item = Who>) -> Self {
        let doing: BTreeMap<Who, Doing> = bodies.into_iter().map(|w| (w, Doing::Running)).collect();
        let parties = doing.keys().filter(|w| matches!(w, Who::Peer(_))).count();
        Rendezvous {
            barrier: Barrier::new(parties.max(1)),
            parties,
            state: Mutex::new(State {
                raised: HashSet::new(),
                doing,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, who: Who, doing: Doing) {
        self.state().doing.insert(who, doing);
    }

    /// `who`'s body returned (or failed).
    pub(crate) fn finished(&self, who: Who) {
        self.set(who, Doing::Done);
    }

    fn signal(&self, name: &str) {
        self.state().raised.insert(name.to_string());
        self.changed.notify_waiters();
    }

    fn reset(&self, name: &str) {
        self.state().raised.remove(name);
    }

    async fn wait(&self, who: Who, name: &str) {
        self.set(who, Doing::WaitingFor(name.to_string()));
        loop {
            // Register interest before checking, so a signal between the check and the
            // await is not missed.
            let notified = self.changed.notified();
            if self.state().raised.contains(name) {
                break;
            }
            notified.await;
        }
        // Not in a drop guard: a body cancelled while waiting (at the timeout) keeps
        // saying what it was waiting for.
        self.set(who, Doing::Running);
    }

    async fn barrier(&self, who: Who) {
        self.set(who, Doing::AtBarrier);
        self.barrier.wait().await;
        self.set(who, Doing::Running);
    }

    /// The bodies that have not returned and what each is doing, one per line; empty
    /// when every body returned.
    pub(crate) fn still_running(&self) -> String {
        let state = self.state();
        let at_barrier = state
            .doing
            .values()
            .filter(|d| **d == Doing::AtBarrier)
            .count();
        let mut out = String::new();
        for (who, doing) in &state.doing {
            let what = match doing {
                Doing::Done => continue,
                Doing::Running => "running (not waiting for a signal or at the barrier)".into(),
                Doing::WaitingFor(name) if state.raised.contains(name) => {
                    format!("waiting for the signal {name:?}, raised just now")
                }
                Doing::WaitingFor(name) => {
                    format!("waiting for the signal {name:?}, which nothing raised")
                }
                Doing::AtBarrier => format!(
                    "waiting at the barrier ({at_barrier} of the {} peers with a body are there)",
                    self.parties
                ),
            };
            let _ = writeln!(out, "  {who}: {what}");
        }
        out
    }
}

/// One peer of a `#[linkem::test]`, handed to its body. The body runs on a thread
/// inside the peer's namespace: sockets it opens and programs it starts see the
/// emulated network.
#[derive(Debug, Clone)]
pub struct Peer {
    ctx: PeerContext,
    rendezvous: Arc<Rendezvous>,
}

impl Peer {
    pub(crate) fn new(ctx: PeerContext, rendezvous: Arc<Rendezvous>) -> Self {
        Peer { ctx, rendezvous }
    }

    /// This peer's id (from 1).
    pub fn id(&self) -> PeerId {
        self.ctx.id()
    }

    /// This peer's address.
    pub fn addr(&self) -> IpAddr {
        self.ctx.addr()
    }

    /// The address of a peer: its [`PeerId`] or its number (from 1), as in
    /// `peer.addr_of(2)` or `peer.addr_of(controller_told_me)`.
    ///
    /// # Panics
    /// When the test has no such peer: a bug in the test, reported as its failure.
    pub fn addr_of(&self, peer: impl Into<PeerId>) -> IpAddr {
        let peer = peer.into();
        self.ctx
            .addr_of(peer)
            .unwrap_or_else(|| panic!("this test has no peer {peer}"))
    }

    /// How many peers the test has.
    pub fn count(&self) -> usize {
        self.ctx.peers().count()
    }

    /// Every other peer's id and address.
    pub fn others(&self) -> Vec<(PeerId, IpAddr)> {
        self.ctx.others().collect()
    }

    /// Waits until every peer running a body has called `barrier` (as many times).
    pub async fn barrier(&self) {
        self.rendezvous.barrier(self.who()).await;
    }

    /// Raises a named signal (say, "listening") for [`Peer::wait_for`].
    pub fn signal(&self, name: &str) {
        self.rendezvous.signal(name);
    }

    /// Waits until some peer (or the controller) raised the signal `name`. A signal
    /// stays raised until [reset](Peer::reset_signal), so waiting after the fact
    /// returns at once. A test that times out says which bodies were still waiting,
    /// and for which signal.
    pub async fn wait_for(&self, name: &str) {
        self.rendezvous.wait(self.who(), name).await;
    }

    /// Lowers the signal `name`, so that the next [`wait_for`](Peer::wait_for) waits
    /// for it to be raised again: for a test in phases, each with its "ready".
    pub fn reset_signal(&self, name: &str) {
        self.rendezvous.reset(name);
    }

    fn who(&self) -> Who {
        Who::Peer(self.id())
    }

    /// A command for an unmodified program; it runs inside this peer's namespace
    /// (the child inherits the namespace of the thread that forks it, and bodies run
    /// on the peer's thread). It is killed if the handle is dropped.
    ///
    /// Unlike [`Network::command`], which names a peer that may not exist and so
    /// returns a `Result`, this cannot fail: the body already runs in its peer's
    /// namespace, and the command only has to be started from there.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::from(self.std_command(program));
        command.kill_on_drop(true);
        command
    }

    /// A blocking [`std::process::Command`] inside this peer's namespace, as
    /// [`Network::std_command`].
    pub fn std_command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        std::process::Command::new(program)
    }
}

/// The controller of a `#[linkem::test]`: runs outside the peers' namespaces while
/// they run, and can change impairments, partition and heal. It dereferences to the
/// [`Network`].
#[derive(Debug, Clone)]
pub struct Controller {
    network: Arc<Network>,
    rendezvous: Arc<Rendezvous>,
}

impl Controller {
    pub(crate) fn new(network: Arc<Network>, rendezvous: Arc<Rendezvous>) -> Self {
        Controller {
            network,
            rendezvous,
        }
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Peer `n` (from 1); the same as `PeerId::from(n)`.
    pub fn peer(&self, n: usize) -> PeerId {
        PeerId::from(n)
    }

    /// Raises a named signal that peers can [`Peer::wait_for`].
    pub fn signal(&self, name: &str) {
        self.rendezvous.signal(name);
    }

    /// Waits until a peer raised the signal `name`.
    pub async fn wait_for(&self, name: &str) {
        self.rendezvous.wait(Who::Controller, name).await;
    }

    /// Lowers the signal `name` (see [`Peer::reset_signal`]).
    pub fn reset_signal(&self, name: &str) {
        self.rendezvous.reset(name);
    }
}

impl Deref for Controller {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_reset_signal_is_waited_for_again() {
        let r = Rendezvous::new([Who::Peer(PeerId(1))]);
        let me = Who::Peer(PeerId(1));
        r.signal("ready");
        block_on(r.wait(me, "ready"));
        r.reset("ready");
        let waited = block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(20), r.wait(me, "ready")).await
        });
        assert!(
            waited.is_err(),
            "after a reset, the old signal does not count"
        );
        r.signal("ready");
        block_on(r.wait(me, "ready"));
    }

    #[test]
    fn the_rendezvous_says_who_waits_on_what() {
        let (one, two, three) = (
            Who::Peer(PeerId(1)),
            Who::Peer(PeerId(2)),
            Who::Peer(PeerId(3)),
        );
        let r = Rendezvous::new([one, two, three, Who::Controller]);
        block_on(async {
            let never = tokio::time::timeout(
                std::time::Duration::from_millis(10),
                r.wait(one, "listening"),
            );
            assert!(never.await.is_err());
            let barrier =
                tokio::time::timeout(std::time::Duration::from_millis(10), r.barrier(two));
            assert!(barrier.await.is_err());
        });
        r.finished(three);
        let text = r.still_running();
        assert_eq!(
            text,
            "  peer 1: waiting for the signal \"listening\", which nothing raised\n\
             \x20 peer 2: waiting at the barrier (1 of the 3 peers with a body are there)\n\
             \x20 the controller: running (not waiting for a signal or at the barrier)\n"
        );
        r.finished(one);
        r.finished(two);
        r.finished(Who::Controller);
        assert_eq!(r.still_running(), "");
    }
}
