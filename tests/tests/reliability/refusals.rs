//! Kernel refusals: a plan the kernel refuses halfway leaves the previous state.

use super::*;

/// Takes qdisc handle `handle` on peer 1's eth0 behind linkem's back: a class 1:100 of
/// linkem's root HTB with a pfifo of that handle.
fn occupy_handle(net: &Network, handle: &str) {
    tc(
        net,
        P1,
        "class add dev eth0 parent 1: classid 1:100 htb rate 1mbit",
    );
    tc(
        net,
        P1,
        &format!("qdisc add dev eth0 parent 1:100 handle {handle} pfifo"),
    );
}

fn assert_refused_by_the_kernel(err: &Error, link: &str) {
    match err {
        Error::Netlink { op, message, .. } => {
            // The errno depends on the kernel (EEXIST "Exclusivity flag on, cannot
            // override", or EINVAL "Cannot move an existing qdisc to a different
            // parent" on newer kernels); the refusal and its text are what matter.
            assert!(op.contains(link), "the error names the link: {err}");
            // The kernel explains this refusal (extended ack); linkem passes it on.
            let message = message.as_deref().unwrap_or_default();
            assert!(!message.is_empty(), "the kernel's message is kept: {err:?}");
        }
        other => panic!("expected a kernel refusal, got {other:?}"),
    }
}

#[linkem::test(backend = "kernel")]
async fn a_shaper_refused_mid_plan_leaves_the_previous_state() -> Result<(), Error> {
    let net = network(3).await?;
    let kept = LinkImpairment::new().with_rate(Rate::mbit(30));
    net.apply_impairment(Link::new(P1, P3), kept.clone())
        .await?;
    // The TBF of link 1 -> 2 would be 8003:; take that handle first. The plan creates
    // the class 1:3, then fails on the TBF.
    occupy_handle(&net, "8003:");
    let state = tc(&net, P1, "qdisc show dev eth0") + &tc(&net, P1, "filter show dev eth0");
    let err = net
        .apply_impairment(
            Link::new(P1, P2),
            LinkImpairment::new().with_rate(Rate::mbit(5)),
        )
        .await
        .unwrap_err();
    assert_refused_by_the_kernel(&err, "link 1 -> 2");
    assert_eq!(
        net.impairment(Link::new(P1, P2)).await?,
        LinkImpairment::new()
    );
    assert_eq!(net.impairment(Link::new(P1, P3)).await?, kept);
    assert_eq!(net.link_stats(Link::new(P1, P2)).await?, None);
    let classes = tc(&net, P1, "class show dev eth0");
    assert!(
        !classes.contains("class htb 1:3 "),
        "the class made before the refusal is gone:\n{classes}"
    );
    assert_eq!(
        tc(&net, P1, "qdisc show dev eth0") + &tc(&net, P1, "filter show dev eth0"),
        state,
        "qdiscs and filters are as before"
    );
    assert_usable(&net).await
}

#[linkem::test(netem, backend = "kernel")]
async fn a_netem_change_refused_mid_plan_leaves_the_previous_state() -> Result<(), Error> {
    let net = network(2).await?;
    let link = Link::new(P1, P2);
    let before = LinkImpairment::new().with_latency(Duration::from_millis(10));
    net.apply_impairment(link, before.clone()).await?;
    occupy_handle(&net, "8003:");
    // The change replaces the netem in place (10 -> 30 ms), then adds the TBF 8003:
    // under it, which the kernel refuses: the netem must be back at 10 ms.
    let err = net
        .apply_impairment(
            link,
            LinkImpairment::new()
                .with_latency(Duration::from_millis(30))
                .with_rate(Rate::mbit(10)),
        )
        .await
        .unwrap_err();
    assert_refused_by_the_kernel(&err, "link 1 -> 2");
    assert_eq!(net.impairment(link).await?, before);
    let qdiscs = tc(&net, P1, "qdisc show dev eth0");
    let netem = qdiscs
        .lines()
        .find(|l| l.starts_with("qdisc netem 3:"))
        .unwrap_or_else(|| panic!("the link's netem is back:\n{qdiscs}"));
    assert!(netem.contains("delay 10ms"), "with its old delay: {netem}");
    assert!(
        !qdiscs.contains("qdisc tbf"),
        "no TBF of the refused change:\n{qdiscs}"
    );
    assert!(net.link_stats(link).await?.is_some());
    // Still usable, and the delay is the old one.
    let started = Instant::now();
    let got = udp_exchange(&net, P1, P2, b"after", 10).await?;
    assert_eq!(got.arrived.len(), 10);
    assert!(started.elapsed() >= Duration::from_millis(10));
    // A valid change still goes through once the handle is free.
    tc(&net, P1, "qdisc del dev eth0 parent 1:100 handle 8003:");
    let after = LinkImpairment::new()
        .with_latency(Duration::from_millis(30))
        .with_rate(Rate::mbit(10));
    net.apply_impairment(link, after.clone()).await?;
    assert_eq!(net.impairment(link).await?, after);
    assert_usable(&net).await
}
