//! Arguments.

#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) peers: Vec<usize>,
    pub(crate) runs: Option<usize>,
    pub(crate) quick: bool,
    pub(crate) impair_max: usize,
    pub(crate) ip: bool,
    pub(crate) json: bool,
    pub(crate) back_to_back: bool,
    /// The backend of linkem's networks.
    pub(crate) backend: linkem::BackendKind,
}

pub(crate) const USAGE: &str = "\
usage: cargo bench -p linkem --bench setup -- [options]
  --peers LIST      peer counts, comma-separated (default 2,3,10,50,100,250)
  --runs N          runs per peer count (default 15 up to 10 peers, 7 up to 100, 5 above)
  --quick           peer counts 3,10,50, 3 runs, impairment phase up to 10 peers
  --impair-max N    run the impairment phase only up to N peers (default 50): the
                    tc baseline costs about 2 processes per link, N x (N-1) links
  --no-ip           skip the ip/tc baseline
  --back-to-back    do not wait for the kernel's namespace cleanup between runs, as a
                    test suite does not: each run competes with the previous run's
                    cleanup (the cleanup row is then not measured)
  --backend KIND    linkem's backend: kernel (default; the tc tree the baseline
                    mirrors) or userspace (the engine in this process)
  --json            print the results as JSON instead of tables (progress stays on stderr)";

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        peers: vec![2, 3, 10, 50, 100, 250],
        runs: None,
        quick: false,
        impair_max: 50,
        ip: true,
        json: false,
        back_to_back: false,
        backend: linkem::BackendKind::Kernel,
    };
    let mut peers_given = false;
    let mut impair_given = false;
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<usize, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .parse()
            .map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--peers" => {
                let list = it.next().ok_or("--peers needs a list")?;
                args.peers = list
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("--peers {list}: {e}"))?;
                if args.peers.iter().any(|&n| n < 2) {
                    return Err("--peers: every count must be at least 2".into());
                }
                peers_given = true;
            }
            "--runs" => {
                let runs = number("--runs", it.next())?;
                if runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
                args.runs = Some(runs);
            }
            "--impair-max" => {
                args.impair_max = number("--impair-max", it.next())?;
                impair_given = true;
            }
            "--quick" => args.quick = true,
            "--no-ip" => args.ip = false,
            "--back-to-back" => args.back_to_back = true,
            "--json" => args.json = true,
            "--backend" => {
                let kind = it.next().ok_or("--backend needs kernel or userspace")?;
                args.backend = match kind.as_str() {
                    "kernel" => linkem::BackendKind::Kernel,
                    "userspace" => linkem::BackendKind::Userspace,
                    _ => return Err(format!("--backend {kind}: kernel or userspace")),
                };
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.quick {
        if !peers_given {
            args.peers = vec![3, 10, 50];
        }
        if !impair_given {
            args.impair_max = 10;
        }
    }
    Ok(args)
}

impl Args {
    pub(crate) fn runs_for(&self, n: usize) -> usize {
        match (self.runs, self.quick) {
            (Some(runs), _) => runs,
            (None, true) => 3,
            (None, false) if n <= 10 => 15,
            (None, false) if n <= 100 => 7,
            (None, false) => 5,
        }
    }
}
