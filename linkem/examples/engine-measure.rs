//! The userspace engine next to the kernel bridge, measured in one run: TCP goodput,
//! added round-trip time, delay error at 1/10/100 ms, small-UDP packet rate, idle CPU,
//! and the cost of capture (goodput and round trips with and without).
//!
//! Needs root (namespaces, veth). Run in release:
//! `cargo run --release -p linkem --example engine-measure` (`-- --quick` for a short
//! pass).

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    linkem::__engine_measure::run(quick);
}
