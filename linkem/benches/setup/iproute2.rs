//! The `ip`/`tc` baseline: one process per command, named namespaces cleaned up on every exit path.

use super::*;

/// Named namespaces of the baseline that still exist, for cleanup on any exit path.
pub(crate) static LIVE_NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) const NAME_PREFIX: &str = "lkb-";

pub(crate) fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE_NAMESPACES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `program` with the words of `line` as arguments (no shell: names and
/// addresses here never contain spaces), and fails with its stderr if it fails.
pub(crate) fn run(program: &str, line: &str) -> Result<(), String> {
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
pub(crate) fn ip(line: &str) -> Result<(), String> {
    run("ip", line)
}

/// One `tc` process in namespace `ns`.
pub(crate) fn tc(ns: &str, line: &str) -> Result<(), String> {
    run("tc", &format!("-n {ns} {line}"))
}

/// One `tc -n <ns> -batch -` process for all of `lines`.
pub(crate) fn tc_batch(ns: &str, lines: &[String]) -> Result<(), String> {
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
pub(crate) fn netns_add(name: &str) -> Result<(), String> {
    let mut live = live();
    ip(&format!("netns add {name}"))?;
    live.push(name.to_string());
    Ok(())
}

pub(crate) fn netns_del(name: &str) -> Result<(), String> {
    let mut live = live();
    ip(&format!("netns del {name}"))?;
    live.retain(|n| n != name);
    Ok(())
}

/// Deletes whatever the baseline left (at exit, and on signals).
pub(crate) fn delete_live_namespaces() {
    let mut live = live();
    for name in live.drain(..) {
        let _ = ip(&format!("netns del {name}"));
    }
}

/// Deletes `lkb-<pid>-*` namespaces of processes that no longer exist (a run that was
/// killed by SIGKILL).
pub(crate) fn delete_stale_namespaces() {
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
pub(crate) fn install_signal_cleanup() -> Result<(), String> {
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
pub(crate) struct IpTopology {
    pub(crate) hub: String,
    pub(crate) peers: Vec<String>,
    pub(crate) addrs: Vec<IpAddr>,
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
    pub(crate) fn create() -> Result<IpTopology, String> {
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
    pub(crate) fn add_peer(&mut self) -> Result<(), String> {
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
    pub(crate) fn teardown(self) -> Result<(), String> {
        for name in self.peers.iter().chain([&self.hub]) {
            netns_del(name)?;
        }
        Ok(())
    }

    pub(crate) fn ns(&self, peer: PeerId) -> &str {
        &self.peers[peer.0 - 1]
    }

    pub(crate) fn addr(&self, peer: PeerId) -> IpAddr {
        self.addrs[peer.0 - 1]
    }
}

/// HTB class of a destination (hex, as tc reads it; 1:1 is the default class).
pub(crate) fn class_of(destination: PeerId) -> String {
    format!("1:{:x}", 0x10 + destination.0)
}

/// Handle of the dropping qdisc that cuts a link.
pub(crate) fn cut_handle(destination: PeerId) -> String {
    format!("{:x}:", 0x10 + destination.0)
}

/// tc's command lines (after `tc -n <ns>`) that shape every link out of `source`: an
/// HTB root whose default class carries unclassified traffic, then a class and a u32
/// filter on the destination address per other peer. `quantum` keeps HTB from
/// warning about the quantum it would compute at these rates.
pub(crate) fn mesh_commands(
    topology: &IpTopology,
    source: PeerId,
    peers: &[PeerId],
) -> Vec<String> {
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
pub(crate) fn cut_command(link: Link) -> String {
    format!(
        "qdisc add dev eth0 parent {} handle {} pfifo limit 0",
        class_of(link.destination),
        cut_handle(link.destination)
    )
}

pub(crate) fn restore_command(link: Link) -> String {
    format!(
        "qdisc del dev eth0 parent {} handle {}",
        class_of(link.destination),
        cut_handle(link.destination)
    )
}

/// The tc side of the impairment phase, one process per command; then the mesh once
/// more with one `tc -batch` per peer (the best a tool that shells out can do).
pub(crate) fn tc_impairments(
    topology: &IpTopology,
    peers: &[PeerId],
    run: &mut Run,
) -> Result<(), String> {
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

pub(crate) fn ip_run(n: usize, impair: bool) -> Result<Run, String> {
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
pub(crate) fn ip_check() -> Result<(), String> {
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
