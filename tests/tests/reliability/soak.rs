//! Soak: a long run of build, impair, traffic, teardown cycles returns to its starting
//! resources.

use super::*;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One cycle: build, impair (shaper only: no netem needed), traffic, change, teardown.
async fn soak_cycle(cycle: usize) -> Result<(), Error> {
    let net = network(2).await?;
    let ours = net.namespace_inodes();
    let link = Link::new(P1, P2);
    net.apply_impairment(link, LinkImpairment::new().with_rate(Rate::mbit(50)))
        .await?;
    let tag = format!("cycle-{cycle}").into_bytes();
    let got = udp_exchange(&net, P1, P2, &tag, 5).await?;
    assert!(
        got.arrived.len() == 5 && got.all_intact(),
        "cycle {cycle}: traffic: {got:?}"
    );
    let changed = LinkImpairment::new()
        .with_rate(Rate::mbit(20))
        .with_burst(64 * 1024);
    net.apply_impairment(link, changed.clone()).await?;
    assert_eq!(net.impairment(link).await?, changed);
    assert!(net.link_stats(link).await?.is_some());
    drop(net);
    let live = own_netns_inodes();
    assert!(
        ours.iter().all(|i| !live.contains(i)),
        "cycle {cycle}: namespaces left"
    );
    Ok(())
}

#[linkem::test(timeout = "3600s")]
async fn soak_cycles_return_to_their_starting_resources() -> Result<(), Error> {
    let cycles: usize = std::env::var("LINKEM_SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    // One cycle first: what is set up once per process (tokio's blocking pool, the
    // psched values, the netem probe) is not a leak.
    soak_cycle(0).await?;
    let before = Before::now();
    let rss_start = rss_kib();
    let started = Instant::now();
    let mut rss_max = rss_start;
    for cycle in 1..=cycles {
        soak_cycle(cycle).await?;
        rss_max = rss_max.max(rss_kib());
    }
    let took = started.elapsed();
    before.assert_back(&[], "after the soak");
    let rss_end = rss_kib();
    println!(
        "soak: {cycles} cycles in {took:.1?} ({:.1} ms/cycle); fds {} -> {}, threads {} -> \
         {}, RSS {rss_start} KiB -> {rss_end} KiB (max {rss_max} KiB)",
        took.as_secs_f64() * 1e3 / cycles.max(1) as f64,
        before.fds.len(),
        fd_count(),
        before.threads.len(),
        thread_count(),
    );
    // Bounded: allocator caches and the like may grow a little, a leak of a network per
    // cycle (several MiB of kernel and user memory) would not stay under this.
    assert!(
        rss_end.saturating_sub(rss_start) < 32 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB over {cycles} cycles"
    );
    Ok(())
}
