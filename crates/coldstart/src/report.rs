//! Medians, ratios to the baseline measured in the same run, and the Markdown table that goes
//! into docs/PERFORMANCE.md.

use std::fmt::Write;

use crate::measure::Sample;

/// Everything measured for one binary.
#[derive(Debug, Clone)]
pub struct Measured {
    pub label: String,
    pub size_bytes: u64,
    pub samples: Vec<Sample>,
    /// Why measuring it stopped, if it did.
    pub failure: Option<String>,
}

/// How the figures were made, printed under the table so they can be reproduced.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub runs: usize,
    pub warmup: usize,
    pub command: String,
    pub machine: String,
}

/// The median, least and greatest of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 };
        Some(Self { median, min: values[0], max: values[values.len() - 1] })
    }
}

impl Measured {
    pub fn init_ms(&self) -> Option<Spread> {
        Spread::of(self.samples.iter().map(|s| s.init.as_secs_f64() * 1e3))
    }

    pub fn first_answer_ms(&self) -> Option<Spread> {
        Spread::of(self.samples.iter().map(|s| s.first_answer.as_secs_f64() * 1e3))
    }

    pub fn peak_rss_mib(&self) -> Option<Spread> {
        Spread::of(self.samples.iter().map(|s| s.peak_rss_kib as f64 / 1024.0))
    }

    /// The most connections to the endpoint trap and other sockets seen in any run.
    pub fn network_before_first_invocation(&self) -> (usize, Option<usize>) {
        let endpoint = self.samples.iter().map(|s| s.network.endpoint_connections).max();
        let other = self.samples.iter().map(|s| s.network.other_sockets).try_fold(0, |most, n| n.map(|n| most.max(n)));
        (endpoint.unwrap_or(0), other)
    }
}

/// The table, the baseline first, and the lines that say how it was made.
pub fn markdown(baseline: &Measured, others: &[Measured], provenance: &Provenance) -> String {
    let mut out = String::new();
    out.push_str(
        "| binary | size | init: median (min–max) | init ÷ baseline \
         | first answer: median (min–max) | first answer ÷ baseline \
         | peak RSS: median (max) | network before 1st invocation |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    row(&mut out, baseline, baseline, " (baseline)");
    for measured in others {
        row(&mut out, measured, baseline, "");
    }
    let _ = write!(
        out,
        "\n{runs} cold starts of each binary after {warmup} not counted, binaries taking turns. \
         *Init*: from spawning the process to its first `GET /runtime/invocation/next`; \
         *first answer*: to its response being posted. \
         *÷ baseline* divides medians taken in this same run. \
         *Peak RSS*: `ru_maxrss` up to the first answer. \
         *Network*: connections to `AWS_ENDPOINT_URL` / other inet sockets open \
         when it first asked for work, the most in any run (both must be 0).\n\
         Machine: {machine}. Command: `{command}`\n",
        runs = provenance.runs,
        warmup = provenance.warmup,
        machine = provenance.machine,
        command = provenance.command,
    );
    out
}

fn row(out: &mut String, measured: &Measured, baseline: &Measured, suffix: &str) {
    let size = format!("{:.2} MiB", measured.size_bytes as f64 / (1024.0 * 1024.0));
    let name = format!("{}{suffix}", measured.label);
    if let Some(failure) = &measured.failure {
        let reason = failure.lines().next().unwrap_or_default().replace('|', "\\|");
        let _ = writeln!(out, "| {name} | {size} | failed: {reason} | | | | | |");
        return;
    }
    let (Some(init), Some(answer), Some(rss)) =
        (measured.init_ms(), measured.first_answer_ms(), measured.peak_rss_mib())
    else {
        let _ = writeln!(out, "| {name} | {size} | no runs | | | | | |");
        return;
    };
    let ratio = |mine: f64, theirs: Option<Spread>| match theirs {
        Some(theirs) if baseline.failure.is_none() && theirs.median > 0.0 => {
            format!("{:.2}", mine / theirs.median)
        }
        _ => "–".to_owned(),
    };
    let (endpoint, other) = measured.network_before_first_invocation();
    let other = other.map_or("?".to_owned(), |n| n.to_string());
    let _ = writeln!(
        out,
        "| {name} | {size} | {} | {} | {} | {} | {:.1} MiB ({:.1}) | {endpoint} / {other} |",
        milliseconds(init),
        ratio(init.median, baseline.init_ms()),
        milliseconds(answer),
        ratio(answer.median, baseline.first_answer_ms()),
        rss.median,
        rss.max,
    );
}

fn milliseconds(spread: Spread) -> String {
    format!("{:.2} ms ({:.2}–{:.2})", spread.median, spread.min, spread.max)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::network::NetworkUse;

    fn sample(init_ms: u64, answer_ms: u64, rss_kib: u64, endpoint: usize) -> Sample {
        Sample {
            init: Duration::from_millis(init_ms),
            first_answer: Duration::from_millis(answer_ms),
            peak_rss_kib: rss_kib,
            network: NetworkUse { endpoint_connections: endpoint, other_sockets: Some(0) },
            answer: b"{}".to_vec(),
        }
    }

    fn measured(label: &str, samples: Vec<Sample>) -> Measured {
        Measured { label: label.into(), size_bytes: 3 * 1024 * 1024 / 2, samples, failure: None }
    }

    fn provenance() -> Provenance {
        Provenance { runs: 3, warmup: 1, command: "coldstart --runs 3".into(), machine: "x86_64".into() }
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let spread = Spread::of([4.0, 1.0, 3.0, 2.0]).unwrap();

        assert_eq!(spread, Spread { median: 2.5, min: 1.0, max: 4.0 });
    }

    #[test]
    fn rows_divide_their_medians_by_the_baselines() {
        let baseline = measured("hello-lambda", vec![sample(2, 3, 4096, 0), sample(2, 3, 4096, 0)]);
        let handler = measured("trigger-api", vec![sample(3, 6, 8192, 0), sample(3, 6, 10240, 1)]);

        let table = markdown(&baseline, &[handler], &provenance());

        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(
            rows[2],
            "| hello-lambda (baseline) | 1.50 MiB | 2.00 ms (2.00–2.00) | 1.00 | 3.00 ms (3.00–3.00) | 1.00 | 4.0 MiB (4.0) | 0 / 0 |"
        );
        assert_eq!(
            rows[3],
            "| trigger-api | 1.50 MiB | 3.00 ms (3.00–3.00) | 1.50 | 6.00 ms (6.00–6.00) | 2.00 | 9.0 MiB (10.0) | 1 / 0 |"
        );
        assert!(table.contains("Command: `coldstart --runs 3`"));
    }

    #[test]
    fn a_failed_binary_gets_a_row_that_says_why() {
        let baseline = measured("hello-lambda", vec![sample(2, 3, 4096, 0)]);
        let mut handler = measured("events-api", vec![]);
        handler.failure = Some("it exited (exit code 1) before asking | x\nmore".into());

        let table = markdown(&baseline, &[handler], &provenance());

        assert!(
            table.contains("| events-api | 1.50 MiB | failed: it exited (exit code 1) before asking \\| x | | | | | |")
        );
    }
}
