//! Concurrency: many networks in one process, and many processes, stay apart.

use super::*;

#[linkem::test(timeout = "120s")]
async fn sixteen_networks_on_one_subnet_at_once_stay_apart() -> Result<(), Error> {
    const NETWORKS: usize = 16;
    let barrier = Arc::new(std::sync::Barrier::new(NETWORKS));
    let threads: Vec<_> = (0..NETWORKS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let net = network(2).await?;
                    // Every network exists before any sends: they overlap in time.
                    barrier.wait();
                    net.apply_impairment(
                        Link::new(P1, P2),
                        LinkImpairment::new().with_rate(Rate::mbit(100)),
                    )
                    .await?;
                    let tag = format!("network-{i}").into_bytes();
                    let got = udp_exchange(&net, P1, P2, &tag, 20).await?;
                    let inodes = net.namespace_inodes();
                    // All alive at once until here, so their inodes are distinct.
                    barrier.wait();
                    Ok::<_, Error>((tag, got, inodes))
                })
            })
        })
        .collect();
    let mut all_inodes = BTreeSet::new();
    for (i, thread) in threads.into_iter().enumerate() {
        let (tag, got, inodes) = thread
            .join()
            .unwrap_or_else(|_| panic!("network {i} panicked"))?;
        let arrived = got.arrived.len();
        assert_eq!(arrived, 20, "network {i}: 20 sent, {arrived} arrived");
        assert!(
            got.all_intact(),
            "network {i} ({}) received another network's datagrams: {got:?}",
            String::from_utf8_lossy(&tag)
        );
        for inode in inodes {
            assert!(all_inodes.insert(inode), "namespace {inode} shared");
        }
    }
    assert_eq!(all_inodes.len(), NETWORKS * 3);
    let live = live_netns_inodes();
    let left: Vec<_> = all_inodes.iter().filter(|i| live.contains(i)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    Ok(())
}

#[linkem::test(timeout = "120s")]
async fn four_processes_at_once_succeed_and_leave_nothing() -> Result<(), Error> {
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_exchange-network"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn exchange-network")
        })
        .collect();
    let mut inodes = BTreeSet::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait for exchange-network");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.lines().any(|l| l == "OK"),
            "process {i} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("inodes "))
            .expect("the inodes line");
        // Not checked for uniqueness: a process that ended freed its namespaces, and
        // the kernel may give their inode numbers to another process's.
        let mine: Vec<u64> = line
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(mine.len(), 3, "process {i}: hub and two peers");
        inodes.extend(mine);
    }
    let live = live_netns_inodes();
    let left: Vec<_> = inodes.iter().filter(|i| live.contains(i)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    Ok(())
}
