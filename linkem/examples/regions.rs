//! A multi-region deployment on one machine: `cargo run --example regions`.
//!
//! Five peers stand for five cloud regions; every pair gets the one-way delay of half
//! its real round trip. The round trips are rounded from public inter-region
//! measurements between AWS regions (for instance the matrix at cloudping.co, medians;
//! real values move by a few milliseconds with routes and time of day):
//!
//! | RTT (ms)  | us-west | eu-west | eu-central | ap-northeast |
//! |-----------|---------|---------|------------|--------------|
//! | us-east   | 65      | 70      | 90         | 145          |
//! | us-west   |         | 125     | 145        | 100          |
//! | eu-west   |         |         | 25         | 200          |
//! | eu-central|         |         |            | 225          |
//!
//! Each pair's round trip is measured by UDP echo (median of 20) and printed as a
//! matrix of configured against measured; the run fails when a median is below the
//! configured round trip or above it by more than the allowance derived from the
//! unimpaired baseline measured first.

mod common;

use std::time::Duration;

use common::Fallible;
use linkem::ip::Subnet;
use linkem::network::Network;
use linkem::tc::impairment::LinkImpairment;

const REGIONS: [&str; 5] = [
    "us-east",
    "us-west",
    "eu-west",
    "eu-central",
    "ap-northeast",
];

/// Round trips in milliseconds, upper triangle of the table above (i < j).
fn rtt_ms(i: usize, j: usize) -> u64 {
    const RTT: [[u64; 5]; 5] = [
        [0, 65, 70, 90, 145],
        [0, 0, 125, 145, 100],
        [0, 0, 0, 25, 200],
        [0, 0, 0, 0, 225],
        [0, 0, 0, 0, 0],
    ];
    RTT[i.min(j)][i.max(j)]
}

const PORT: u16 = 7200;
const PROBES: usize = 20;

fn main() -> std::process::ExitCode {
    common::main("regions", run)
}

async fn run() -> Fallible<bool> {
    let mut net = Network::new(Subnet::new([10, 77, 4, 0].into(), 24)).await?;
    let mut peers = Vec::new();
    for _ in REGIONS {
        peers.push(net.add_peer().await?);
    }
    println!(
        "regions: {} regions, one peer each, backend: {}",
        REGIONS.len(),
        common::backend(&net)
    );

    let mut pairs = Vec::new();
    for i in 0..peers.len() {
        for j in i + 1..peers.len() {
            pairs.push((i, j));
        }
    }

    // The baseline: the same measurement, all pairs at once as below, before any delay.
    let baseline = measure_all(&net, &peers, &pairs).await;
    let mut base_p90 = Duration::ZERO;
    for (&(i, j), probes) in pairs.iter().zip(baseline) {
        match probes?.quantile(0.9) {
            Some(p90) => base_p90 = base_p90.max(p90),
            None => {
                return common::fail(format!(
                    "no probe came back between {} and {} before any impairment",
                    REGIONS[i], REGIONS[j]
                ))
            }
        }
    }
    let allowance = common::path_allowance(base_p90);

    for &(i, j) in &pairs {
        let one_way = Duration::from_millis(rtt_ms(i, j)) / 2;
        net.apply_impairment_both(
            peers[i],
            peers[j],
            LinkImpairment::new().with_latency(one_way),
        )
        .await?;
    }
    let results = measure_all(&net, &peers, &pairs).await;

    let mut matrix = vec![vec![String::new(); REGIONS.len()]; REGIONS.len()];
    let mut failures = Vec::new();
    for (&(i, j), probes) in pairs.iter().zip(results) {
        let probes = probes?;
        let configured = Duration::from_millis(rtt_ms(i, j));
        let cell = match probes.median() {
            Some(m) => {
                if m < configured || m > configured + allowance || probes.echoed() < PROBES {
                    failures.push(format!(
                        "{} <-> {}: median {} of {} probes back, configured {}",
                        REGIONS[i],
                        REGIONS[j],
                        common::ms(m),
                        probes.echoed(),
                        common::ms(configured)
                    ));
                }
                format!("{} / {:.1}", rtt_ms(i, j), m.as_secs_f64() * 1e3)
            }
            None => {
                failures.push(format!(
                    "{} <-> {}: no probe came back",
                    REGIONS[i], REGIONS[j]
                ));
                format!("{} / -", rtt_ms(i, j))
            }
        };
        matrix[i][j] = cell.clone();
        matrix[j][i] = cell;
    }
    net.shutdown().await?;

    println!("round trip in ms, configured / measured (median of {PROBES} UDP echoes):");
    let mut header = vec![""];
    header.extend(REGIONS);
    let mut table = common::Table::new(&header);
    for (i, row) in matrix.into_iter().enumerate() {
        let mut cells = vec![REGIONS[i].to_string()];
        cells.extend(
            row.into_iter()
                .map(|c| if c.is_empty() { "-".into() } else { c }),
        );
        table.row(cells);
    }
    print!("{}", table.render());
    println!(
        "tolerance: configured ..= configured + {} (2 x the worst unimpaired p90, {}, + 1 ms)",
        common::ms(allowance),
        common::ms(base_p90)
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    Ok(failures.is_empty())
}

/// Every pair's round trips, all pairs at once; each pair has its own port, so the
/// echo servers sharing a peer do not collide.
async fn measure_all(
    net: &Network,
    peers: &[linkem::PeerId],
    pairs: &[(usize, usize)],
) -> Vec<Fallible<common::Probes>> {
    let measurements = pairs.iter().map(|&(i, j)| {
        let configured = Duration::from_millis(rtt_ms(i, j));
        common::measure_rtt(
            net,
            peers[i],
            peers[j],
            PORT + 1 + (i * REGIONS.len() + j) as u16,
            PROBES,
            Duration::from_millis(10),
            2 * configured + Duration::from_millis(200),
        )
    });
    futures::future::join_all(measurements).await
}
