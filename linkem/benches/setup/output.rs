//! Output: tables and JSON.

use super::*;

pub(crate) fn fmt_duration(d: Duration) -> String {
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

pub(crate) fn fmt_stats(s: Stats) -> String {
    format!(
        "{} [{} .. {}]",
        fmt_duration(s.median),
        fmt_duration(s.min),
        fmt_duration(s.max)
    )
}

pub(crate) fn fmt_ratio(linkem: Duration, ip: Duration) -> String {
    let ratio = ip.as_secs_f64() / linkem.as_secs_f64().max(1e-9);
    if ratio >= 1.0 {
        format!("{ratio:.1}x faster")
    } else {
        format!("{:.1}x slower", 1.0 / ratio)
    }
}

#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) kernel: String,
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) iproute2: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages before and after the runs: other
    /// processes share the CPUs, and the numbers move with them.
    pub(crate) load_before: String,
    pub(crate) load_after: String,
}

pub(crate) fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    pub(crate) fn probe() -> Machine {
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

pub(crate) fn print_tables(machine: &Machine, results: &Results, args: &Args) {
    println!(
        "linkem setup benchmark: Linux {}, {} CPUs ({}), {}",
        machine.kernel, machine.cpus, machine.cpu_model, machine.iproute2
    );
    println!(
        "load average {} before, {} after",
        machine.load_before, machine.load_after
    );
    println!("linkem backend: {}", args.backend);
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

pub(crate) fn json_string(s: &str) -> String {
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

pub(crate) fn print_json(machine: &Machine, results: &Results) {
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
