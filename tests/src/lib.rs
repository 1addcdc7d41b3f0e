//! Helpers of the integration suite: looking at the machine from the outside.

use std::collections::BTreeSet;
use std::fs;

use linkem::ip::Subnet;
use linkem::network::Network;

/// A network of `peers` peers in `subnet`.
pub async fn network_in(subnet: Subnet, peers: usize) -> Result<Network, linkem::Error> {
    let mut net = Network::new(subnet).await?;
    for _ in 0..peers {
        net.add_peer().await?;
    }
    Ok(net)
}

/// Runs `tc` with `args` inside `peer`'s namespace, as an independent oracle of what
/// linkem built; returns its output, panics with tc's stderr if it fails.
pub fn tc(net: &Network, peer: linkem::network::PeerId, args: &str) -> String {
    let out = net
        .std_command(peer, "tc")
        .unwrap()
        .args(args.split_whitespace())
        .output()
        .expect("run tc");
    assert!(
        out.status.success(),
        "tc {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network of `peers` peers in 10.0.0.0/24.
pub async fn network(peers: usize) -> Result<Network, linkem::Error> {
    network_in(Subnet::new([10, 0, 0, 0].into(), 24), peers).await
}

/// Every network-namespace inode referenced by any thread or open descriptor of any
/// process on the machine (what `lsns -t net` would find, plus descriptor-held ones).
pub fn live_netns_inodes() -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for proc in procs.flatten() {
        let path = proc.path();
        if !proc
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let tasks = fs::read_dir(path.join("task"))
            .into_iter()
            .flatten()
            .flatten();
        for task in tasks {
            collect(&task.path().join("ns/net"), &mut found);
        }
        let fds = fs::read_dir(path.join("fd"))
            .into_iter()
            .flatten()
            .flatten();
        for fd in fds {
            collect(&fd.path(), &mut found);
        }
    }
    found
}

/// The network-namespace inodes this process references (its threads and descriptors):
/// unlike [`live_netns_inodes`], not disturbed by other processes on the machine.
pub fn own_netns_inodes() -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    for task in fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        collect(&task.path().join("ns/net"), &mut found);
    }
    for fd in fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        collect(&fd.path(), &mut found);
    }
    found
}

fn collect(link: &std::path::Path, found: &mut BTreeSet<u64>) {
    if let Ok(target) = fs::read_link(link) {
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("net:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            found.insert(inode);
        }
    }
}

/// The threads of this process.
pub fn thread_count() -> usize {
    fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The open descriptors of this process.
pub fn fd_count() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The interfaces of the calling thread's network namespace, by name.
pub fn interfaces() -> BTreeSet<String> {
    fs::read_to_string("/proc/thread-self/net/dev")
        .unwrap_or_default()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Polls `check` for up to two seconds: the kernel releases some things (threads being
/// reaped) a moment after the user-visible end.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    check()
}
