//! linkem doing its job, in one command: `cargo run --example quickstart`.
//!
//! Three peers, a different impairment on each pair, each measured from inside the
//! peers with real sockets, and a table of configured against measured values:
//!
//! - 1 <-> 2: 30 ms each way with 5 ms of jitter: UDP echo round trips (median of 200).
//! - 1 -> 3: 5 % loss: 2,000 numbered datagrams, counted at the receiver.
//! - 2 <-> 3: 20 Mbit/s: one TCP flow for 2 s, bytes counted at the receiver; then the
//!   pair is partitioned (every probe lost) and healed (every probe back).
//!
//! The baseline (the same measurements before any impairment) comes from the same run.
//! Exits with 1 when a measurement is outside its tolerance, 2 on an error.

mod common;

use std::time::Duration;

use common::{Fallible, Table};
use linkem::ip::Subnet;
use linkem::network::{Link, Network, PeerId};
use linkem::tc::impairment::LinkImpairment;

const DELAY: Duration = Duration::from_millis(30);
const JITTER: Duration = Duration::from_millis(5);
const LOSS_PERCENT: f64 = 5.0;
const RATE_MBIT: f64 = 20.0;

const ECHO_PORT: u16 = 7;
const SINK_PORT: u16 = 9;
const FLOW_PORT: u16 = 5001;

const RTT_PROBES: usize = 200;
const LOSS_DATAGRAMS: usize = 2000;

fn main() -> std::process::ExitCode {
    common::main("quickstart", run)
}

/// One line of the table and whether it passed.
struct Row {
    link: String,
    configured: String,
    measured: String,
    ok: Option<bool>,
    bounds: String,
}

async fn run() -> Fallible<bool> {
    let mut net = Network::new(Subnet::new([10, 77, 0, 0].into(), 24)).await?;
    let (p1, p2, p3) = (
        net.add_peer().await?,
        net.add_peer().await?,
        net.add_peer().await?,
    );
    let backend = common::backend(&net);
    println!(
        "linkem quickstart: 3 peers on {}, backend: {backend}",
        net.subnet()
    );

    let mut rows = Vec::new();
    let mut unsupported = Vec::new();

    // The baseline: the same paths before any impairment, in this run.
    let base_rtt = common::measure_rtt(
        &net,
        p1,
        p2,
        ECHO_PORT,
        RTT_PROBES,
        Duration::from_millis(2),
        Duration::from_millis(200),
    )
    .await?;
    let (Some(base_median), Some(base_p90)) = (base_rtt.median(), base_rtt.quantile(0.9)) else {
        return common::fail("no probe came back on the unimpaired pair 1 <-> 2");
    };
    rows.push(Row {
        link: "1 <-> 2".into(),
        configured: "none (baseline)".into(),
        measured: format!(
            "RTT median {}, p90 {} ({} of {} back)",
            common::ms(base_median),
            common::ms(base_p90),
            base_rtt.echoed(),
            base_rtt.sent
        ),
        ok: Some(base_rtt.echoed() == base_rtt.sent),
        bounds: "every probe back".into(),
    });
    let base_loss = common::measure_one_way(
        &net,
        p1,
        p3,
        SINK_PORT,
        LOSS_DATAGRAMS,
        2,
        Duration::from_millis(100),
    )
    .await?;
    rows.push(loss_row("1 -> 3", "none (baseline)".into(), base_loss, 0.0));

    // The impairments. One the backend cannot do is reported, and the others still run.
    let delay = LinkImpairment::new()
        .with_latency(DELAY)
        .with_jitter(JITTER);
    let loss = LinkImpairment::new().with_loss(LOSS_PERCENT);
    let rate = LinkImpairment {
        bandwidth_mbit_s: Some(RATE_MBIT),
        ..Default::default()
    };
    let delay_ok = apply(&net, p1, p2, true, delay, &mut unsupported).await?;
    let loss_ok = apply(&net, p1, p3, false, loss, &mut unsupported).await?;
    let rate_ok = apply(&net, p2, p3, true, rate, &mut unsupported).await?;

    if delay_ok {
        let probes = common::measure_rtt(
            &net,
            p1,
            p2,
            ECHO_PORT,
            RTT_PROBES,
            Duration::from_millis(5),
            4 * (DELAY + JITTER) + Duration::from_millis(200),
        )
        .await?;
        let configured = 2 * DELAY;
        let low = configured.saturating_sub(common::median_tolerance(JITTER, probes.echoed()));
        let high = configured
            + common::median_tolerance(JITTER, probes.echoed())
            + common::path_allowance(base_p90);
        let median = probes.median();
        rows.push(Row {
            link: "1 <-> 2".into(),
            configured: format!(
                "delay {} ± {} each way (RTT {})",
                common::ms(DELAY),
                common::ms(JITTER),
                common::ms(configured)
            ),
            measured: match median {
                Some(m) => format!(
                    "RTT median {} ({} of {} back)",
                    common::ms(m),
                    probes.echoed(),
                    probes.sent
                ),
                None => "no probe came back".into(),
            },
            ok: Some(
                median.is_some_and(|m| m >= low && m <= high) && probes.echoed() == probes.sent,
            ),
            bounds: format!("{} ..= {}", common::ms(low), common::ms(high)),
        });
    }

    if loss_ok {
        let measured = common::measure_one_way(
            &net,
            p1,
            p3,
            SINK_PORT,
            LOSS_DATAGRAMS,
            2,
            Duration::from_millis(100),
        )
        .await?;
        rows.push(loss_row(
            "1 -> 3",
            format!("loss {LOSS_PERCENT} %"),
            measured,
            LOSS_PERCENT / 100.0,
        ));
    }

    if rate_ok {
        let goodput = common::measure_goodput(
            &net,
            p2,
            p3,
            FLOW_PORT,
            Duration::from_millis(400),
            Duration::from_secs(2),
        )
        .await?;
        let rate = RATE_MBIT * 1e6;
        let ceiling = rate * common::TCP_PAYLOAD_FRACTION;
        // One flow through a shaper whose queue holds more than the path's tiny
        // bandwidth-delay product never lets the link idle once slow start is over (the
        // warm-up is excluded): 85 % of the ceiling leaves room for the shaper's
        // timer on a loaded machine and a loss-recovery episode, and nothing more.
        let low = 0.85 * ceiling;
        let bps = goodput.bits_per_second();
        rows.push(Row {
            link: "2 -> 3".into(),
            configured: format!("rate {RATE_MBIT} Mbit/s (both ways)"),
            measured: format!(
                "TCP goodput {} over {:.1} s",
                common::mbit(bps),
                goodput.window.as_secs_f64()
            ),
            ok: Some(bps >= low && bps <= rate),
            bounds: format!(
                "{} ..= {} (payload ceiling {})",
                common::mbit(low),
                common::mbit(rate),
                common::mbit(ceiling)
            ),
        });
    }

    // A partition: nothing gets through either way; healed, everything does again.
    net.partition(p2, p3).await?;
    let cut = common::measure_rtt(
        &net,
        p2,
        p3,
        ECHO_PORT,
        100,
        Duration::from_millis(2),
        Duration::from_millis(200),
    )
    .await?;
    rows.push(Row {
        link: "2 <-> 3".into(),
        configured: "partitioned".into(),
        measured: format!(
            "{} of {} probes back ({:.0} % loss)",
            cut.echoed(),
            cut.sent,
            100.0 * (cut.sent - cut.echoed()) as f64 / cut.sent.max(1) as f64
        ),
        ok: Some(cut.echoed() == 0 && cut.sent == 100),
        bounds: "100 % loss".into(),
    });
    net.heal(p2, p3).await?;
    let healed = common::measure_rtt(
        &net,
        p2,
        p3,
        ECHO_PORT,
        100,
        Duration::from_millis(2),
        Duration::from_millis(200),
    )
    .await?;
    rows.push(Row {
        link: "2 <-> 3".into(),
        configured: if rate_ok {
            format!("healed (rate {RATE_MBIT} Mbit/s again)")
        } else {
            "healed".into()
        },
        measured: format!(
            "{} of {} probes back, RTT median {}",
            healed.echoed(),
            healed.sent,
            healed
                .median()
                .map(common::ms)
                .unwrap_or_else(|| "-".into())
        ),
        // No loss is configured on this pair: every probe must come back.
        ok: Some(healed.echoed() == healed.sent && healed.sent == 100),
        bounds: "every probe back".into(),
    });

    let mut table = Table::new(&["link", "configured", "measured", "verdict", "tolerance"]);
    let mut all_ok = true;
    for r in rows {
        all_ok &= r.ok != Some(false);
        table.row(vec![
            r.link,
            r.configured,
            r.measured,
            r.ok.map(common::verdict).unwrap_or_default(),
            r.bounds,
        ]);
    }
    for (link, _) in &unsupported {
        table.row(vec![
            link.clone(),
            "not applied".into(),
            "-".into(),
            "SKIPPED".into(),
            "-".into(),
        ]);
    }
    print!("{}", table.render());
    for (link, reason) in &unsupported {
        println!("{link}: {reason}");
    }
    net.shutdown().await?;
    if !unsupported.is_empty() {
        return common::fail(format!(
            "{} of 3 impairments could not be applied on the {backend} backend (above); \
             the rest were measured",
            unsupported.len()
        ));
    }
    if all_ok {
        println!("every measurement is within its tolerance.");
    }
    Ok(all_ok)
}

/// Applies `impairment` to `a -> b` (and `b -> a` if `both`); an `Unsupported` refusal
/// is noted and answered with `false`, any other error ends the demo.
async fn apply(
    net: &Network,
    a: PeerId,
    b: PeerId,
    both: bool,
    impairment: LinkImpairment,
    unsupported: &mut Vec<(String, String)>,
) -> Fallible<bool> {
    let result = if both {
        net.apply_impairment_both(a, b, impairment).await
    } else {
        net.apply_impairment(Link::new(a, b), impairment).await
    };
    let arrow = if both { "<->" } else { "->" };
    match result {
        Ok(()) => Ok(true),
        Err(e @ linkem::Error::Unsupported { .. }) => {
            unsupported.push((format!("{a} {arrow} {b}"), e.to_string()));
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

fn loss_row(link: &str, configured: String, m: common::OneWay, p: f64) -> Row {
    let lost = m.sent - m.received;
    let (low, high) = common::binomial_band(m.sent, p);
    let mut measured = format!(
        "{lost} of {} lost ({:.1} %)",
        m.sent,
        100.0 * lost as f64 / m.sent.max(1) as f64
    );
    if m.rcvbuf_errors > 0 {
        measured += &format!(
            ", {} of them by the receiver's socket buffer",
            m.rcvbuf_errors
        );
    }
    Row {
        link: link.into(),
        configured,
        measured,
        ok: Some(m.sent == LOSS_DATAGRAMS && (low..=high).contains(&(lost as f64))),
        bounds: if p == 0.0 {
            "none lost".into()
        } else {
            format!("{low:.0} ..= {high:.0} lost (binomial, 5 sigma)")
        },
    }
}
