//! Measures the cold start of Lambda bootstrap binaries the way Lambda sees it: each binary is
//! started against a loopback Lambda Runtime API and timed until it asks for its first
//! invocation and until it answers it, beside a hello-world baseline measured in the same run.
//! It also checks that nothing but the Runtime API is reached over the network before the
//! first invocation, and reads each run's peak memory.

pub mod cli;
mod http;
pub mod measure;
mod network;
pub mod report;
mod runtime_api;

use std::fs;
use std::io;
use std::path::Path;

pub use measure::{run_once, Bootstrap, RunError, Sample, Settings};
pub use network::NetworkUse;
pub use report::{Measured, Provenance};

/// Copies each bootstrap into `dir` as `<dir>/<n>-<label>/bootstrap`, the way Lambda lays out a
/// custom runtime, and returns them pointing at the copies.
///
/// Why: how a file was written shapes its page cache, and so the page faults of a cold start.
/// A binary straight from the linker measured 0.2 of the ratio slower than a `cp` of itself
/// (`docs/PERFORMANCE.md`). Copied alike, the baseline and the handlers are measured from files
/// written the same way, whatever wrote them first. `fs::copy` copies in the kernel, so the
/// harness's own memory, which a child's peak RSS inherits at fork, does not grow.
pub fn stage_like_lambda(bootstraps: &[Bootstrap], dir: &Path) -> io::Result<Vec<Bootstrap>> {
    bootstraps
        .iter()
        .enumerate()
        .map(|(n, bootstrap)| {
            let folder = dir.join(format!("{n}-{}", bootstrap.label));
            fs::create_dir_all(&folder)?;
            let path = folder.join("bootstrap");
            fs::copy(&bootstrap.path, &path)?;
            fs::File::open(&path)?.sync_all()?;
            Ok(Bootstrap { path, ..bootstrap.clone() })
        })
        .collect()
}

/// Measures each binary `runs` times after `warmup` runs that are not counted. The binaries
/// take turns, so a slow moment of a shared machine falls on all of them alike. A binary that
/// fails once is not run again; its failure is kept instead.
pub fn measure_all(
    bootstraps: &[Bootstrap],
    settings: &Settings,
    runs: usize,
    warmup: usize,
    mut progress: impl FnMut(&str),
) -> Vec<Measured> {
    let mut measured: Vec<Measured> = bootstraps
        .iter()
        .map(|bootstrap| {
            let size = fs::metadata(&bootstrap.path).map(|m| m.len());
            Measured {
                label: bootstrap.label.clone(),
                size_bytes: *size.as_ref().unwrap_or(&0),
                samples: Vec::with_capacity(runs),
                failure: size.err().map(|e| format!("cannot read {}: {e}", bootstrap.path.display())),
            }
        })
        .collect();

    for round in 0..warmup + runs {
        let counted = round >= warmup;
        // Each round starts with the next binary, so none always runs just after another.
        for turn in 0..bootstraps.len() {
            let which = (round + turn) % bootstraps.len();
            let (bootstrap, measured) = (&bootstraps[which], &mut measured[which]);
            if measured.failure.is_some() {
                continue;
            }
            match run_once(bootstrap, settings) {
                Ok(sample) => {
                    let run = if counted {
                        format!("run {}/{runs}", round - warmup + 1)
                    } else {
                        format!("warm-up {}/{warmup}", round + 1)
                    };
                    progress(&format!(
                        "{}: {run}: init {:.2} ms, first answer {:.2} ms, peak RSS {} KiB",
                        bootstrap.label,
                        sample.init.as_secs_f64() * 1e3,
                        sample.first_answer.as_secs_f64() * 1e3,
                        sample.peak_rss_kib,
                    ));
                    if round == 0 {
                        let answer = String::from_utf8_lossy(&sample.answer);
                        let answer: String = answer.chars().take(300).collect();
                        progress(&format!("{}: it answered {answer}", bootstrap.label));
                    }
                    if counted {
                        measured.samples.push(sample);
                    }
                }
                Err(error) => {
                    progress(&format!("{}: failed: {error}", bootstrap.label));
                    measured.failure = Some(error.to_string());
                }
            }
        }
    }
    measured
}

/// The architecture, processor, CPU count and kernel, for the line under the table.
pub fn this_machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown processor".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| format!("Linux {}", r.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.into());
    format!("{}, {cpu}, {cpus} CPUs, {kernel}", std::env::consts::ARCH)
}
