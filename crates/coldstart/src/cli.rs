//! The command line: which binaries to measure, with which events and environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::measure::{self, Bootstrap, Settings};

pub const USAGE: &str = "\
Usage: coldstart [OPTIONS] --baseline BOOTSTRAP BOOTSTRAP...

Measures the cold start of Lambda bootstrap binaries against a loopback Lambda Runtime API,
beside a baseline binary measured in the same run, and prints a Markdown table on stdout.
Each binary is first copied into a temporary folder as `bootstrap` and measured from there:
how a file was written changes its page faults, and a linker's output starts slower than a
copy of itself.

BOOTSTRAP is [NAME=]PATH[:EVENT_FILE]
  NAME        its function name and row in the table (default: the file's name, or its
              folder's when the file is called `bootstrap`, as cargo lambda lays them out)
  EVENT_FILE  the JSON event of its first invocation (default: --event or --event-file)

Options:
  --baseline BOOTSTRAP  the hello-world binary the others are compared with (required)
  --runs N              cold starts counted for each binary (default 20)
  --warmup N            cold starts run first and not counted (default 1)
  --event JSON          the event for binaries without an EVENT_FILE (default {})
  --event-file FILE     the same, read from a file
  --env KEY=VALUE       added to every binary's environment; repeatable
  --timeout SECONDS     the most one cold start may take (default 10)
  -h, --help            this text
";

/// The parsed command line, events not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub runs: usize,
    pub warmup: usize,
    pub timeout: Duration,
    pub env: Vec<(String, String)>,
    pub default_event: EventSource,
    pub baseline: BootstrapSpec,
    pub others: Vec<BootstrapSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSource {
    Inline(String),
    File(PathBuf),
}

/// `[NAME=]PATH[:EVENT_FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapSpec {
    pub label: String,
    pub path: PathBuf,
    pub event_file: Option<PathBuf>,
}

/// Everything a measurement needs, events read and checked.
#[derive(Debug, Clone)]
pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    pub settings: Settings,
    pub baseline: Bootstrap,
    pub others: Vec<Bootstrap>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("help wanted")]
    Help,
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("cannot read the event {path}: {source}")]
    Event {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the event {origin} is not JSON: {source}")]
    NotJson {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, CliError> {
    let usage = |message: String| CliError::Usage(message);
    let mut runs = 20;
    let mut warmup = 1;
    let mut timeout = Duration::from_secs(10);
    let mut env = Vec::new();
    let mut default_event = None;
    let mut baseline = None;
    let mut others = Vec::new();

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| usage(format!("{name} needs a value")));
        match arg.as_str() {
            "-h" | "--help" => return Err(CliError::Help),
            "--runs" => runs = number(&value("--runs")?, "--runs")?,
            "--warmup" => warmup = number(&value("--warmup")?, "--warmup")?,
            "--timeout" => timeout = Duration::from_secs(number(&value("--timeout")?, "--timeout")? as u64),
            "--event" | "--event-file" => {
                if default_event.is_some() {
                    return Err(usage("give --event or --event-file once".into()));
                }
                let given = value(&arg)?;
                default_event =
                    Some(if arg == "--event" { EventSource::Inline(given) } else { EventSource::File(given.into()) });
            }
            "--env" => {
                let pair = value("--env")?;
                let Some((key, val)) = pair.split_once('=') else {
                    return Err(usage(format!("--env wants KEY=VALUE, not {pair:?}")));
                };
                if measure::is_reserved(key) {
                    return Err(usage(format!(
                        "{key} is the harness's own: it points the binary at the Runtime API and at the trap that counts its network use"
                    )));
                }
                env.push((key.to_owned(), val.to_owned()));
            }
            "--baseline" => baseline = Some(bootstrap_spec(&value("--baseline")?)?),
            flag if flag.starts_with('-') => return Err(usage(format!("unknown option {flag}"))),
            spec => others.push(bootstrap_spec(spec)?),
        }
    }
    let baseline = baseline.ok_or_else(|| usage("--baseline is required".into()))?;
    if others.is_empty() {
        return Err(usage("name at least one binary to compare with the baseline".into()));
    }
    if runs == 0 {
        return Err(usage("--runs must be at least 1".into()));
    }
    Ok(Args {
        runs,
        warmup,
        timeout,
        env,
        default_event: default_event.unwrap_or(EventSource::Inline("{}".into())),
        baseline,
        others,
    })
}

impl Args {
    /// Reads and checks every event.
    pub fn load(self) -> Result<Options, CliError> {
        let default_event = match &self.default_event {
            EventSource::Inline(json) => checked_json(json.clone().into_bytes(), "given with --event")?,
            EventSource::File(path) => read_event(path)?,
        };
        let load = |spec: BootstrapSpec| -> Result<Bootstrap, CliError> {
            let event = match &spec.event_file {
                Some(path) => read_event(path)?,
                None => default_event.clone(),
            };
            Ok(Bootstrap { label: spec.label, path: spec.path, event })
        };
        Ok(Options {
            runs: self.runs,
            warmup: self.warmup,
            settings: Settings { timeout: self.timeout, env: self.env },
            baseline: load(self.baseline)?,
            others: self.others.into_iter().map(load).collect::<Result<_, _>>()?,
        })
    }
}

/// Parses `[NAME=]PATH[:EVENT_FILE]`.
pub fn bootstrap_spec(spec: &str) -> Result<BootstrapSpec, CliError> {
    let (label, rest) = match spec.split_once('=') {
        Some((label, rest)) if !label.is_empty() && !label.contains('/') => (Some(label), rest),
        _ => (None, spec),
    };
    let (path, event_file) = match rest.rsplit_once(':') {
        Some((path, event)) => (path, Some(PathBuf::from(event))),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(CliError::Usage(format!("no binary path in {spec:?}")));
    }
    let path = PathBuf::from(path);
    let label = match label {
        Some(label) => label.to_owned(),
        None => label_of(&path),
    };
    Ok(BootstrapSpec { label, path, event_file })
}

/// `target/lambda/trigger-api/bootstrap` is `trigger-api`; `target/release/x` is `x`.
fn label_of(path: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match name(path) {
        Some(file) if file == "bootstrap" => path.parent().and_then(name).unwrap_or(file),
        Some(file) => file,
        None => path.display().to_string(),
    }
}

fn number(text: &str, flag: &str) -> Result<usize, CliError> {
    text.parse().map_err(|_| CliError::Usage(format!("{flag} wants a whole number, not {text:?}")))
}

fn read_event(path: &Path) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Event { path: path.display().to_string(), source })?;
    checked_json(bytes, &path.display().to_string())
}

fn checked_json(bytes: Vec<u8>, origin: &str) -> Result<Vec<u8>, CliError> {
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|source| CliError::NotJson { origin: origin.to_owned(), source })?;
    Ok(bytes)
}

/// The command as typed, quoted for a POSIX shell where needed, to print beside the figures.
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|arg| {
            let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                arg.clone()
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_bootstrap_under_target_lambda_is_named_for_its_folder() {
        let spec = bootstrap_spec("target/lambda/trigger-api/bootstrap").unwrap();

        assert_eq!(spec.label, "trigger-api");
        assert_eq!(spec.event_file, None);
    }

    #[test]
    fn a_bootstrap_can_have_a_name_and_its_own_event() {
        let spec = bootstrap_spec("dispatcher=target/release/dispatcher:events/sqs-empty.json").unwrap();

        assert_eq!(
            spec,
            BootstrapSpec {
                label: "dispatcher".into(),
                path: "target/release/dispatcher".into(),
                event_file: Some("events/sqs-empty.json".into()),
            }
        );
    }

    #[test]
    fn defaults_are_twenty_runs_one_warmup_and_an_empty_object() {
        let parsed = parse(args("--baseline target/release/hello-lambda target/release/x")).unwrap();

        assert_eq!((parsed.runs, parsed.warmup), (20, 1));
        assert_eq!(parsed.default_event, EventSource::Inline("{}".into()));
        assert_eq!(parsed.baseline.label, "hello-lambda");
        assert_eq!(parsed.others[0].label, "x");
    }

    #[test]
    fn env_pairs_are_kept_in_order() {
        let parsed =
            parse(args("--env GATEWAY_TABLE=t --env GATEWAY_FUNCTION_ALLOWLIST=my-app- --baseline b x")).unwrap();

        assert_eq!(
            parsed.env,
            vec![("GATEWAY_TABLE".into(), "t".into()), ("GATEWAY_FUNCTION_ALLOWLIST".into(), "my-app-".into())]
        );
    }

    #[test]
    fn the_endpoint_the_harness_watches_cannot_be_overridden() {
        let error = parse(args("--env AWS_ENDPOINT_URL_SNS=http://x --baseline b x")).unwrap_err();

        assert!(error.to_string().starts_with("AWS_ENDPOINT_URL_SNS is the harness's own"));
    }

    #[test]
    fn without_a_baseline_it_says_so() {
        let error = parse(args("target/release/x")).unwrap_err();

        assert!(error.to_string().starts_with("--baseline is required"));
    }

    #[test]
    fn an_event_that_is_not_json_is_refused_before_any_run() {
        let parsed = parse(args("--event {oops --baseline b x")).unwrap();

        assert!(matches!(parsed.load(), Err(CliError::NotJson { .. })));
    }

    #[test]
    fn the_printed_command_quotes_what_a_shell_would_split() {
        let line =
            shell_line(&args("coldstart --event").into_iter().chain(["{\"Records\": []}".into()]).collect::<Vec<_>>());

        assert_eq!(line, r#"coldstart --event '{"Records": []}'"#);
    }
}
