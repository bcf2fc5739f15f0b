//! Where the metrics thread runs: on CPUs no worker is pinned to when there are any, else at
//! the lowest priority, so scrapes never take a worker's CPU. One test in its own binary, so
//! that the only ringgate threads in the process are its own.

mod util;

use std::time::Duration;

use util::*;

/// A CPU list as the kernel writes it (`0-2,5`).
fn cpu_list(text: &str) -> Vec<usize> {
    text.split(',')
        .flat_map(|part| {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            lo.trim().parse::<usize>().unwrap()..=hi.trim().parse::<usize>().unwrap()
        })
        .collect()
}

/// The metrics thread's allowed CPUs and nice value, read from /proc.
fn metrics_thread() -> Option<(Vec<usize>, i64)> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        // The kernel keeps 15 bytes of a thread's name.
        if comm.trim() != "ringgate-metric" {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let cpus = cpu_list(
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?,
        );
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the command's closing parenthesis; nice is the 19th field of stat.
        let after = &stat[stat.rfind(')')? + 2..];
        let nice = after.split_whitespace().nth(16)?.parse().ok()?;
        return Some((cpus, nice));
    }
    None
}

#[test]
fn the_metrics_thread_keeps_off_the_workers_cpus() {
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let backend = Backend::start(LOCAL4, true);
    let start_on = |worker_cpus: Vec<usize>| {
        let mut cfg = config(LOCAL4, &[backend.addr]);
        cfg.workers = worker_cpus.len();
        cfg.cpus = Some(worker_cpus);
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
        let proxy = start(cfg);
        let mut placed = None;
        wait_for("the metrics thread", || {
            placed = metrics_thread();
            placed.is_some()
        });
        // Placement happens as the thread starts; a request proves it has.
        assert_eq!(http_get(proxy.metrics_addr().unwrap(), "/healthz").0, 200);
        (proxy, metrics_thread().unwrap())
    };

    if cpus.len() > 1 {
        let (proxy, (allowed, nice)) = start_on(vec![cpus[0]]);
        assert_eq!(allowed, cpus[1..], "the metrics thread's CPUs");
        assert_eq!(nice, 0);
        proxy.shutdown().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    } else {
        eprintln!("one CPU: only the lowest-priority placement can be checked");
    }
    // Every CPU has a worker: the thread shares them at the lowest priority.
    let (proxy, (_, nice)) = start_on(cpus.clone());
    assert_eq!(nice, 19);
    proxy.shutdown().unwrap();
}
