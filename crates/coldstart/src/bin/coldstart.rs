//! `coldstart`: measures Lambda bootstrap binaries' cold starts beside a baseline and prints a
//! Markdown table. `coldstart --help` tells how.

use std::process::ExitCode;

use gateway_coldstart::cli::{self, CliError};
use gateway_coldstart::{measure_all, report, stage_like_lambda, this_machine, Provenance};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let options = match cli::parse(args.iter().skip(1).cloned()).and_then(cli::Args::load) {
        Ok(options) => options,
        Err(CliError::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("coldstart: {error}");
            return ExitCode::from(2);
        }
    };

    let bootstraps: Vec<_> = std::iter::once(options.baseline.clone()).chain(options.others.iter().cloned()).collect();
    let stage = std::env::temp_dir().join(format!("coldstart-{}", std::process::id()));
    let staged = match stage_like_lambda(&bootstraps, &stage) {
        Ok(staged) => staged,
        Err(error) => {
            eprintln!("coldstart: cannot copy the binaries into {}: {error}", stage.display());
            let _ = std::fs::remove_dir_all(&stage);
            return ExitCode::from(2);
        }
    };
    let measured = measure_all(&staged, &options.settings, options.runs, options.warmup, |line| eprintln!("{line}"));
    let _ = std::fs::remove_dir_all(&stage);

    let provenance = Provenance {
        runs: options.runs,
        warmup: options.warmup,
        command: cli::shell_line(&args),
        machine: this_machine(),
    };
    print!("{}", report::markdown(&measured[0], &measured[1..], &provenance));
    if measured.iter().any(|m| m.failure.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
