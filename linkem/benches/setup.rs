//! Setup and teardown cost of an emulated network: linkem against the `ip`/`tc`
//! commands most tools run (one process per command).
//!
//! ```text
//! cargo bench -p linkem --bench setup -- [--peers 2,3,10,50,100,250] [--runs N]
//!     [--quick] [--impair-max N] [--no-ip] [--json]
//! ```
//!
//! For every N it builds the same topology both ways, in alternating order, several
//! times, and prints the median and the range of each phase:
//!
//! - linkem: `Network::new` (hub namespace + bridge), N x `add_peer`, drop.
//! - ip: `ip netns add` for the hub, `ip -n hub link add br0 type bridge`, `link set
//!   up`; per peer `ip netns add`, a veth created with its far end in the peer's
//!   namespace, the hub end on the bridge and up, the address, `eth0` and `lo` up (six
//!   processes); `ip netns del` for every namespace.
//! - After each teardown the kernel still destroys the namespaces in the background
//!   (cleanup_net() on the "netns" workqueue). The program waits for that before the
//!   next run and reports how long it took, apart from the total.
//! - The impairment phase (full mesh of N x (N-1) shaped links, one link changed many
//!   times, one pair partitioned and healed many times, one peer partitioned from all
//!   others and healed): linkem with `apply_impairment_all`, `apply_impairment`,
//!   `partition`/`heal` and `isolate`/`rejoin`; the `ip` topology with `tc` commands (an
//!   HTB root per peer, a class and a u32 filter per destination, a pfifo of limit 0
//!   to cut). The shaper alone (HTB/TBF) needs no sch_netem, so this runs on any kernel.
//!
//! The `ip` namespaces are named `lkb-<pid>-...` and are deleted on every exit path: at
//! the end of a run, on a panic, on SIGINT/SIGTERM/SIGHUP, and (for a run that was
//! killed outright) at the start of the next run, which deletes those whose process is
//! gone. linkem's own namespaces go with the process in any case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linkem::ip::Subnet;
use linkem::tc::impairment::{LinkImpairment, Rate};
use linkem::{Link, Network, PeerId};

// ---------------------------------------------------------------------------------
// Phases. Both sides record the same names, so the tables line up by name.

const CREATE: &str = "create network";
const ADD: &str = "add peers";
/// Mean time of one `add_peer` among the first and the last tenth of the peers (10
/// peers or more): whether adding gets slower as the network grows.
const ADD_FIRST_TENTH: &str = "  per peer, first tenth";
const ADD_LAST_TENTH: &str = "  per peer, last tenth";
const IMPAIR_MESH: &str = "impair full mesh";
const IMPAIR_MESH_BATCH: &str = "impair full mesh, tc -batch";
const CHANGE_ONE: &str = "change one link";
/// Partition and heal of one pair of peers (both directions each).
const TOGGLE: &str = "partition toggle (one pair)";
const PARTITION: &str = "partition peer 1";
const HEAL: &str = "heal partition";
const TEARDOWN: &str = "teardown";
/// Sum of CREATE, ADD and TEARDOWN in one run.
const TOTAL: &str = "total (create+add+teardown)";
const CLEANUP: &str = "kernel cleanup (async)";
/// TEARDOWN + CLEANUP: until the kernel is done. The comparable figure: `ip netns del`
/// runs one namespace at a time, so most of its cleanup overlaps its own teardown,
/// while linkem's namespaces all go at once and are cleaned in one batch after.
const SETTLED: &str = "teardown until the kernel is done";

const PHASES: &[&str] = &[
    CREATE,
    ADD,
    ADD_FIRST_TENTH,
    ADD_LAST_TENTH,
    IMPAIR_MESH,
    IMPAIR_MESH_BATCH,
    CHANGE_ONE,
    TOGGLE,
    PARTITION,
    HEAL,
    TEARDOWN,
    TOTAL,
    CLEANUP,
    SETTLED,
];

const LINKEM: &str = "linkem";
const IP: &str = "ip";

/// The subnet of both topologies (a /16, so 250 peers fit with room to spare).
fn subnet() -> Subnet {
    Subnet::new(IpAddr::from([10, 77, 0, 0]), 16)
}

/// The rate every mesh link gets (HTB alone, no netem needed).
const MESH_RATE_MBIT: u64 = 100;
/// The rate "change one link" sets.
const CHANGED_RATE_MBIT: u64 = 50;
/// Samples of "change one link" and of the partition toggle per run (linkem; the tc
/// side takes CHANGES / 10, each a process or two).
const CHANGES: usize = 50;

// ---------------------------------------------------------------------------------
// Arguments.

#[derive(Debug)]
struct Args {
    peers: Vec<usize>,
    runs: Option<usize>,
    quick: bool,
    impair_max: usize,
    ip: bool,
    json: bool,
    back_to_back: bool,
}

const USAGE: &str = "\
usage: cargo bench -p linkem --bench setup -- [options]
  --peers LIST      peer counts, comma-separated (default 2,3,10,50,100,250)
  --runs N          runs per peer count (default 15 up to 10 peers, 7 up to 100, 5 above)
  --quick           peer counts 3,10,50, 3 runs, impairment phase up to 10 peers
  --impair-max N    run the impairment phase only up to N peers (default 50): the
                    tc baseline costs about 2 processes per link, N x (N-1) links
  --no-ip           skip the ip/tc baseline
  --back-to-back    do not wait for the kernel's namespace cleanup between runs, as a
                    test suite does not: each run competes with the previous run's
                    cleanup (the cleanup row is then not measured)
  --json            print the results as JSON instead of tables (progress stays on stderr)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        peers: vec![2, 3, 10, 50, 100, 250],
        runs: None,
        quick: false,
        impair_max: 50,
        ip: true,
        json: false,
        back_to_back: false,
    };
    let mut peers_given = false;
    let mut impair_given = false;
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--peers" => {
                let list = it.next().ok_or("--peers needs a list")?;
                args.peers = list
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--peers {list}: {e}"))?;
                if args.peers.iter().any(|&n| n < 2) {
                    return Err("--peers: every count must be at least 2".into());
                }
                peers_given = true;
            }
            "--runs" => {
                let runs = number("--runs", it.next())?;
                if runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
                args.runs = Some(runs);
            }
            "--impair-max" => {
                args.impair_max = number("--impair-max", it.next())?;
                impair_given = true;
            }
            "--quick" => args.quick = true,
            "--no-ip" => args.ip = false,
            "--back-to-back" => args.back_to_back = true,
            "--json" => args.json = true,
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.quick {
        if !peers_given {
            args.peers = vec![3, 10, 50];
        }
        if !impair_given {
            args.impair_max = 10;
        }
    }
    Ok(args)
}

impl Args {
    fn runs_for(&self, n: usize) -> usize {
        match (self.runs, self.quick) {
            (Some(runs), _) => runs,
            (None, true) => 3,
            (None, false) if n <= 10 => 15,
            (None, false) if n <= 100 => 7,
            (None, false) => 5,
        }
    }
}

// ---------------------------------------------------------------------------------
// Recording.

/// The phases of one run, in the order they happened.
#[derive(Debug, Default)]
struct Run {
    phases: Vec<(&'static str, Duration)>,
}

impl Run {
    fn record(&mut self, phase: &'static str, took: Duration) {
        self.phases.push((phase, took));
    }

    /// Records ADD_FIRST_TENTH and ADD_LAST_TENTH from the time of each add.
    fn record_adds(&mut self, adds: &[Duration]) {
        if adds.len() < 10 {
            return;
        }
        let tenth = adds.len() / 10;
        let mean = |part: &[Duration]| part.iter().sum::<Duration>() / part.len() as u32;
        self.record(ADD_FIRST_TENTH, mean(&adds[..tenth]));
        self.record(ADD_LAST_TENTH, mean(&adds[adds.len() - tenth..]));
    }

    /// Records CLEANUP, and SETTLED from it.
    fn record_cleanup(&mut self, cleanup: Duration) {
        self.record(CLEANUP, cleanup);
        if let Some(teardown) = self.get(TEARDOWN) {
            self.record(SETTLED, teardown + cleanup);
        }
    }

    fn get(&self, phase: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, d)| *d)
    }

    /// Adds TOTAL, the part of a run a test waits for.
    fn finish(mut self) -> Run {
        let total = [CREATE, ADD, TEARDOWN]
            .iter()
            .filter_map(|p| self.get(p))
            .sum();
        self.record(TOTAL, total);
        self
    }
}

/// Samples by (peer count, implementation, phase).
#[derive(Debug, Default)]
struct Results {
    samples: BTreeMap<(usize, &'static str, &'static str), Vec<Duration>>,
    runs: BTreeMap<usize, usize>,
    /// Runs whose kernel cleanup was not seen (no sample recorded).
    cleanup_unseen: usize,
}

impl Results {
    fn add(&mut self, n: usize, implementation: &'static str, run: &Run) {
        for (phase, took) in &run.phases {
            self.samples
                .entry((n, implementation, phase))
                .or_default()
                .push(*took);
        }
    }

    fn stats(&self, n: usize, implementation: &str, phase: &str) -> Option<Stats> {
        let samples = self
            .samples
            .iter()
            .find(|((k, i, p), _)| *k == n && *i == implementation && *p == phase)?;
        Stats::of(samples.1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

impl Stats {
    fn of(samples: &[Duration]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let len = sorted.len();
        let median = match len {
            0 => return None,
            _ if len % 2 == 1 => sorted[len / 2],
            _ => (sorted[len / 2 - 1] + sorted[len / 2]) / 2,
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[len - 1],
        })
    }

    fn per(self, count: usize) -> Stats {
        let count = count.max(1) as u32;
        Stats {
            median: self.median / count,
            min: self.min / count,
            max: self.max / count,
        }
    }
}

// ---------------------------------------------------------------------------------
// The links both sides impair.

/// Every ordered pair of distinct peers: N x (N-1) links.
fn mesh(peers: &[PeerId]) -> impl Iterator<Item = Link> + '_ {
    peers.iter().flat_map(move |&s| {
        peers
            .iter()
            .filter(move |&&d| d != s)
            .map(move |&d| Link::new(s, d))
    })
}

/// The links a partition of peer 1 from all others cuts, both directions.
fn partition_links(peers: &[PeerId]) -> Vec<Link> {
    let first = peers[0];
    peers[1..]
        .iter()
        .flat_map(|&p| [Link::new(first, p), Link::new(p, first)])
        .collect()
}

/// The link "change one link" changes.
fn changed_link(peers: &[PeerId]) -> Link {
    Link::new(peers[0], peers[1])
}

// ---------------------------------------------------------------------------------
// linkem.

async fn linkem_run(n: usize, impair: bool) -> linkem::Result<Run> {
    let mut run = Run::default();

    let start = Instant::now();
    let mut net = Network::new(subnet()).await?;
    run.record(CREATE, start.elapsed());

    let start = Instant::now();
    let mut peers = Vec::with_capacity(n);
    let mut adds = Vec::with_capacity(n);
    for _ in 0..n {
        let one = Instant::now();
        peers.push(net.add_peer().await?);
        adds.push(one.elapsed());
    }
    run.record(ADD, start.elapsed());
    run.record_adds(&adds);

    if impair {
        linkem_impairments(&net, &peers, &mut run).await?;
    }

    let start = Instant::now();
    drop(net);
    run.record(TEARDOWN, start.elapsed());
    Ok(run.finish())
}

/// linkem's impairment phase, timed into `run` under the same phase names as the tc
/// baseline: the mesh with `apply_impairment_all` (one call), CHANGE_ONE as many
/// single changes alternating two rates (one sample each), TOGGLE as many
/// partition + heal pairs of one pair of peers, and PARTITION/HEAL of peer 1 from all
/// others (`isolate`/`rejoin`).
async fn linkem_impairments(net: &Network, peers: &[PeerId], run: &mut Run) -> linkem::Result<()> {
    let shaped = LinkImpairment::new().with_rate(Rate::mbit(MESH_RATE_MBIT));
    let start = Instant::now();
    net.apply_impairment_all(shaped.clone()).await?;
    run.record(IMPAIR_MESH, start.elapsed());

    let link = changed_link(peers);
    let changed = LinkImpairment::new().with_rate(Rate::mbit(CHANGED_RATE_MBIT));
    for i in 0..CHANGES {
        let value = if i % 2 == 0 { &changed } else { &shaped };
        let start = Instant::now();
        net.apply_impairment(link, value.clone()).await?;
        run.record(CHANGE_ONE, start.elapsed());
    }

    for _ in 0..CHANGES {
        let start = Instant::now();
        net.partition(link.source, link.destination).await?;
        net.heal(link.source, link.destination).await?;
        run.record(TOGGLE, start.elapsed());
    }

    let start = Instant::now();
    net.isolate(peers[0]).await?;
    run.record(PARTITION, start.elapsed());
    let start = Instant::now();
    net.rejoin(peers[0]).await?;
    run.record(HEAL, start.elapsed());
    Ok(())
}

/// A one-off check, not timed, that linkem's topology carries traffic.
async fn linkem_check() -> Result<(), String> {
    let mut net = Network::new(subnet()).await.map_err(|e| e.to_string())?;
    let a = net.add_peer().await.map_err(|e| e.to_string())?;
    let b = net.add_peer().await.map_err(|e| e.to_string())?;
    let target = net.addr(b).map_err(|e| e.to_string())?.to_string();
    let ok = net
        .std_command(a, "ping")
        .map_err(|e| e.to_string())?
        .args(["-c1", "-W2", "-q", &target])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("ping: {e}"))?
        .success();
    if !ok {
        return Err(format!("linkem: peer {a} cannot ping {target}"));
    }
    // The bench's changes reach the kernel: the link's shaper shows the new rate.
    let rate = |mbit| LinkImpairment::new().with_rate(Rate::mbit(mbit));
    for mbit in [MESH_RATE_MBIT, CHANGED_RATE_MBIT] {
        net.apply_impairment(Link::new(a, b), rate(mbit))
            .await
            .map_err(|e| e.to_string())?;
        let out = net
            .std_command(a, "tc")
            .map_err(|e| e.to_string())?
            .args(["qdisc", "show", "dev", "eth0"])
            .output()
            .map_err(|e| format!("tc: {e}"))?;
        let shown = String::from_utf8_lossy(&out.stdout);
        if !shown.contains(&format!("rate {mbit}Mbit")) {
            return Err(format!(
                "linkem: no {mbit}Mbit shaper after the change:\n{shown}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The ip/tc baseline.

/// Named namespaces of the baseline that still exist, for cleanup on any exit path.
static LIVE_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

const NAME_PREFIX: &str = "lkb-";

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `program` with the words of `line` as arguments (no shell: names and
/// addresses here never contain spaces), and fails with its stderr if it fails.
fn run(program: &str, line: &str) -> Result<(), String> {
    let out = Command::new(program)
        .args(line.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {line}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One `ip` process.
fn ip(line: &str) -> Result<(), String> {
    run("ip", line)
}

/// One `tc` process in namespace `ns`.
fn tc(ns: &str, line: &str) -> Result<(), String> {
    run("tc", &format!("-n {ns} {line}"))
}

/// One `tc -n <ns> -batch -` process for all of `lines`.
fn tc_batch(ns: &str, lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("tc")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("tc: {e}"))?;
    let script = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(script.as_bytes())
        .map_err(|e| format!("tc -batch: {e}"))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("tc -batch: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`tc -n {ns} -batch -` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip netns add`, registered for cleanup in the same critical section, so a signal
/// never sees a namespace that exists but is not listed.
fn netns_add(name: &str) -> Result<(), String> {
    let mut live = live();
    ip(&format!("netns add {name}"))?;
    live.push(name.to_string());
    Ok(())
}

fn netns_del(name: &str) -> Result<(), String> {
    let mut live = live();
    ip(&format!("netns del {name}"))?;
    live.retain(|n| n != name);
    Ok(())
}

/// Deletes whatever the baseline left (at exit, and on signals).
fn delete_live_namespaces() {
    let mut live = live();
    for name in live.drain(..) {
        let _ = ip(&format!("netns del {name}"));
    }
}

/// Deletes `lkb-<pid>-*` namespaces of processes that no longer exist (a run that was
/// killed by SIGKILL).
fn delete_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("deleting namespace {name} left by an earlier run (pid {pid} is gone)");
            let _ = ip(&format!("netns del {name}"));
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: delete the baseline's namespaces, then exit. The
/// signals are blocked in every thread (the mask is inherited from main, which blocks
/// them before any thread starts; std resets it in children before exec) and taken by
/// this thread with sigwait, so the cleanup runs as ordinary code, not in a handler.
fn install_signal_cleanup() -> Result<(), String> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| format!("block signals: {e}"))?;
    std::thread::Builder::new()
        .name("signal-cleanup".into())
        .spawn(move || {
            if let Ok(signal) = set.wait() {
                eprintln!("\n{signal}: deleting the baseline's namespaces");
                delete_live_namespaces();
                std::process::exit(128 + signal as i32);
            }
        })
        .map_err(|e| format!("spawn the signal thread: {e}"))?;
    Ok(())
}

/// The baseline's topology: the same interfaces, names and addresses as linkem's.
/// Deleted on drop if the run did not get to its teardown.
#[derive(Debug)]
struct IpTopology {
    hub: String,
    peers: Vec<String>,
    addrs: Vec<IpAddr>,
}

impl Drop for IpTopology {
    fn drop(&mut self) {
        let live = live().clone();
        for name in self.peers.iter().chain([&self.hub]) {
            if live.contains(name) {
                let _ = netns_del(name);
            }
        }
    }
}

impl IpTopology {
    /// 3 processes.
    fn create() -> Result<IpTopology, String> {
        let hub = format!("{NAME_PREFIX}{}-hub", std::process::id());
        netns_add(&hub)?;
        let topology = IpTopology {
            hub,
            peers: Vec::new(),
            addrs: Vec::new(),
        };
        let hub = &topology.hub;
        ip(&format!("-n {hub} link add br0 type bridge"))?;
        ip(&format!("-n {hub} link set br0 up"))?;
        Ok(topology)
    }

    /// 6 processes.
    fn add_peer(&mut self) -> Result<(), String> {
        let id = self.peers.len() + 1;
        let ns = format!("{NAME_PREFIX}{}-{id}", std::process::id());
        let addr = subnet().host(id as u128).ok_or("subnet exhausted")?;
        let prefix = subnet().prefix_len();
        let hub = &self.hub;
        netns_add(&ns)?;
        self.peers.push(ns.clone());
        self.addrs.push(addr);
        ip(&format!(
            "-n {hub} link add p{id} type veth peer name eth0 netns {ns}"
        ))?;
        ip(&format!("-n {hub} link set p{id} master br0 up"))?;
        ip(&format!("-n {ns} addr add {addr}/{prefix} dev eth0"))?;
        ip(&format!("-n {ns} link set eth0 up"))?;
        ip(&format!("-n {ns} link set lo up"))?;
        Ok(())
    }

    /// N + 1 processes.
    fn teardown(self) -> Result<(), String> {
        for name in self.peers.iter().chain([&self.hub]) {
            netns_del(name)?;
        }
        Ok(())
    }

    fn ns(&self, peer: PeerId) -> &str {
        &self.peers[peer.0 - 1]
    }

    fn addr(&self, peer: PeerId) -> IpAddr {
        self.addrs[peer.0 - 1]
    }
}

/// HTB class of a destination (hex, as tc reads it; 1:1 is the default class).
fn class_of(destination: PeerId) -> String {
    format!("1:{:x}", 0x10 + destination.0)
}

/// Handle of the dropping qdisc that cuts a link.
fn cut_handle(destination: PeerId) -> String {
    format!("{:x}:", 0x10 + destination.0)
}

/// tc's command lines (after `tc -n <ns>`) that shape every link out of `source`: an
/// HTB root whose default class carries unclassified traffic, then a class and a u32
/// filter on the destination address per other peer. `quantum` keeps HTB from
/// warning about the quantum it would compute at these rates.
fn mesh_commands(topology: &IpTopology, source: PeerId, peers: &[PeerId]) -> Vec<String> {
    let mut lines = vec![
        "qdisc add dev eth0 root handle 1: htb default 1".to_string(),
        "class add dev eth0 parent 1: classid 1:1 htb rate 10gbit quantum 1514".to_string(),
    ];
    for link in mesh(peers).filter(|l| l.source == source) {
        let class = class_of(link.destination);
        let dst = topology.addr(link.destination);
        lines.push(format!(
            "class add dev eth0 parent 1: classid {class} htb rate {MESH_RATE_MBIT}mbit quantum 1514"
        ));
        lines.push(format!(
            "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst {dst}/32 flowid {class}"
        ));
    }
    lines
}

/// Cuts a link: a pfifo of limit 0 under the destination's class drops every packet
/// (fifo_enqueue(): qlen < limit never holds). Needs neither netem nor act_gact.
fn cut_command(link: Link) -> String {
    format!(
        "qdisc add dev eth0 parent {} handle {} pfifo limit 0",
        class_of(link.destination),
        cut_handle(link.destination)
    )
}

fn restore_command(link: Link) -> String {
    format!(
        "qdisc del dev eth0 parent {} handle {}",
        class_of(link.destination),
        cut_handle(link.destination)
    )
}

/// The tc side of the impairment phase, one process per command; then the mesh once
/// more with one `tc -batch` per peer (the best a tool that shells out can do).
fn tc_impairments(topology: &IpTopology, peers: &[PeerId], run: &mut Run) -> Result<(), String> {
    let start = Instant::now();
    for &source in peers {
        for line in mesh_commands(topology, source, peers) {
            tc(topology.ns(source), &line)?;
        }
    }
    run.record(IMPAIR_MESH, start.elapsed());

    let link = changed_link(peers);
    for i in 0..CHANGES / 10 {
        let rate = if i % 2 == 0 {
            CHANGED_RATE_MBIT
        } else {
            MESH_RATE_MBIT
        };
        let start = Instant::now();
        tc(
            topology.ns(link.source),
            &format!(
                "class change dev eth0 parent 1: classid {} htb rate {rate}mbit quantum 1514",
                class_of(link.destination)
            ),
        )?;
        run.record(CHANGE_ONE, start.elapsed());
    }

    for _ in 0..CHANGES / 10 {
        let start = Instant::now();
        for l in [link, link.reversed()] {
            tc(topology.ns(l.source), &cut_command(l))?;
        }
        for l in [link, link.reversed()] {
            tc(topology.ns(l.source), &restore_command(l))?;
        }
        run.record(TOGGLE, start.elapsed());
    }

    let start = Instant::now();
    for link in partition_links(peers) {
        tc(topology.ns(link.source), &cut_command(link))?;
    }
    run.record(PARTITION, start.elapsed());

    let start = Instant::now();
    for link in partition_links(peers) {
        tc(topology.ns(link.source), &restore_command(link))?;
    }
    run.record(HEAL, start.elapsed());

    // Untimed: back to no qdisc, for the batch variant.
    for &peer in peers {
        tc(topology.ns(peer), "qdisc del dev eth0 root")?;
    }
    let start = Instant::now();
    for &source in peers {
        tc_batch(topology.ns(source), &mesh_commands(topology, source, peers))?;
    }
    run.record(IMPAIR_MESH_BATCH, start.elapsed());
    Ok(())
}

fn ip_run(n: usize, impair: bool) -> Result<Run, String> {
    let mut run = Run::default();

    let start = Instant::now();
    let mut topology = IpTopology::create()?;
    run.record(CREATE, start.elapsed());

    let start = Instant::now();
    let mut adds = Vec::with_capacity(n);
    for _ in 0..n {
        let one = Instant::now();
        topology.add_peer()?;
        adds.push(one.elapsed());
    }
    run.record(ADD, start.elapsed());
    run.record_adds(&adds);

    if impair {
        let peers: Vec<PeerId> = (1..=n).map(PeerId).collect();
        tc_impairments(&topology, &peers, &mut run)?;
    }

    let start = Instant::now();
    topology.teardown()?;
    run.record(TEARDOWN, start.elapsed());
    Ok(run.finish())
}

/// A one-off check, not timed, that the baseline's topology carries traffic and that
/// a cut link really drops it.
fn ip_check() -> Result<(), String> {
    let mut topology = IpTopology::create()?;
    topology.add_peer()?;
    topology.add_peer()?;
    let peers = [PeerId(1), PeerId(2)];
    let link = Link::new(peers[0], peers[1]);
    let ping = |topology: &IpTopology| {
        ip(&format!(
            "netns exec {} ping -c1 -W1 -q {}",
            topology.ns(link.source),
            topology.addr(link.destination)
        ))
        .is_ok()
    };
    if !ping(&topology) {
        return Err("ip: peer 1 cannot ping peer 2".into());
    }
    for line in mesh_commands(&topology, link.source, &peers) {
        tc(topology.ns(link.source), &line)?;
    }
    tc(topology.ns(link.source), &cut_command(link))?;
    if ping(&topology) {
        return Err("tc: a cut link still carries traffic".into());
    }
    topology.teardown()
}

// ---------------------------------------------------------------------------------
// The kernel's deferred namespace cleanup.

/// Waits until no kernel worker runs the "netns" workqueue (the kernel names a busy
/// worker `kworker/...+netns`, see wq_worker_comm()), and returns how long after the
/// call the last busy sighting was: the background cost of the teardown that just
/// returned, to about a millisecond. `None` if no busy worker was seen at all (the
/// work ran between two polls, or on a worker not yet listed): no sample then.
fn wait_kernel_cleanup() -> Option<Duration> {
    const QUIET: Duration = Duration::from_millis(20);
    const UNSEEN: Duration = Duration::from_millis(500);
    const RESCAN: Duration = Duration::from_millis(20);
    const GIVE_UP: Duration = Duration::from_secs(60);
    let start = Instant::now();
    let mut last_busy = None;
    let mut workers = kernel_workers();
    let mut scanned = start;
    loop {
        let now = Instant::now();
        // Workers come and go. Until one is seen busy the list is fresh at every poll;
        // after that, now and then only, to keep the polling from competing with the
        // cleanup for the CPUs.
        if last_busy.is_none() || now.duration_since(scanned) >= RESCAN {
            workers = kernel_workers();
            scanned = now;
        }
        if workers.iter().any(|pid| netns_worker_busy(*pid)) {
            last_busy = Some(now);
        } else {
            match last_busy {
                Some(t) if now.duration_since(t) >= QUIET => break,
                None if now.duration_since(start) >= UNSEEN => break,
                _ => {}
            }
        }
        if now.duration_since(start) > GIVE_UP {
            eprintln!("warning: the netns workqueue is still busy after {GIVE_UP:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    last_busy.map(|t| t.duration_since(start))
}

/// The pids of kernel workers (`kworker/...`).
fn kernel_workers() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("kworker/"))
        })
        .collect()
}

fn netns_worker_busy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end().ends_with("+netns"))
}

// ---------------------------------------------------------------------------------
// Output.

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_stats(s: Stats) -> String {
    format!(
        "{} [{} .. {}]",
        fmt_duration(s.median),
        fmt_duration(s.min),
        fmt_duration(s.max)
    )
}

fn fmt_ratio(linkem: Duration, ip: Duration) -> String {
    let ratio = ip.as_secs_f64() / linkem.as_secs_f64().max(1e-9);
    if ratio >= 1.0 {
        format!("{ratio:.1}x faster")
    } else {
        format!("{:.1}x slower", 1.0 / ratio)
    }
}

#[derive(Debug)]
struct Machine {
    kernel: String,
    cpus: usize,
    cpu_model: String,
    iproute2: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages before and after the runs: other
    /// processes share the CPUs, and the numbers move with them.
    load_before: String,
    load_after: String,
}

fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    fn probe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let iproute2 = Command::new("ip")
            .arg("-V")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "not found".into());
        Machine {
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            iproute2,
            load_before: loadavg(),
            load_after: String::new(),
        }
    }
}

fn print_tables(machine: &Machine, results: &Results, args: &Args) {
    println!(
        "linkem setup benchmark: Linux {}, {} CPUs ({}), {}",
        machine.kernel, machine.cpus, machine.cpu_model, machine.iproute2
    );
    println!(
        "load average {} before, {} after",
        machine.load_before, machine.load_after
    );
    println!("median [min .. max] of the runs; ratio = ip median / linkem median");
    let label_width = 34;
    for (&n, &runs) in &results.runs {
        println!();
        println!("N = {n} peers, {runs} runs");
        println!(
            "{:<label_width$} {:<34} {:<34} linkem vs ip",
            "phase", "linkem", "ip/tc (a process per command)"
        );
        for &phase in PHASES {
            let l = results.stats(n, LINKEM, phase);
            let i = results.stats(n, IP, phase);
            if l.is_none() && i.is_none() {
                continue;
            }
            let label = match phase {
                ADD => format!("add {n} peers"),
                IMPAIR_MESH => format!("{phase} ({} links)", n * (n - 1)),
                PARTITION => format!("{phase} ({} links)", 2 * (n - 1)),
                _ => phase.to_string(),
            };
            let ratio = match (l, i) {
                (Some(l), Some(i)) => fmt_ratio(l.median, i.median),
                _ => String::new(),
            };
            println!(
                "{label:<label_width$} {:<34} {:<34} {ratio}",
                l.map_or("-".into(), fmt_stats),
                i.map_or("-".into(), fmt_stats),
            );
            if phase == ADD {
                println!(
                    "{:<label_width$} {:<34} {:<34}",
                    "  per peer",
                    l.map_or("-".into(), |s| fmt_stats(s.per(n))),
                    i.map_or("-".into(), |s| fmt_stats(s.per(n))),
                );
            }
        }
    }

    println!();
    println!("Cost growth (medians): time per peer must stay flat as N grows");
    println!(
        "{:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>12}",
        "", "linkem", "", "", "ip", "", "", "linkem", "ip", ""
    );
    println!(
        "{:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>12}",
        "N",
        "per peer",
        "1st 10%",
        "last 10%",
        "per peer",
        "1st 10%",
        "last 10%",
        "total",
        "total",
        "ratio"
    );
    for &n in results.runs.keys() {
        let med = |i: &str, p: &str| results.stats(n, i, p).map(|s| s.median);
        let per = |d: Option<Duration>| d.map_or("-".into(), |d| fmt_duration(d / n as u32));
        let plain = |d: Option<Duration>| d.map_or("-".into(), fmt_duration);
        let ratio = match (med(LINKEM, TOTAL), med(IP, TOTAL)) {
            (Some(l), Some(i)) => fmt_ratio(l, i),
            _ => "-".into(),
        };
        println!(
            "{n:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>12}",
            per(med(LINKEM, ADD)),
            plain(med(LINKEM, ADD_FIRST_TENTH)),
            plain(med(LINKEM, ADD_LAST_TENTH)),
            per(med(IP, ADD)),
            plain(med(IP, ADD_FIRST_TENTH)),
            plain(med(IP, ADD_LAST_TENTH)),
            plain(med(LINKEM, TOTAL)),
            plain(med(IP, TOTAL)),
            ratio
        );
    }
    if !args.ip {
        println!("(ip/tc baseline skipped: --no-ip)");
    }
    if results.cleanup_unseen > 0 {
        println!(
            "(kernel cleanup not seen in {} runs: no sample for those)",
            results.cleanup_unseen
        );
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_json(machine: &Machine, results: &Results) {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"machine\":{{\"kernel\":{},\"cpus\":{},\"cpu_model\":{},\"iproute2\":{},\"load_before\":{},\"load_after\":{}}},\"results\":[",
        json_string(&machine.kernel),
        machine.cpus,
        json_string(&machine.cpu_model),
        json_string(&machine.iproute2),
        json_string(&machine.load_before),
        json_string(&machine.load_after)
    );
    let mut first = true;
    for ((n, implementation, phase), samples) in &results.samples {
        let Some(s) = Stats::of(samples) else {
            continue;
        };
        let ns: Vec<String> = samples.iter().map(|d| d.as_nanos().to_string()).collect();
        let _ = write!(
            out,
            "{}{{\"peers\":{n},\"impl\":{},\"phase\":{},\"median_ns\":{},\"min_ns\":{},\"max_ns\":{},\"samples_ns\":[{}]}}",
            if first { "" } else { "," },
            json_string(implementation),
            json_string(phase),
            s.median.as_nanos(),
            s.min.as_nanos(),
            s.max.as_nanos(),
            ns.join(",")
        );
        first = false;
    }
    out.push_str("]}");
    println!("{out}");
}

// ---------------------------------------------------------------------------------

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "this benchmark creates namespaces and interfaces: it needs root \
             (CAP_SYS_ADMIN and CAP_NET_ADMIN); run it with sudo"
        );
        return std::process::ExitCode::FAILURE;
    }
    // Before any other thread exists, so every thread inherits the blocked mask.
    if let Err(e) = install_signal_cleanup() {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let outcome = std::panic::catch_unwind(|| bench(&args));
    delete_live_namespaces();
    match outcome {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

fn bench(args: &Args) -> Result<(), String> {
    if args.ip {
        delete_stale_namespaces();
    }
    let mut machine = Machine::probe();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;

    // Untimed: both topologies carry traffic, and a first run of each warms caches
    // (binaries, /run/netns mount, kernel slabs).
    runtime.block_on(linkem_check())?;
    runtime
        .block_on(linkem_run(2, false))
        .map_err(|e| e.to_string())?;
    if args.ip {
        ip_check()?;
        ip_run(2, false)?;
    }
    wait_kernel_cleanup();

    let mut results = Results::default();
    for &n in &args.peers {
        let runs = args.runs_for(n);
        let impair = n <= args.impair_max;
        results.runs.insert(n, runs);
        for r in 0..runs {
            // Alternate which side goes first, so drift (thermal, caches, background
            // work) does not favour one side.
            let order: &[&str] = if !args.ip {
                &[LINKEM]
            } else if r % 2 == 0 {
                &[LINKEM, IP]
            } else {
                &[IP, LINKEM]
            };
            let mut line = format!("N={n} run {}/{runs}:", r + 1);
            for &side in order {
                let mut run = if side == LINKEM {
                    runtime
                        .block_on(linkem_run(n, impair))
                        .map_err(|e| format!("linkem, {n} peers: {e}"))?
                } else {
                    ip_run(n, impair).map_err(|e| format!("ip, {n} peers: {e}"))?
                };
                if !args.back_to_back {
                    match wait_kernel_cleanup() {
                        Some(took) => run.record_cleanup(took),
                        None => results.cleanup_unseen += 1,
                    }
                }
                let _ = write!(
                    line,
                    " {side} {}",
                    fmt_duration(run.get(TOTAL).unwrap_or_default())
                );
                results.add(n, side, &run);
            }
            eprintln!("{line}");
        }
    }

    machine.load_after = loadavg();
    if args.json {
        print_json(&machine, &results);
    } else {
        print_tables(&machine, &results, args);
    }
    Ok(())
}
