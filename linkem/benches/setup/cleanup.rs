//! The kernel's deferred namespace cleanup.

use super::*;

/// Waits until no kernel worker runs the "netns" workqueue (the kernel names a busy
/// worker `kworker/...+netns`, see wq_worker_comm()), and returns how long after the
/// call the last busy sighting was: the background cost of the teardown that just
/// returned, to about a millisecond. `None` if no busy worker was seen at all (the
/// work ran between two polls, or on a worker not yet listed): no sample then.
pub(crate) fn wait_kernel_cleanup() -> Option<Duration> {
    const QUIET: Duration = Duration::from_millis(20);
    const UNSEEN: Duration = Duration::from_millis(500);
    const RESCAN: Duration = Duration::from_millis(20);
    const GIVE_UP: Duration = Duration::from_secs(60);
    let start = Instant::now();
    let mut last_busy = None;
    let mut workers = kernel_workers();
    let mut scanned = start;
    loop {
        let now = Instant::now();
        // Workers come and go. Until one is seen busy the list is fresh at every poll;
        // after that, now and then only, to keep the polling from competing with the
        // cleanup for the CPUs.
        if last_busy.is_none() || now.duration_since(scanned) >= RESCAN {
            workers = kernel_workers();
            scanned = now;
        }
        if workers.iter().any(|pid| netns_worker_busy(*pid)) {
            last_busy = Some(now);
        } else {
            match last_busy {
                Some(t) if now.duration_since(t) >= QUIET => break,
                None if now.duration_since(start) >= UNSEEN => break,
                _ => {}
            }
        }
        if now.duration_since(start) > GIVE_UP {
            eprintln!("warning: the netns workqueue is still busy after {GIVE_UP:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    last_busy.map(|t| t.duration_since(start))
}

/// The pids of kernel workers (`kworker/...`).
pub(crate) fn kernel_workers() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("kworker/"))
        })
        .collect()
}

pub(crate) fn netns_worker_busy(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end().ends_with("+netns"))
}
