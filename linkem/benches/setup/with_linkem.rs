//! The linkem side: the topology built with `Network`.

use super::*;

pub(crate) async fn linkem_run(
    n: usize,
    impair: bool,
    backend: BackendKind,
) -> linkem::Result<Run> {
    let mut run = Run::default();

    let start = Instant::now();
    let mut net = Network::builder(subnet()).backend(backend).build().await?;
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
pub(crate) async fn linkem_impairments(
    net: &Network,
    peers: &[PeerId],
    run: &mut Run,
) -> linkem::Result<()> {
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

/// A one-off check, not timed, that linkem's topology carries traffic (and, on the
/// kernel backend, that the bench's changes reach the kernel's tc tree).
pub(crate) async fn linkem_check(backend: BackendKind) -> Result<(), String> {
    let mut net = Network::builder(subnet())
        .backend(backend)
        .build()
        .await
        .map_err(|e| e.to_string())?;
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
    // The bench's changes reach the data plane: on the kernel, the link's shaper shows
    // the new rate; the engine's model is not visible from outside, so there the
    // change's acceptance is the check.
    let rate = |mbit| LinkImpairment::new().with_rate(Rate::mbit(mbit));
    for mbit in [MESH_RATE_MBIT, CHANGED_RATE_MBIT] {
        net.apply_impairment(Link::new(a, b), rate(mbit))
            .await
            .map_err(|e| e.to_string())?;
        if backend != BackendKind::Kernel {
            continue;
        }
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
