//! Which Lambda functions the gateway may invoke, in which accounts and regions.
//!
//! The allowlist is checked twice: when a subscription is written (so the client hears about
//! it, 403) and again before every invocation (so a subscription written under an older, wider
//! allowlist still cannot reach a function outside the current one). With real credentials it
//! is the only guard between a client and every function those credentials may invoke, so it
//! compares where a function lives, not only its name.
//!
//! # Syntax
//! A comma-separated list of entries; a function is allowed if any entry admits it.
//! - `orders-` or `orders-*`: functions whose name starts with `orders-`, **in the gateway's own
//!   account and region** (its home). `*` alone: any function name in the home.
//! - `arn:aws:lambda:eu-west-1:123456789012:function:orders-*`: functions whose name starts with
//!   `orders-` in that partition, region and account. Region and account may each be `*`, which
//!   opens every region (or account) on purpose.
//!
//! A bare name (`orders-ship`, `orders-ship:live`) runs in the home, as Lambda resolves it. An
//! ARN or partial ARN (`123456789012:function:orders-ship`) runs where it says; a name entry
//! admits it only if that is the home. When the gateway does not know its own account, an ARN
//! that names an account is admitted only by an ARN entry naming that account (or `*`).

use std::fmt;

use crate::ids::{FunctionId, FunctionLocation};

/// An AWS account id: 12 digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() == 12 && raw.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("'{raw}' is not an AWS account id (12 digits)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the gateway runs: the region and account a bare function name resolves to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Home {
    pub region: Option<String>,
    pub account: Option<AccountId>,
}

impl Home {
    pub fn new(region: impl Into<String>, account: Option<AccountId>) -> Self {
        Self { region: Some(region.into()), account }
    }

    /// The partition of the home region: a region belongs to exactly one.
    fn partition(&self) -> Option<&'static str> {
        self.region.as_deref().map(partition_of)
    }

    /// Whether a function at `at` is in this home. What the id does not name is the home's.
    fn contains(&self, at: &FunctionLocation<'_>) -> bool {
        let region_ok = at.region.is_none_or(|r| self.region.as_deref() == Some(r));
        let account_ok = at.account.is_none_or(|a| self.account.as_ref().is_some_and(|home| home.as_str() == a));
        let partition_ok = at.partition.is_none_or(|p| self.partition() == Some(p));
        region_ok && account_ok && partition_ok
    }
}

impl Home {
    /// Whether `a` and `b` are the same function as Lambda resolves them from this home: the same
    /// name, partition, region and account, what either leaves out being the home's. A part
    /// neither the ids nor the home tell compares equal only if both leave it out; one the home
    /// does not know and only one id names does not (fails closed). Qualifiers (version, alias)
    /// are not compared: they are versions of one function, in the same account.
    pub fn same_function(&self, a: &FunctionId, b: &FunctionId) -> bool {
        let resolve = |at: FunctionLocation<'_>| {
            (
                at.partition.map(str::to_owned).or_else(|| self.partition().map(str::to_owned)),
                at.region.map(str::to_owned).or_else(|| self.region.clone()),
                at.account.map(str::to_owned).or_else(|| self.account.as_ref().map(|a| a.as_str().to_owned())),
                at.name.to_owned(),
            )
        };
        resolve(a.location()) == resolve(b.location())
    }
}

/// The partition a region is in, by the region's name.
fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else if region.starts_with("eu-isoe-") {
        "aws-iso-e"
    } else {
        "aws"
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// A name prefix, in the home.
    Name { prefix: String },
    /// A name prefix in the named partition, region (`None`: any) and account (`None`: any).
    Arn { partition: String, region: Option<String>, account: Option<String>, prefix: String },
}

impl Entry {
    fn parse(raw: &str) -> Result<Self, String> {
        if raw == "*" {
            return Ok(Self::Name { prefix: String::new() });
        }
        if let Some(arn) = raw.strip_prefix("arn:") {
            let parts: Vec<&str> = arn.split(':').collect();
            let bad = || {
                format!(
                    "'{raw}' is not an allowlist ARN: use arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME-PREFIX, \
                     where REGION and ACCOUNT may be '*'"
                )
            };
            let [partition, "lambda", region, account, "function", name] = parts[..] else {
                return Err(bad());
            };
            let partition_ok =
                partition.starts_with("aws") && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            let region_ok = region == "*" || is_region(region);
            let account_ok = account == "*" || AccountId::parse(account).is_ok();
            if !(partition_ok && region_ok && account_ok) {
                return Err(bad());
            }
            let any = |s: &str| (s != "*").then(|| s.to_owned());
            return Ok(Self::Arn {
                partition: partition.to_owned(),
                region: any(region),
                account: any(account),
                prefix: name_prefix(raw, name)?,
            });
        }
        Ok(Self::Name { prefix: name_prefix(raw, raw)? })
    }

    fn admits(&self, at: &FunctionLocation<'_>, home: &Home) -> bool {
        match self {
            Self::Name { prefix } => at.name.starts_with(prefix.as_str()) && home.contains(at),
            Self::Arn { partition, region, account, prefix } => {
                // What the function's id leaves out is the home's; unknown there, nothing matches
                // but a wildcard.
                let its_partition = at.partition.or(home.partition());
                let its_region = at.region.or(home.region.as_deref());
                let its_account = at.account.or(home.account.as_ref().map(AccountId::as_str));
                at.name.starts_with(prefix.as_str())
                    && its_partition == Some(partition.as_str())
                    && region.as_deref().is_none_or(|r| its_region == Some(r))
                    && account.as_deref().is_none_or(|a| its_account == Some(a))
            }
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name { prefix } => write!(f, "{prefix}*"),
            Self::Arn { partition, region, account, prefix } => write!(
                f,
                "arn:{partition}:lambda:{}:{}:function:{prefix}*",
                region.as_deref().unwrap_or("*"),
                account.as_deref().unwrap_or("*")
            ),
        }
    }
}

fn is_region(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A function-name prefix, with or without a trailing `*`: the characters a name may have.
fn name_prefix(entry: &str, raw: &str) -> Result<String, String> {
    let prefix = raw.strip_suffix('*').unwrap_or(raw);
    if prefix.len() <= 64 && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(prefix.to_owned())
    } else {
        Err(format!(
            "'{entry}' is not an allowlist entry: use a function-name prefix such as 'orders-' or 'orders-*' \
             (letters, digits, '-', '_'), '*', or a Lambda ARN pattern"
        ))
    }
}

/// Which functions the gateway may invoke. See the module documentation for the syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionAllowlist {
    entries: Vec<Entry>,
    home: Home,
}

impl FunctionAllowlist {
    /// Parses a comma-separated list of entries, for a gateway whose home is not known yet
    /// (see [`Self::at_home`]). A list that names nothing is refused: a gateway that may invoke
    /// no function is a configuration mistake, better stopped at start-up.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let entries: Vec<Entry> =
            spec.split(',').map(str::trim).filter(|e| !e.is_empty()).map(Entry::parse).collect::<Result<_, _>>()?;
        if entries.is_empty() {
            return Err(format!(
                "'{spec}' names no function: use name prefixes such as 'orders-', '*', or Lambda ARN patterns"
            ));
        }
        Ok(Self { entries, home: Home::default() })
    }

    /// Any function name in the home: `*`.
    pub fn any() -> Self {
        Self { entries: vec![Entry::Name { prefix: String::new() }], home: Home::default() }
    }

    /// Allows nothing: what a gateway that was given no allowlist must use.
    pub fn none() -> Self {
        Self { entries: Vec::new(), home: Home::default() }
    }

    /// The same entries for a gateway running in `home`.
    pub fn at_home(mut self, home: Home) -> Self {
        self.home = home;
        self
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn allows(&self, function: &FunctionId) -> bool {
        let at = function.location();
        self.entries.iter().any(|e| e.admits(&at, &self.home))
    }

    /// Whether any function name in the home is allowed (`*`): worth a warning at start-up.
    pub fn allows_any_name(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Name { prefix } if prefix.is_empty()))
    }

    /// The entries and the home, for logs and refusals.
    pub fn describe(&self) -> String {
        let entries = if self.entries.is_empty() {
            "nothing".to_owned()
        } else {
            self.entries.iter().map(Entry::to_string).collect::<Vec<_>>().join(", ")
        };
        let region = self.home.region.as_deref().unwrap_or("unknown");
        let account = self.home.account.as_ref().map_or("unknown", AccountId::as_str);
        format!("{entries}; home region {region}, account {account}")
    }
}

/// The allowlist of a function deployed on AWS, from its environment:
/// `GATEWAY_FUNCTION_ALLOWLIST` (required: in the cloud there is no "any function" default, and
/// a function started without it must not run), `AWS_REGION` (set by Lambda) and
/// `GATEWAY_ACCOUNT_ID` (the template passes `AWS::AccountId`). A problem names its variable.
pub fn cloud_allowlist(
    get: impl Fn(&str) -> Option<String> + Copy,
) -> Result<FunctionAllowlist, (&'static str, String)> {
    let set = |var: &'static str| get(var).filter(|v| !v.trim().is_empty());
    let spec = set("GATEWAY_FUNCTION_ALLOWLIST").ok_or((
        "GATEWAY_FUNCTION_ALLOWLIST",
        "is required: the function-name prefixes (or ARN patterns) subscriptions may target".to_owned(),
    ))?;
    let allowlist = FunctionAllowlist::parse(&spec).map_err(|p| ("GATEWAY_FUNCTION_ALLOWLIST", p))?;
    Ok(allowlist.at_home(cloud_home(get)?))
}

/// Where a function deployed on AWS runs: `AWS_REGION` (required; Lambda sets it) and
/// `GATEWAY_ACCOUNT_ID` (optional; the template passes `AWS::AccountId`).
pub fn cloud_home(get: impl Fn(&str) -> Option<String>) -> Result<Home, (&'static str, String)> {
    let set = |var: &'static str| get(var).filter(|v| !v.trim().is_empty());
    let region = set("AWS_REGION").ok_or(("AWS_REGION", "is required (Lambda sets it)".to_owned()))?;
    let account = set("GATEWAY_ACCOUNT_ID")
        .map(|raw| AccountId::parse(&raw))
        .transpose()
        .map_err(|p| ("GATEWAY_ACCOUNT_ID", p))?;
    Ok(Home::new(region.trim(), account))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME_ACCOUNT: &str = "123456789012";

    fn home() -> Home {
        Home::new("us-east-1", Some(AccountId::parse(HOME_ACCOUNT).unwrap()))
    }

    fn allows(allowlist: &FunctionAllowlist, function: &str) -> bool {
        allowlist.allows(&FunctionId::parse(function).unwrap_or_else(|v| panic!("{function}: {v:?}")))
    }

    #[test]
    fn a_name_entry_admits_bare_names_and_arns_of_the_home_only() {
        let allow = FunctionAllowlist::parse("example-").unwrap().at_home(home());
        for ok in [
            "example-ok",
            "example-ok:live",
            "arn:aws:lambda:us-east-1:123456789012:function:example-ok",
            "arn:aws:lambda:us-east-1:123456789012:function:example-ok:3",
            "123456789012:function:example-ok",
        ] {
            assert!(allows(&allow, ok), "{ok} should be allowed");
        }
        for refused in [
            "other-fn",
            // the reviewer's case: the right name in someone else's account
            "arn:aws:lambda:eu-west-1:999999999999:function:example-evil",
            "arn:aws:lambda:us-east-1:999999999999:function:example-evil",
            "arn:aws:lambda:eu-west-1:123456789012:function:example-ok",
            "arn:aws-cn:lambda:us-east-1:123456789012:function:example-ok",
            "999999999999:function:example-evil",
        ] {
            assert!(!allows(&allow, refused), "{refused} should be refused");
        }
    }

    #[test]
    fn without_a_known_account_every_arn_naming_an_account_is_refused_by_name_entries() {
        let allow = FunctionAllowlist::parse("*").unwrap().at_home(Home::new("us-east-1", None));
        assert!(allows(&allow, "example-ok"));
        assert!(!allows(&allow, "arn:aws:lambda:us-east-1:123456789012:function:example-ok"));
        assert!(!allows(&allow, "123456789012:function:example-ok"));
        let unknown_home = FunctionAllowlist::parse("*").unwrap();
        assert!(allows(&unknown_home, "example-ok"));
        assert!(!allows(&unknown_home, "arn:aws:lambda:us-east-1:123456789012:function:example-ok"));
    }

    #[test]
    fn an_arn_entry_opens_exactly_the_account_and_region_it_names() {
        let allow = FunctionAllowlist::parse("arn:aws:lambda:eu-west-1:999999999999:function:partner-")
            .unwrap()
            .at_home(home());
        assert!(allows(&allow, "arn:aws:lambda:eu-west-1:999999999999:function:partner-hook"));
        assert!(!allows(&allow, "arn:aws:lambda:eu-west-2:999999999999:function:partner-hook"));
        assert!(!allows(&allow, "arn:aws:lambda:eu-west-1:999999999998:function:partner-hook"));
        assert!(!allows(&allow, "arn:aws:lambda:eu-west-1:999999999999:function:other"));
        assert!(!allows(&allow, "partner-hook"), "a bare name runs in the home, which the entry does not name");

        let any_region =
            FunctionAllowlist::parse("arn:aws:lambda:*:999999999999:function:partner-*").unwrap().at_home(home());
        assert!(allows(&any_region, "arn:aws:lambda:ap-south-1:999999999999:function:partner-hook"));
        assert!(!allows(&any_region, "arn:aws:lambda:ap-south-1:111111111111:function:partner-hook"));
        assert!(!allows(&any_region, "arn:aws-cn:lambda:cn-north-1:999999999999:function:partner-hook"));
    }

    #[test]
    fn an_arn_entry_for_the_home_account_admits_bare_names_when_the_home_is_known() {
        let allow = FunctionAllowlist::parse("arn:aws:lambda:us-east-1:123456789012:function:orders-").unwrap();
        assert!(!allows(&allow, "orders-ship"), "unknown home: a bare name's account is unknown");
        let allow = allow.at_home(home());
        assert!(allows(&allow, "orders-ship"));
        assert!(allows(&allow, "123456789012:function:orders-ship"));
    }

    #[test]
    fn prefixes_match_from_the_start_and_an_empty_list_allows_nothing() {
        let allow = FunctionAllowlist::parse("orders-, billing-*").unwrap().at_home(home());
        assert!(allows(&allow, "orders-ship") && allows(&allow, "billing-run:3"));
        assert!(!allows(&allow, "admin-drop-tables") && !allows(&allow, "my-orders-ship"));
        assert!(!allows(&FunctionAllowlist::none(), "anything"));
    }

    #[test]
    fn a_list_that_names_nothing_is_refused() {
        for empty in ["", " ", ",", " , ,"] {
            assert!(FunctionAllowlist::parse(empty).unwrap_err().contains("names no function"), "{empty:?}");
        }
    }

    #[test]
    fn malformed_entries_are_refused_with_the_entry_named() {
        for bad in [
            "orders/",
            "ord*ers",
            "arn:aws:lambda:eu-west-1:123:function:x",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:eu-west-1:123456789012:function",
            "arn:aws:lambda:EU:123456789012:function:x",
        ] {
            let err = FunctionAllowlist::parse(&format!("ok-, {bad}")).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_cloud_function_refuses_to_start_without_an_allowlist() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let (var, problem) = cloud_allowlist(env(&[("AWS_REGION", "us-east-1")])).unwrap_err();
        assert_eq!(var, "GATEWAY_FUNCTION_ALLOWLIST");
        assert!(problem.starts_with("is required"), "{problem}");
        assert_eq!(
            cloud_allowlist(env(&[("GATEWAY_FUNCTION_ALLOWLIST", " "), ("AWS_REGION", "us-east-1")])).unwrap_err().0,
            "GATEWAY_FUNCTION_ALLOWLIST"
        );
        let allow = cloud_allowlist(env(&[
            ("GATEWAY_FUNCTION_ALLOWLIST", "my-app-"),
            ("AWS_REGION", "us-east-1"),
            ("GATEWAY_ACCOUNT_ID", HOME_ACCOUNT),
        ]))
        .unwrap();
        assert_eq!(allow.home(), &home());
        assert_eq!(
            cloud_allowlist(env(&[
                ("GATEWAY_FUNCTION_ALLOWLIST", "my-app-"),
                ("AWS_REGION", "us-east-1"),
                ("GATEWAY_ACCOUNT_ID", "x")
            ]))
            .unwrap_err()
            .0,
            "GATEWAY_ACCOUNT_ID"
        );
    }

    #[test]
    fn the_description_names_entries_and_home() {
        let allow =
            FunctionAllowlist::parse("orders-,arn:aws:lambda:*:999999999999:function:p").unwrap().at_home(home());
        assert_eq!(
            allow.describe(),
            "orders-*, arn:aws:lambda:*:999999999999:function:p*; home region us-east-1, account 123456789012"
        );
        assert!(FunctionAllowlist::parse("*").unwrap().allows_any_name());
        assert!(!allow.allows_any_name());
    }
}
