//! The harness seen from outside: a binary of `#[linkem::test]`s run as a subprocess,
//! its output and exit code checked. These tests are `parallel`: the fixture takes the
//! serial lock for its own namespace tests, which a serial test here would hold.

use std::process::{Command, Output};

linkem_test::main!();

fn fixture(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness-fixture"))
        .args(args)
        .env_remove("LINKEM_TEST_NO_USERNS")
        .output()
        .expect("run the harness fixture")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[linkem::test(parallel)]
async fn every_registered_test_is_listed() -> Result<(), String> {
    let out = fixture(&["--list"]);
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect();
    let mut want = [
        "controller_fails",
        "hangs_past_its_timeout",
        "needs_netem",
        "passes",
        "peer_one_panics",
        "peer_two_fails",
    ];
    want.sort();
    assert_eq!(listed, want, "{}", text(&out));
    Ok(())
}

#[linkem::test(parallel)]
async fn a_failing_peer_fails_the_test_with_its_id_and_the_network() -> Result<(), String> {
    let out = fixture(&["--exact", "peer_two_fails"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains("test peer_two_fails ... FAILED"), "{all}");
    assert!(
        all.contains("peer 2 failed: \"replica 2 diverged\""),
        "{all}"
    );
    assert!(
        all.contains("network: 3 peers in 10.0.0.0/24"),
        "the topology is reported: {all}"
    );
    assert!(
        all.contains("link 1 -> 2: rate 20mbit"),
        "the impairments are reported: {all}"
    );
    assert!(
        all.contains("sent") && all.contains("dropped"),
        "with the kernel's counters: {all}"
    );
    assert!(all.contains("1 failed"), "{all}");
    Ok(())
}

#[linkem::test(parallel)]
async fn a_panicking_peer_and_a_failing_controller_are_reported() -> Result<(), String> {
    let out = fixture(&["--exact", "peer_one_panics"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains("peer 1 panicked: ") && all.contains("peer one gives up"),
        "{all}"
    );
    let out = fixture(&["--exact", "controller_fails"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains("the controller failed: \"the controller saw a split brain\""),
        "{all}"
    );
    Ok(())
}

#[linkem::test(parallel)]
async fn a_test_past_its_timeout_fails_and_its_network_goes() -> Result<(), String> {
    let start = std::time::Instant::now();
    let out = fixture(&["--exact", "hangs_past_its_timeout"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains("timed out after 1s"), "{all}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the hung bodies were cancelled"
    );
    Ok(())
}

#[linkem::test(parallel)]
async fn passing_and_filtered_runs_exit_zero() -> Result<(), String> {
    let out = fixture(&["--exact", "passes", "--format", "terse"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fixture(&["passes", "--skip", "fails"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "{all}");
    Ok(())
}

#[linkem::test(parallel)]
async fn without_privileges_every_test_is_ignored_with_the_reason() -> Result<(), linkem::Error> {
    // Drop to an unprivileged user with user namespaces forbidden: nothing can run.
    // Switching user needs real root (not root inside a user namespace).
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let initial = uid_map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if !initial || !nix::unistd::geteuid().is_root() {
        return Err(linkem::Error::Unsupported {
            feature: "switching to an unprivileged user".into(),
            module: "real root",
            hint: "this run is root inside a user namespace; the root runs check it",
        });
    }
    use std::os::unix::process::CommandExt;
    let out = Command::new(env!("CARGO_BIN_EXE_harness-fixture"))
        .env("LINKEM_TEST_NO_USERNS", "1")
        .env("XDG_RUNTIME_DIR", "/nonexistent")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run the fixture unprivileged");
    let all = text(&out);
    assert!(
        out.status.success(),
        "ignored tests do not fail the run: {all}"
    );
    assert!(all.contains("0 passed; 0 failed; 6 ignored"), "{all}");
    assert!(
        all.contains("namespace tests need CAP_NET_ADMIN and CAP_SYS_ADMIN"),
        "the reason is given: {all}"
    );
    Ok(())
}
