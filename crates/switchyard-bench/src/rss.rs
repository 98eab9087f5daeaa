//! Resident memory of the processes under test, read from `/proc`.
//!
//! A server may fork workers (LiteLLM's proxy runs uvicorn, which may), so
//! a target's memory is the sum of `VmRSS` over the process and all its
//! descendants, sampled while the load runs; the peak is reported.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the sampler reads `/proc` during a run.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The summed `VmRSS` of `roots` and their descendants, in KiB; `None`
/// where `/proc` cannot be read (not Linux) or no root is alive.
pub fn tree_rss_kib(roots: &[u32]) -> Option<u64> {
    if roots.is_empty() {
        return None;
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = None;
    let mut queue: VecDeque<u32> = roots.iter().copied().collect();
    while let Some(pid) = queue.pop_front() {
        if let Some(kib) = rss_kib(pid) {
            total = Some(total.unwrap_or(0) + kib);
        }
        queue.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

/// The parent pid, from `/proc/PID/stat` (field 4; the command name in
/// field 2 may hold spaces and parentheses, so parse after the last `)`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()
}

/// Samples [`tree_rss_kib`] on a thread of its own until stopped.
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl PeakSampler {
    /// Starts sampling; with no pids it samples nothing.
    pub fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if pids.is_empty() {
            return Self { stop, thread: None };
        }
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = None;
            loop {
                if let Some(kib) = tree_rss_kib(&pids) {
                    peak = Some(peak.map_or(kib, |p: u64| p.max(kib)));
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self { stop, thread: Some(thread) }
    }

    /// Stops sampling and returns the peak in KiB.
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|thread| thread.join().ok().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss_from_a_status_file() {
        let status = "Name:\tswitchyard\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        if std::path::Path::new("/proc/self/status").exists() {
            let kib = tree_rss_kib(&[std::process::id()]).unwrap();
            assert!(kib > 100, "{kib} KiB");
        }
    }
}
