//! Helpers of the integration suite: looking at the machine from the outside.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use linkem::ip::Subnet;
use linkem::network::Network;

pub mod fates;
pub mod pace;
pub mod probe;
pub mod stats;

/// A network of `peers` peers in `subnet`.
pub async fn network_in(subnet: Subnet, peers: usize) -> Result<Network, linkem::Error> {
    let mut net = Network::new(subnet).await?;
    for _ in 0..peers {
        net.add_peer().await?;
    }
    Ok(net)
}

/// Where the system directories are that a normal user's PATH lacks: iproute2 (`ip`,
/// `tc`) lives in /usr/sbin or /sbin on Debian.
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The absolute path of `program` (`tc`, `ip`, `ping`), a command the suite uses as an
/// independent oracle: found in PATH or in the system directories. Panics with a
/// sentence saying what to install when it is nowhere, never with a bare "not found".
pub fn oracle(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "this test checks linkem against `{program}`, which is not in PATH nor in \
                 {}: install it (iproute2 provides ip and tc, iputils-ping provides ping)",
                SYSTEM_DIRS.join(", ")
            )
        })
}

/// A blocking command running the oracle `program` inside `peer`'s namespace.
pub fn oracle_command(
    net: &Network,
    peer: linkem::network::PeerId,
    program: &str,
) -> std::process::Command {
    net.std_command(peer, oracle(program))
        .expect("the peer exists")
}

/// Runs `tc` with `args` inside `peer`'s namespace, as an independent oracle of what
/// linkem built; returns its output, panics with tc's stderr if it fails.
pub fn tc(net: &Network, peer: linkem::network::PeerId, args: &str) -> String {
    let out = oracle_command(net, peer, "tc")
        .args(args.split_whitespace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run tc {args}: {e}"));
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

/// Every network-namespace inode referenced by a thread or an open descriptor of this
/// process or of a process descending from it.
///
/// Not the whole machine: the kernel hands a freed namespace's inode number to the
/// next namespace created anywhere (proc_alloc_inum() takes the lowest free id), so
/// another process's fresh namespace could pass for one of ours that is long gone.
/// Only this process tree can hold ours (linkem makes no bind mounts).
pub fn live_netns_inodes() -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    for pid in family() {
        let path = std::path::Path::new("/proc").join(pid.to_string());
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

/// This process and every running process descending from it.
fn family() -> Vec<u32> {
    let mut parents = Vec::new();
    for proc in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // The parent is the 2nd field after the command, which is in parentheses and
        // may itself contain spaces and parentheses.
        let stat = fs::read_to_string(proc.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![std::process::id()];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    family
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

/// The threads of this process, as "tid name" lines: what a leak message shows.
pub fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let ns = fs::read_link(t.path().join("ns/net"))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "no namespace".into());
            format!("{} {} ({ns})", t.file_name().to_string_lossy(), comm.trim())
        })
        .collect();
    names.sort();
    names
}

/// The open descriptors of this process, as "fd -> target" lines.
pub fn fd_targets() -> Vec<String> {
    let mut fds: Vec<String> = fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .map(|fd| {
            let target = fs::read_link(fd.path())
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{} -> {target}", fd.file_name().to_string_lossy())
        })
        .collect();
    fds.sort();
    fds
}
