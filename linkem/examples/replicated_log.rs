//! A 5-peer replicated log through a partition: `cargo run --example replicated_log`.
//!
//! Each peer runs a small Raft-style node (leader election with terms and randomised
//! timeouts, log replication, commit by majority) over UDP on its own socket. The demo:
//!
//! 1. waits for a leader and commits entries 1..=10 on all five;
//! 2. isolates the leader: it still accepts 11..=15 but cannot commit them; the four
//!    others elect a new leader in a higher term, which commits 21..=30;
//! 3. heals: the old leader steps down, drops its uncommitted entries and catches up.
//!
//! Checks: a new leader is elected while the old one is cut off, the old leader's
//! commit index does not move while isolated, and at the end all five hold the same
//! committed log, 1..=10 then 21..=30 (11..=15 are nowhere).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::Fallible;
use linkem::ip::Subnet;
use linkem::network::{Network, PeerId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

const PORT: u16 = 7100;
const PEERS: usize = 5;
const HEARTBEAT: Duration = Duration::from_millis(40);
/// Election timeouts are drawn from [MIN, 2 MIN): several heartbeats, so a follower
/// of a live leader never starts an election.
const ELECTION_MIN: Duration = Duration::from_millis(300);
/// The value of a new leader's first entry, left out of what is reported.
const NO_OP: u64 = 0;
/// Entries per append message, so one fits in a datagram.
const BATCH: usize = 64;

fn main() -> std::process::ExitCode {
    common::main("replicated_log", run)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}

/// What a node tells the demo, on every change.
#[derive(Debug, Clone)]
struct Status {
    node: usize,
    term: u64,
    role: Role,
    commit: usize,
    /// The committed entries' values.
    committed: Vec<u64>,
}

/// What the demo tells a node.
#[derive(Debug)]
enum Command {
    /// Append a value (only a leader does; others ignore it).
    Propose(u64),
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    term: u64,
    value: u64,
}

#[derive(Debug)]
enum Msg {
    Vote {
        term: u64,
        last_index: u64,
        last_term: u64,
    },
    VoteReply {
        term: u64,
        granted: bool,
    },
    Append {
        term: u64,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    },
    AppendReply {
        term: u64,
        success: bool,
        match_index: u64,
    },
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |v: u64| out.extend_from_slice(&v.to_be_bytes());
        match self {
            Msg::Vote {
                term,
                last_index,
                last_term,
            } => [1, *term, *last_index, *last_term]
                .into_iter()
                .for_each(&mut put),
            Msg::VoteReply { term, granted } => {
                [2, *term, *granted as u64].into_iter().for_each(&mut put)
            }
            Msg::Append {
                term,
                prev_index,
                prev_term,
                commit,
                entries,
            } => {
                [
                    3,
                    *term,
                    *prev_index,
                    *prev_term,
                    *commit,
                    entries.len() as u64,
                ]
                .into_iter()
                .for_each(&mut put);
                for e in entries {
                    put(e.term);
                    put(e.value);
                }
            }
            Msg::AppendReply {
                term,
                success,
                match_index,
            } => [4, *term, *success as u64, *match_index]
                .into_iter()
                .for_each(&mut put),
        }
        out
    }

    fn decode(buf: &[u8]) -> Option<Msg> {
        let mut words = buf
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")));
        let mut next = || words.next();
        Some(match next()? {
            1 => Msg::Vote {
                term: next()?,
                last_index: next()?,
                last_term: next()?,
            },
            2 => Msg::VoteReply {
                term: next()?,
                granted: next()? != 0,
            },
            3 => {
                let (term, prev_index, prev_term, commit, n) =
                    (next()?, next()?, next()?, next()?, next()?);
                let mut entries = Vec::new();
                for _ in 0..n.min(BATCH as u64) {
                    entries.push(Entry {
                        term: next()?,
                        value: next()?,
                    });
                }
                Msg::Append {
                    term,
                    prev_index,
                    prev_term,
                    commit,
                    entries,
                }
            }
            4 => Msg::AppendReply {
                term: next()?,
                success: next()? != 0,
                match_index: next()?,
            },
            _ => return None,
        })
    }
}

/// One node's state (Raft, without persistence or membership changes).
struct Node {
    id: usize,
    /// Every node's address, by id (1-based; index 0 unused).
    addrs: Vec<SocketAddr>,
    term: u64,
    voted_for: Option<usize>,
    role: Role,
    /// The log; index i (1-based in the protocol) is `log[i - 1]`.
    log: Vec<Entry>,
    commit: usize,
    votes: usize,
    next_index: BTreeMap<usize, usize>,
    match_index: BTreeMap<usize, usize>,
    deadline: Instant,
    rng: u64,
}

impl Node {
    fn last(&self) -> (u64, u64) {
        (self.log.len() as u64, self.log.last().map_or(0, |e| e.term))
    }

    fn term_at(&self, index: usize) -> u64 {
        if index == 0 {
            0
        } else {
            self.log.get(index - 1).map_or(0, |e| e.term)
        }
    }

    fn reset_election(&mut self) {
        // xorshift: no cryptographic need, only different timeouts per node and round.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let spread = ELECTION_MIN.as_millis() as u64;
        self.deadline = Instant::now() + ELECTION_MIN + Duration::from_millis(self.rng % spread);
    }

    fn step_down(&mut self, term: u64) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        self.role = Role::Follower;
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (1..self.addrs.len()).filter(move |&i| i != self.id)
    }

    fn status(&self) -> Status {
        Status {
            node: self.id,
            term: self.term,
            role: self.role,
            commit: self.commit,
            committed: self.log[..self.commit]
                .iter()
                .map(|e| e.value)
                .filter(|&v| v != NO_OP)
                .collect(),
        }
    }

    /// Messages to send: (to, message).
    fn on_timeout(&mut self) -> Vec<(usize, Msg)> {
        if self.role == Role::Leader {
            self.deadline = Instant::now() + HEARTBEAT;
            return self.appends();
        }
        self.term += 1;
        self.role = Role::Candidate;
        self.voted_for = Some(self.id);
        self.votes = 1;
        self.reset_election();
        let (last_index, last_term) = self.last();
        let term = self.term;
        self.others()
            .map(|to| {
                (
                    to,
                    Msg::Vote {
                        term,
                        last_index,
                        last_term,
                    },
                )
            })
            .collect()
    }

    fn appends(&self) -> Vec<(usize, Msg)> {
        self.others()
            .map(|to| {
                let next = self.next_index[&to];
                let entries = self.log[next - 1..].iter().take(BATCH).copied().collect();
                (
                    to,
                    Msg::Append {
                        term: self.term,
                        prev_index: (next - 1) as u64,
                        prev_term: self.term_at(next - 1),
                        commit: self.commit as u64,
                        entries,
                    },
                )
            })
            .collect()
    }

    fn become_leader(&mut self) -> Vec<(usize, Msg)> {
        self.role = Role::Leader;
        // A leader commits by counting only entries of its own term (Raft, section
        // 5.4.2): without an entry of its own, entries of earlier terms it holds would
        // stay uncommitted until a client writes. The no-op is that entry.
        self.log.push(Entry {
            term: self.term,
            value: NO_OP,
        });
        let others: Vec<usize> = self.others().collect();
        for to in others {
            self.next_index.insert(to, self.log.len() + 1);
            self.match_index.insert(to, 0);
        }
        self.deadline = Instant::now() + HEARTBEAT;
        self.appends()
    }

    fn on_message(&mut self, from: usize, msg: Msg) -> Vec<(usize, Msg)> {
        let term = match &msg {
            Msg::Vote { term, .. }
            | Msg::VoteReply { term, .. }
            | Msg::Append { term, .. }
            | Msg::AppendReply { term, .. } => *term,
        };
        if term > self.term {
            self.step_down(term);
        }
        match msg {
            Msg::Vote {
                term,
                last_index,
                last_term,
            } => {
                let (my_index, my_term) = self.last();
                let up_to_date = (last_term, last_index) >= (my_term, my_index);
                let granted =
                    term == self.term && up_to_date && self.voted_for.is_none_or(|v| v == from);
                if granted {
                    self.voted_for = Some(from);
                    self.reset_election();
                }
                vec![(
                    from,
                    Msg::VoteReply {
                        term: self.term,
                        granted,
                    },
                )]
            }
            Msg::VoteReply { term, granted } => {
                if self.role == Role::Candidate && term == self.term && granted {
                    self.votes += 1;
                    if self.votes * 2 > PEERS {
                        return self.become_leader();
                    }
                }
                Vec::new()
            }
            Msg::Append {
                term,
                prev_index,
                prev_term,
                commit,
                entries,
            } => {
                if term < self.term {
                    return vec![(
                        from,
                        Msg::AppendReply {
                            term: self.term,
                            success: false,
                            match_index: 0,
                        },
                    )];
                }
                self.step_down(term);
                self.reset_election();
                let prev = prev_index as usize;
                if prev > self.log.len() || self.term_at(prev) != prev_term {
                    return vec![(
                        from,
                        Msg::AppendReply {
                            term: self.term,
                            success: false,
                            match_index: 0,
                        },
                    )];
                }
                for (i, e) in entries.iter().enumerate() {
                    let at = prev + i; // 0-based position of this entry
                    match self.log.get(at) {
                        Some(have) if have.term == e.term => {}
                        // A conflict: this entry and everything after it go (Raft's
                        // log matching; only uncommitted entries can conflict).
                        _ => {
                            self.log.truncate(at);
                            self.log.push(*e);
                        }
                    }
                }
                let matched = prev + entries.len();
                self.commit = self.commit.max((commit as usize).min(matched));
                vec![(
                    from,
                    Msg::AppendReply {
                        term: self.term,
                        success: true,
                        match_index: matched as u64,
                    },
                )]
            }
            Msg::AppendReply {
                term,
                success,
                match_index,
            } => {
                if self.role != Role::Leader || term != self.term {
                    return Vec::new();
                }
                if success {
                    let m = match_index as usize;
                    self.match_index.insert(from, m);
                    self.next_index.insert(from, m + 1);
                    self.advance_commit();
                } else {
                    let next = self.next_index[&from];
                    self.next_index.insert(from, (next - 1).max(1));
                }
                Vec::new()
            }
        }
    }

    /// The highest index stored on a majority, if it is of this term (Raft's rule: a
    /// leader commits only entries of its own term by counting).
    fn advance_commit(&mut self) {
        for n in (self.commit + 1..=self.log.len()).rev() {
            let stored = 1 + self.match_index.values().filter(|&&m| m >= n).count();
            if stored * 2 > PEERS && self.log[n - 1].term == self.term {
                self.commit = n;
                break;
            }
        }
    }
}

async fn node(
    id: usize,
    addrs: Vec<SocketAddr>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: mpsc::UnboundedSender<Status>,
) -> Result<(), String> {
    let sock = UdpSocket::bind(("0.0.0.0", PORT))
        .await
        .map_err(common::io_context(format_args!(
            "bind node {id} to port {PORT}"
        )))?;
    let mut n = Node {
        id,
        addrs,
        term: 0,
        voted_for: None,
        role: Role::Follower,
        log: Vec::new(),
        commit: 0,
        votes: 0,
        next_index: BTreeMap::new(),
        match_index: BTreeMap::new(),
        deadline: Instant::now(),
        rng: 0x2545_f491_4f6c_dd1d ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    };
    n.reset_election();
    let by_addr: BTreeMap<IpAddr, usize> = n
        .addrs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, a)| (a.ip(), i))
        .collect();
    let mut buf = vec![0u8; 65536];
    let mut last_reported = None;
    loop {
        let out = tokio::select! {
            _ = tokio::time::sleep_until(n.deadline) => n.on_timeout(),
            r = sock.recv_from(&mut buf) => match r {
                Ok((len, from)) => match (by_addr.get(&from.ip()), Msg::decode(&buf[..len])) {
                    (Some(&from), Some(msg)) => n.on_message(from, msg),
                    _ => Vec::new(),
                },
                Err(_) => Vec::new(),
            },
            c = commands.recv() => match c {
                Some(Command::Propose(value)) if n.role == Role::Leader => {
                    n.log.push(Entry { term: n.term, value });
                    Vec::new()
                }
                Some(Command::Propose(_)) => Vec::new(),
                Some(Command::Stop) | None => return Ok(()),
            },
        };
        for (to, msg) in out {
            // A partitioned destination drops silently; a send error is the same loss.
            let _ = sock.send_to(&msg.encode(), n.addrs[to]).await;
        }
        let key = (n.term, n.role, n.commit);
        if last_reported != Some(key) {
            last_reported = Some(key);
            let _ = status.send(n.status());
        }
    }
}

/// The demo's view of the cluster, from the nodes' reports.
struct Cluster {
    status: mpsc::UnboundedReceiver<Status>,
    latest: BTreeMap<usize, Status>,
}

impl Cluster {
    /// Waits until `done` holds for the latest statuses, or fails with `what`.
    async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&BTreeMap<usize, Status>) -> bool,
    ) -> Fallible<()> {
        let end = Instant::now() + timeout;
        while !done(&self.latest) {
            match tokio::time::timeout_at(end, self.status.recv()).await {
                Ok(Some(s)) => {
                    self.latest.insert(s.node, s);
                }
                Ok(None) => return common::fail("every node stopped"),
                Err(_) => {
                    return common::fail(format!(
                        "timed out after {:.1} s waiting until {what}; nodes: {}",
                        timeout.as_secs_f64(),
                        self.describe()
                    ))
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.latest
            .values()
            .map(|s| format!("{} {} term {} commit {}", s.node, s.role, s.term, s.commit))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The leader with the highest term among `among`.
    fn leader(&self, among: &[usize]) -> Option<(usize, u64)> {
        self.latest
            .values()
            .filter(|s| s.role == Role::Leader && among.contains(&s.node))
            .map(|s| (s.node, s.term))
            .max_by_key(|&(_, t)| t)
    }
}

async fn run() -> Fallible<bool> {
    let mut net = Network::new(Subnet::new([10, 77, 2, 0].into(), 24)).await?;
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(net.add_peer().await?);
    }
    println!(
        "replicated_log: {PEERS} Raft-style nodes over UDP, backend: {}",
        common::backend(&net)
    );
    let mut addrs = vec![SocketAddr::from(([0, 0, 0, 0], 0))];
    for &p in &peers {
        addrs.push(SocketAddr::new(net.addr(p)?, PORT));
    }
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let mut commands = BTreeMap::new();
    let mut nodes = Vec::new();
    for (i, &p) in peers.iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        commands.insert(i + 1, tx);
        let (addrs, status) = (addrs.clone(), status_tx.clone());
        nodes.push(net.run_in_namespace(p, move |_| node(i + 1, addrs, rx, status)));
    }
    drop(status_tx);
    let mut cluster = Cluster {
        status: status_rx,
        latest: BTreeMap::new(),
    };
    let scenario = scenario(&net, &peers, &mut cluster, &commands);
    let mut nodes = Box::pin(futures::future::join_all(nodes));
    // The nodes run until the scenario stops them; one ending early is an error.
    let outcome = tokio::select! {
        outcome = scenario => outcome,
        results = &mut nodes => {
            for r in results {
                r??;
            }
            return common::fail("the nodes stopped before the scenario ended");
        }
    };
    for tx in commands.values() {
        let _ = tx.send(Command::Stop);
    }
    for r in (&mut nodes).await {
        r??;
    }
    drop(nodes);
    net.shutdown().await?;
    outcome
}

async fn scenario(
    net: &Network,
    peers: &[PeerId],
    cluster: &mut Cluster,
    commands: &BTreeMap<usize, mpsc::UnboundedSender<Command>>,
) -> Fallible<bool> {
    let all: Vec<usize> = (1..=PEERS).collect();
    let propose = |to: usize, values: std::ops::RangeInclusive<u64>| {
        for v in values {
            let _ = commands[&to].send(Command::Propose(v));
        }
    };
    let mut table = common::Table::new(&["step", "expected", "seen", "verdict"]);
    let mut ok = true;

    let t = Instant::now();
    cluster
        .wait("a leader is elected", Duration::from_secs(5), |s| {
            s.values().any(|s| s.role == Role::Leader)
        })
        .await?;
    let (old, old_term) = cluster.leader(&all).expect("waited for it");
    table.row(vec![
        "start".into(),
        "one leader".into(),
        format!(
            "node {old} leads term {old_term} after {:.2} s",
            t.elapsed().as_secs_f64()
        ),
        common::verdict(true),
    ]);
    propose(old, 1..=10);
    let first: Vec<u64> = (1..=10).collect();
    cluster
        .wait("all five commit 1..=10", Duration::from_secs(5), |s| {
            s.len() == PEERS && s.values().all(|s| s.committed == first)
        })
        .await?;
    table.row(vec![
        "commit 1..=10".into(),
        "on all 5".into(),
        "on all 5".into(),
        common::verdict(true),
    ]);

    let commit_before = cluster.latest[&old].commit;
    net.isolate(peers[old - 1]).await?;
    let t = Instant::now();
    propose(old, 11..=15);
    let majority: Vec<usize> = all.iter().copied().filter(|&n| n != old).collect();
    cluster
        .wait(
            "the four others elect a new leader",
            Duration::from_secs(5),
            |s| {
                s.values()
                    .any(|s| s.role == Role::Leader && s.node != old && s.term > old_term)
            },
        )
        .await?;
    let (new, new_term) = cluster.leader(&majority).expect("waited for it");
    table.row(vec![
        format!("isolate node {old}"),
        "a new leader, higher term".into(),
        format!(
            "node {new} leads term {new_term} after {:.2} s",
            t.elapsed().as_secs_f64()
        ),
        common::verdict(new != old && new_term > old_term),
    ]);
    propose(new, 21..=30);
    let second: Vec<u64> = (1..=10).chain(21..=30).collect();
    let majority_check = majority.clone();
    cluster
        .wait(
            "the majority commits 21..=30",
            Duration::from_secs(5),
            |s| {
                majority_check
                    .iter()
                    .all(|n| s.get(n).is_some_and(|s| s.committed == second))
            },
        )
        .await?;
    let isolated_commit = cluster.latest[&old].commit;
    let stuck = isolated_commit == commit_before && cluster.latest[&old].committed == first;
    ok &= stuck;
    table.row(vec![
        "while isolated".into(),
        "majority commits 21..=30; old leader commits nothing".into(),
        format!(
            "majority committed 21..=30; node {old} at commit index {isolated_commit} \
             (was {commit_before})"
        ),
        common::verdict(stuck),
    ]);

    net.rejoin(peers[old - 1]).await?;
    let t = Instant::now();
    cluster
        .wait(
            "all five hold the same committed log after the heal",
            Duration::from_secs(5),
            |s| s.len() == PEERS && s.values().all(|s| s.committed == second),
        )
        .await?;
    let old_status = &cluster.latest[&old];
    let caught_up = old_status.role != Role::Leader || old_status.term > old_term;
    ok &= caught_up;
    let lost_absent = cluster
        .latest
        .values()
        .all(|s| !s.committed.iter().any(|v| (11..=15).contains(v)));
    ok &= lost_absent;
    table.row(vec![
        format!("rejoin node {old}"),
        "it steps down and catches up; 11..=15 nowhere".into(),
        format!(
            "node {old} is a {} in term {}, {} values after {:.2} s; 11..=15 {}",
            old_status.role,
            old_status.term,
            old_status.committed.len(),
            t.elapsed().as_secs_f64(),
            if lost_absent { "absent" } else { "PRESENT" }
        ),
        common::verdict(caught_up && lost_absent),
    ]);
    print!("{}", table.render());
    Ok(ok)
}
