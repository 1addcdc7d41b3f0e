//! What a test body holds: [`Peer`] inside a namespace, [`Controller`] outside.

use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use tokio::sync::{Barrier, Notify};

use crate::network::{Network, PeerContext, PeerId};

/// Meeting points shared by the peers of one test.
#[derive(Debug)]
pub(crate) struct Rendezvous {
    barrier: Barrier,
    signals: Mutex<HashSet<String>>,
    changed: Notify,
}

impl Rendezvous {
    pub(crate) fn new(parties: usize) -> Self {
        Rendezvous {
            barrier: Barrier::new(parties.max(1)),
            signals: Mutex::new(HashSet::new()),
            changed: Notify::new(),
        }
    }

    fn signal(&self, name: &str) {
        self.signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        self.changed.notify_waiters();
    }

    fn is_signalled(&self, name: &str) -> bool {
        self.signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    async fn wait(&self, name: &str) {
        loop {
            // Register interest before checking, so a signal between the check and the
            // await is not missed.
            let notified = self.changed.notified();
            if self.is_signalled(name) {
                return;
            }
            notified.await;
        }
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

    /// The address of peer `n` (from 1).
    ///
    /// # Panics
    /// When the test has no peer `n`: a bug in the test, reported as its failure.
    pub fn addr_of(&self, n: usize) -> IpAddr {
        self.ctx
            .addr_of(PeerId(n))
            .unwrap_or_else(|| panic!("this test has no peer {n}"))
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
        self.rendezvous.barrier.wait().await;
    }

    /// Raises a named signal (say, "listening") for [`Peer::wait_for`].
    pub fn signal(&self, name: &str) {
        self.rendezvous.signal(name);
    }

    /// Waits until some peer (or the controller) raised the signal `name`. A signal
    /// stays raised, so waiting after the fact returns at once.
    pub async fn wait_for(&self, name: &str) {
        self.rendezvous.wait(name).await;
    }

    /// A command for an unmodified program; it runs inside this peer's namespace
    /// (the child inherits the namespace of the thread that forks it, and bodies run
    /// on the peer's thread). It is killed if the handle is dropped.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        command.kill_on_drop(true);
        command
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

    /// Peer `n` (from 1).
    pub fn peer(&self, n: usize) -> PeerId {
        PeerId(n)
    }

    /// Raises a named signal that peers can [`Peer::wait_for`].
    pub fn signal(&self, name: &str) {
        self.rendezvous.signal(name);
    }

    /// Waits until a peer raised the signal `name`.
    pub async fn wait_for(&self, name: &str) {
        self.rendezvous.wait(name).await;
    }
}

impl Deref for Controller {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.network
    }
}
