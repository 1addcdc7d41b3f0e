//! The harness seen from outside: a binary of `#[linkem::test]`s run as a subprocess,
//! its output and exit code checked. These tests are `parallel`: the fixture takes the
//! serial lock for its own namespace tests, which a serial test here would hold.
//!
//! Each test here runs once per backend, like every backend-independent test, and
//! runs the fixture's trials of its own backend (`LINKEM_BACKEND` set for the fixture),
//! so that both backends' reports are checked.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use linkem::BackendKind;

linkem_test::main!();

/// The backend of the trial running this test.
fn backend() -> BackendKind {
    linkem::testing::trial::backend().expect("a harness trial sets its backend")
}

/// The fixture with `args`, restricted to this trial's backend.
fn fixture(args: &[&str]) -> Output {
    fixture_with(args, &[("LINKEM_BACKEND", &backend().to_string())])
}

/// The fixture with `args` and `env`, and neither a seed nor a backend of this run's.
fn fixture_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness-fixture"))
        .args(args)
        .env_remove("LINKEM_TEST_NO_USERNS")
        .env_remove("LINKEM_SEED")
        .env_remove("LINKEM_BACKEND")
        .env_remove("LINKEM_CAPTURE")
        .env_remove("LINKEM_CAPTURE_KEEP")
        .envs(env.iter().copied())
        .output()
        .expect("run the harness fixture")
}

/// The fixture's trial of `test` on this trial's backend.
fn on_backend(test: &str) -> String {
    format!("{test}::{}", backend())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The fixture's tests.
const FIXTURE_TESTS: [&str; 13] = [
    "a_pass_keeps_no_capture",
    "controller_fails",
    "controller_names_an_unknown_peer",
    "expected_panic_stays_quiet",
    "fails_and_keeps_its_capture",
    "hangs_past_its_timeout",
    "ignored_with_a_reason",
    "needs_netem",
    "passes",
    "peer_one_panics",
    "peer_two_fails",
    "replays_its_losses",
    "standalone_reports_each_network",
];

fn listed(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[linkem::test(parallel)]
async fn every_registered_test_is_listed_once_per_backend() -> Result<(), String> {
    let out = fixture(&["--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut want: Vec<String> = FIXTURE_TESTS.iter().map(|t| on_backend(t)).collect();
    want.sort();
    assert_eq!(
        listed(&out),
        want,
        "LINKEM_BACKEND restricts the run to one backend: {}",
        text(&out)
    );
    // Without it: both backends, each name saying which.
    let out = fixture_with(&["--list"], &[]);
    let mut want: Vec<String> = FIXTURE_TESTS
        .iter()
        .flat_map(|t| [format!("{t}::kernel"), format!("{t}::userspace")])
        .collect();
    want.sort();
    assert_eq!(listed(&out), want, "{}", text(&out));
    // A filter on the backend's suffix selects its trials.
    let out = fixture_with(&["--list", "::userspace"], &[]);
    assert_eq!(listed(&out).len(), FIXTURE_TESTS.len(), "{}", text(&out));
    // A backend that does not exist stops the run with a sentence.
    let out = fixture_with(&["--list"], &[("LINKEM_BACKEND", "tc-netem")]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kernel, userspace or auto"),
        "{}",
        text(&out)
    );
    Ok(())
}

#[linkem::test(parallel)]
async fn a_failing_peer_fails_the_test_with_its_id_and_the_network() -> Result<(), String> {
    let name = on_backend("peer_two_fails");
    let out = fixture(&["--exact", &name]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains(&format!("test {name} ... FAILED")), "{all}");
    assert!(
        all.contains("peer 2 failed: \"replica 2 diverged\""),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "network: 3 peers in 10.0.0.0/24 ({} backend, seed ",
            backend()
        )),
        "the topology, backend and seed are reported: {all}"
    );
    assert!(
        all.contains("link 1 -> 2: rate 20mbit | "),
        "the impairments are reported with their counters: {all}"
    );
    let counters = match backend() {
        // The kernel's qdisc counts totals; the engine counts each packet's fate.
        BackendKind::Kernel => ["sent ", " pkt (", "dropped 0, overlimits "],
        _ => ["entered ", "delivered ", "(loss 0, queue 0, partition 0)"],
    };
    for want in counters {
        assert!(all.contains(want), "the backend's counters ({want}): {all}");
    }
    assert!(all.contains("1 failed"), "{all}");
    Ok(())
}

#[linkem::test(parallel)]
async fn a_panicking_peer_and_a_failing_controller_are_reported() -> Result<(), String> {
    let out = fixture(&["--exact", &on_backend("peer_one_panics")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains("peer 1 panicked: ") && all.contains("peer one gives up"),
        "{all}"
    );
    assert!(
        all.contains("panics during the test:")
            && all.contains("thread 'linkem-peer1' panicked at")
            && all.contains("harness-fixture.rs:"),
        "a failing test shows the panics it kept, with their place: {all}"
    );
    let out = fixture(&["--exact", &on_backend("controller_fails")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains("the controller failed: \"the controller saw a split brain\""),
        "{all}"
    );
    let out = fixture(&["--exact", &on_backend("controller_names_an_unknown_peer")]);
    let all = text(&out);
    assert!(
        all.contains("the controller failed: unknown peer 7: this network has no such peer"),
        "a linkem error reads as its sentence: {all}"
    );
    assert!(!all.contains("UnknownPeer"), "{all}");
    Ok(())
}

#[linkem::test(parallel)]
async fn a_passing_test_keeps_its_expected_panics_to_itself() -> Result<(), String> {
    let name = on_backend("expected_panic_stays_quiet");
    let out = fixture(&["--exact", &name]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "{all}");
    assert!(
        !all.contains("an expected panic"),
        "a green run is quiet: {all}"
    );
    // The same test under --nocapture shows it: the capture is what hid it.
    let out = fixture(&["--exact", &name, "--nocapture"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("an expected panic"), "{all}");
    Ok(())
}

#[linkem::test(parallel)]
async fn an_ignored_test_says_why() -> Result<(), String> {
    let name = on_backend("ignored_with_a_reason");
    let out = fixture(&["--exact", &name]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains(&format!("test {name} ... ignored (the fixture's reason)")),
        "{all}"
    );
    assert!(all.contains("1 ignored"), "{all}");
    // nextest learns which tests are ignored from `--list --ignored`.
    let out = fixture(&["--list", "--ignored"]);
    let listed = listed(&out);
    assert!(listed.contains(&name), "{listed:?}");
    assert!(!listed.contains(&on_backend("passes")), "{listed:?}");
    // Asked for, it runs.
    let out = fixture(&["--exact", &name, "--ignored"]);
    assert!(text(&out).contains("1 passed"), "{}", text(&out));
    Ok(())
}

#[linkem::test(parallel)]
async fn the_netem_notice_appears_only_beside_a_test_that_needs_it() -> Result<(), String> {
    let out = fixture(&["--exact", &on_backend("needs_netem")]);
    let all = text(&out);
    let lacking = all.contains("ignored (needs sch_netem");
    assert_eq!(
        lacking,
        String::from_utf8_lossy(&out.stderr).contains("modprobe sch_netem"),
        "the fix is said once where a test lacks netem: {all}"
    );
    if backend() == BackendKind::Userspace {
        assert!(!lacking, "the userspace backend needs no sch_netem: {all}");
        assert!(all.contains("1 passed"), "{all}");
    }
    // This binary has no test that needs netem: no notice, whatever the kernel.
    let own = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .arg("--list")
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&own.stderr);
    assert!(!stderr.contains("sch_netem"), "{stderr}");
    Ok(())
}

#[linkem::test(parallel)]
async fn a_test_past_its_timeout_fails_and_its_network_goes() -> Result<(), String> {
    let start = std::time::Instant::now();
    let out = fixture(&["--exact", &on_backend("hangs_past_its_timeout")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(all.contains("timed out after 1s"), "{all}");
    assert!(
        all.contains("peer 1: waiting for the signal \"listening\", which nothing raised"),
        "the stuck peers are named with what they wait on: {all}"
    );
    assert!(
        all.contains("peer 2: waiting at the barrier (1 of the 2 peers with a body are there)"),
        "{all}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the hung bodies were cancelled"
    );
    Ok(())
}

#[linkem::test(parallel)]
async fn passing_and_filtered_runs_exit_zero_and_say_nothing_of_seeds() -> Result<(), String> {
    let out = fixture(&["--exact", &on_backend("passes"), "--format", "terse"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        !all.contains("seed") && !all.contains("LINKEM_SEED"),
        "a passing test prints no seed: {all}"
    );
    let out = fixture(&["passes", "--skip", "fails"]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "{all}");
    Ok(())
}

/// The fixture's `replays_its_losses` on this backend, with `env`: its lost datagrams,
/// the seed and the replay command it printed. `None` when the trial is ignored here
/// (the kernel backend without sch_netem).
fn losses(env: &[(&str, &str)]) -> Option<(String, String, String)> {
    let name = on_backend("replays_its_losses");
    let mut env = env.to_vec();
    let backend = backend().to_string();
    env.push(("LINKEM_BACKEND", &backend));
    let out = fixture_with(&["--exact", &name], &env);
    let all = text(&out);
    if all.contains(&format!("test {name} ... ignored")) {
        return None;
    }
    assert_eq!(out.status.code(), Some(101), "the fixture fails: {all}");
    let line = |prefix: &str| {
        all.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?}: {all}"))
            .to_string()
    };
    let lost = line("peer 2 failed: \"lost datagrams: [");
    let seed = line("seed ");
    let command = line("LINKEM_SEED=");
    Some((lost, seed, command))
}

#[linkem::test(parallel)]
async fn a_failing_test_prints_a_replay_command_that_reproduces_its_fates(
) -> Result<(), linkem::Error> {
    // A replay reproduces fates only where the backend honours seeds: the kernel's
    // netem ignores TCA_NETEM_PRNG_SEED before Linux 6.6 (the network probes it).
    let probe =
        linkem::network::Network::new(linkem::ip::Subnet::new([10, 0, 0, 0].into(), 24)).await?;
    if let Some(note) = probe.seed_note() {
        return Err(linkem::Error::Unsupported {
            feature: note,
            module: "sch_netem with TCA_NETEM_PRNG_SEED (Linux >= 6.6)",
            hint: "the 6.12 kernel lane replays seeded netem; the userspace backend always does",
        });
    }
    drop(probe);
    let Some((lost, seed, command)) = losses(&[]) else {
        return Err(linkem::Error::Unsupported {
            feature: "loss on the kernel backend".into(),
            module: "sch_netem",
            hint: "the kernel lane runs it",
        });
    };
    // The command as printed: the environment, then the cargo command naming the
    // fixture's package and binary, then the trial.
    let words: Vec<&str> = command.split_whitespace().collect();
    let split = words
        .iter()
        .position(|w| !w.contains('='))
        .expect("a command after the variables");
    let env: BTreeMap<&str, &str> = words[..split]
        .iter()
        .map(|w| w.split_once('=').expect("NAME=value"))
        .collect();
    let backend_name = backend().to_string();
    assert_eq!(
        env.keys().copied().collect::<Vec<_>>(),
        ["LINKEM_BACKEND", "LINKEM_SEED"],
        "{command}"
    );
    assert_eq!(env["LINKEM_BACKEND"], backend_name, "{command}");
    assert!(
        seed.starts_with(&format!("seed {} (the test's)", env["LINKEM_SEED"])),
        "the seed said is the one replayed: {seed} / {command}"
    );
    let dashes = words.iter().position(|w| *w == "--").expect("`--`");
    assert_eq!(
        words[split..dashes].join(" "),
        "cargo run -p linkem-tests --bin harness-fixture",
        "the fixture's package and binary: {command}"
    );
    let name = on_backend("replays_its_losses");
    assert_eq!(words[dashes + 1..], ["--exact", name.as_str()], "{command}");

    // Run as printed (on the fixture binary itself): the same datagrams are lost.
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let (replayed, replayed_seed, _) = losses(&vars).expect("ran before");
    assert_eq!(replayed, lost, "the replay loses the same datagrams");
    assert!(
        replayed_seed.starts_with(&format!("seed {} (set by LINKEM_SEED)", env["LINKEM_SEED"])),
        "{replayed_seed}"
    );
    // Without the seed, another run draws another seed and other losses: the replay
    // is what reproduced them.
    let (other, other_seed, _) = losses(&[]).expect("ran before");
    assert_ne!(other_seed, seed, "each run its own random seed");
    assert_ne!(other, lost, "another seed, other losses");
    Ok(())
}

#[linkem::test(parallel)]
async fn a_standalone_test_reports_each_network_it_built() -> Result<(), String> {
    let b = backend();
    let out = fixture(&["--exact", &on_backend("standalone_reports_each_network")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(101), "{all}");
    assert!(
        all.contains(&format!("three networks on the {b}, {b} and {b} backends")),
        "Network::new on the trial's thread gets the trial's backend: {all}"
    );
    let networks: Vec<&str> = all
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("network ") && l.contains(&format!(" on the {b} backend, seed ")))
        .collect();
    assert_eq!(networks.len(), 3, "{all}");
    let seed = all
        .lines()
        .find_map(|l| l.strip_prefix("seed "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no seed: {all}"));
    assert!(
        networks[0].ends_with(&format!("seed {seed}"))
            && networks[1].ends_with(&format!("seed {seed}")),
        "unseeded networks take the trial's seed {seed}: {networks:?}"
    );
    assert!(
        networks[2]
            .ends_with("seed 77 (set by its builder; LINKEM_SEED replaces it in the replay)"),
        "{networks:?}"
    );
    // LINKEM_SEED wins over everything, the builder's seed included.
    let backend_name = b.to_string();
    let out = fixture_with(
        &["--exact", &on_backend("standalone_reports_each_network")],
        &[("LINKEM_SEED", "5"), ("LINKEM_BACKEND", &backend_name)],
    );
    let all = text(&out);
    assert!(all.contains("seed 5 (set by LINKEM_SEED)"), "{all}");
    let fives = all
        .lines()
        .filter(|l| l.trim().starts_with("network ") && l.ends_with(" backend, seed 5"))
        .count();
    assert_eq!(fives, 3, "{all}");
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
        .env("LINKEM_BACKEND", backend().to_string())
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
    assert!(
        all.contains(&format!(
            "0 passed; 0 failed; {} ignored",
            FIXTURE_TESTS.len()
        )),
        "{all}"
    );
    assert!(
        all.contains("namespace tests need CAP_NET_ADMIN and CAP_SYS_ADMIN"),
        "the reason is given: {all}"
    );
    Ok(())
}

/// A scratch directory for the fixture's captures, removed when dropped.
struct CaptureDir(std::path::PathBuf);

impl CaptureDir {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "linkem-harness-{what}-{}-{}",
            backend(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        CaptureDir(dir)
    }

    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }
}

impl Drop for CaptureDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The datagrams to port 4000 in `capture`, as tshark reads them: (interface, comment).
fn captured_datagrams(capture: &std::path::Path) -> Vec<(String, String)> {
    let out = Command::new(linkem_tests::oracle("tshark"))
        .arg("-r")
        .arg(capture)
        .args(["-Y", "udp.dstport == 4000", "-T", "fields"])
        .args(["-e", "frame.interface_name", "-e", "frame.comment"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {capture:?}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (name, comment) = l.split_once('\t').unwrap_or((l, ""));
            (name.to_string(), comment.to_string())
        })
        .collect()
}

#[linkem::test(parallel)]
async fn a_failing_test_keeps_its_capture_and_names_it() -> Result<(), linkem::Error> {
    let dir = CaptureDir::new("failed");
    let dir_env = dir.0.to_string_lossy().into_owned();
    let name = on_backend("fails_and_keeps_its_capture");
    let out = fixture_with(
        &["--exact", &name],
        &[
            ("LINKEM_BACKEND", &backend().to_string()),
            ("LINKEM_CAPTURE", &dir_env),
        ],
    );
    let all = text(&out);
    if all.contains(&format!("test {name} ... ignored")) {
        // 100 % loss on the kernel backend needs sch_netem.
        return Err(linkem::Error::Unsupported {
            feature: "loss on the kernel backend".into(),
            module: "sch_netem",
            hint: "the kernel lane runs it",
        });
    }
    assert_eq!(out.status.code(), Some(101), "the fixture fails: {all}");
    let file = format!("{}-net1.pcapng", name.replace("::", "."));
    assert_eq!(dir.files(), std::slice::from_ref(&file), "{all}");
    let path = dir.0.canonicalize().unwrap().join(&file);
    assert!(
        all.contains(&format!("captured in {}", path.display())),
        "the report names the file: {all}"
    );
    let datagrams = captured_datagrams(&path);
    let sent = 20;
    match backend() {
        BackendKind::Userspace => {
            // One interface per link direction, each packet annotated with its fate.
            let dropped = datagrams
                .iter()
                .filter(|(link, comment)| link == "1->2" && comment == "dropped: loss")
                .count();
            assert_eq!(dropped, sent, "{datagrams:?}");
            assert_eq!(
                datagrams.len(),
                sent,
                "nothing else went to port 4000: {datagrams:?}"
            );
        }
        _ => {
            // One interface per hub port: sent on p1, never delivered on p2.
            let on = |port: &str| datagrams.iter().filter(|(i, _)| i == port).count();
            assert_eq!((on("p1"), on("p2")), (sent, 0), "{datagrams:?}");
        }
    }
    Ok(())
}

#[linkem::test(parallel)]
async fn a_passing_test_keeps_no_capture_unless_told_to() -> Result<(), String> {
    let name = on_backend("a_pass_keeps_no_capture");
    let backend_env = backend().to_string();
    let dir = CaptureDir::new("passed");
    let dir_env = dir.0.to_string_lossy().into_owned();
    let env = [
        ("LINKEM_BACKEND", backend_env.as_str()),
        ("LINKEM_CAPTURE", &dir_env),
    ];
    let out = fixture_with(&["--exact", &name], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dir.files(), Vec::<String>::new(), "removed: {}", text(&out));
    // The environment wins over the attribute's "failed": the file was written and stays.
    let mut keep = env.to_vec();
    keep.push(("LINKEM_CAPTURE_KEEP", "always"));
    let out = fixture_with(&["--exact", &name], &keep);
    assert!(out.status.success(), "{}", text(&out));
    let file = format!("{}-net1.pcapng", name.replace("::", "."));
    assert_eq!(dir.files(), std::slice::from_ref(&file), "{}", text(&out));
    let datagrams = captured_datagrams(&dir.0.join(&file));
    assert!(
        datagrams.len() >= 20,
        "the datagrams were captured: {datagrams:?}"
    );
    // A mode that does not exist stops the trial with a sentence.
    let mut bad = env.to_vec();
    bad.push(("LINKEM_CAPTURE_KEEP", "sometimes"));
    let out = fixture_with(&["--exact", &name], &bad);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("LINKEM_CAPTURE_KEEP") && text(&out).contains("\"failed\""),
        "{}",
        text(&out)
    );
    Ok(())
}
