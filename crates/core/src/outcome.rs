//! Learning how an `async` invocation ended. An `Event` invoke only hands the payload to
//! Lambda's own queue, so the gateway records the delivery `invoked`. When the subscribed
//! function's on-success and on-failure destinations are the gateway's outcome queue, Lambda
//! sends an invocation record once it is done with the event (it ran, or it gave up after its
//! own retries or maximum age); the record echoes the invocation payload, whose `eventId`,
//! `subscriptionId` and `generation` name the delivery and its series, and [`settle`] turns it
//! into the delivery's final state: `delivered`, or `failed` with Lambda's reason.
//!
//! A record is believed only as far as it can be checked against the delivery log: it must be
//! of an `async` delivery the log holds, in the series the delivery is in now, name the function
//! that delivery invoked, and carry the request id Lambda gave one of the series' invocations
//! (`x-amzn-RequestId`, kept in the attempt's history). The outcome queue takes messages from
//! every subscriber's role, and the rest of a record is only what its sender says: the request
//! id is what only Lambda and the invoked function know. Anything else changes nothing: a record
//! that is not the gateway's, a late one (the delivery was redriven since), one of another
//! function, one of an invocation the gateway did not make.

use chrono::{DateTime, Utc};

use crate::allowlist::Home;
use crate::dispatch::{truncated, MAX_ERROR_BYTES};
use crate::ids::{EventId, FunctionId, SubscriptionId};
use crate::model::{Delivery, DeliveryMode, DeliveryStatus, Reported};

/// `requestContext.condition` of a record Lambda sends when the function succeeded.
pub const SUCCESS: &str = "Success";

/// An invocation record, read: which delivery it is of, and how the invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportedOutcome {
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub generation: u32,
    /// The function the record names (`requestContext.functionArn`).
    pub function: FunctionId,
    /// `requestContext.requestId`: the invocation's id.
    pub request_id: String,
    pub reported: Reported,
    /// Why it failed, for a condition other than [`SUCCESS`]: the function's error type and
    /// message, or Lambda's reason when the function never returned one.
    pub error: Option<String>,
}

impl ReportedOutcome {
    pub fn succeeded(&self) -> bool {
        self.reported.condition == SUCCESS
    }
}

/// Why a record changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The log has no such delivery (not the gateway's, or past its retention).
    UnknownDelivery,
    /// The delivery is in another series: redriven since, or the record is of a series the log
    /// has not recorded (its dispatcher will).
    OtherSeries,
    /// The delivery is `sync`: the gateway saw its outcome itself.
    NotAsync,
    /// The record names a function other than the one the delivery invoked.
    OtherFunction,
    /// No invocation of the series has the record's request id (the gateway did not make it, or
    /// learnt no id for it: an emulator answers without one).
    UnknownInvocation,
    /// Its series already has Lambda's report (a record sent twice).
    AlreadyReported,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownDelivery => "the delivery log has no such delivery",
            Self::OtherSeries => "the delivery is in another series (redriven since, or not recorded yet)",
            Self::NotAsync => "the delivery is sync: its outcome was recorded when it ran",
            Self::OtherFunction => "the record names another function than the one the delivery invoked",
            Self::UnknownInvocation => "no invocation the gateway made of this series has the record's request id",
            Self::AlreadyReported => "the series already has Lambda's report",
        }
    }
}

/// The state `recorded` takes on from `outcome`, reported at `now`, for a gateway whose bare
/// function names resolve in `home`; or why the record changes nothing.
///
/// A success settles the delivery `delivered`; any other condition `failed`, with Lambda's
/// reason and how many times it ran the function. The attempt count and history are left as
/// the gateway's attempts made them: Lambda's own retries are in `reported`.
pub fn settle(
    recorded: Option<&Delivery>,
    outcome: &ReportedOutcome,
    home: &Home,
    now: DateTime<Utc>,
) -> Result<Delivery, Ignored> {
    let recorded = recorded.ok_or(Ignored::UnknownDelivery)?;
    if recorded.event_id != outcome.event_id || recorded.subscription_id != outcome.subscription_id {
        return Err(Ignored::UnknownDelivery);
    }
    if recorded.generation != outcome.generation {
        return Err(Ignored::OtherSeries);
    }
    if recorded.policy.mode != DeliveryMode::Async {
        return Err(Ignored::NotAsync);
    }
    if !home.same_function(&recorded.function_id, &outcome.function) {
        return Err(Ignored::OtherFunction);
    }
    let invoked_so = |a: &crate::model::Attempt| {
        a.generation == outcome.generation && a.request_id.as_deref() == Some(outcome.request_id.as_str())
    };
    if !recorded.history.iter().any(invoked_so) {
        return Err(Ignored::UnknownInvocation);
    }
    if recorded.reported.is_some() {
        return Err(Ignored::AlreadyReported);
    }
    let mut next = Delivery { reported: Some(outcome.reported.clone()), updated_at: now, ..recorded.clone() };
    if outcome.succeeded() {
        next.status = DeliveryStatus::Delivered;
        next.last_error = None;
    } else {
        next.status = DeliveryStatus::Failed;
        let why = outcome.error.as_deref().unwrap_or("no error was reported");
        let runs = outcome.reported.approximate_invoke_count;
        next.last_error = Some(truncated(
            &format!(
                "Lambda gave up on the async invocation ({}) after {runs} run{}: {why}",
                outcome.reported.condition,
                if runs == 1 { "" } else { "s" }
            ),
            MAX_ERROR_BYTES,
        ));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliveryPolicy;
    use crate::ports::UlidSource;
    use crate::{fixtures, trigger, AccountId};

    fn t0() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    fn invoked(function: &str, policy: DeliveryPolicy) -> Delivery {
        let definition = fixtures::definition("orders.created");
        let mut sub = fixtures::subscription(&definition.name, function, Default::default());
        sub.delivery = policy;
        let t = trigger::accepted_trigger(&definition, &[std::sync::Arc::new(sub)], b"{}".to_vec(), t0(), &UlidSource);
        let mut d = Delivery { status: DeliveryStatus::Invoked, attempts: 1, ..t.deliveries[0].clone() };
        d.remember(crate::model::Attempt {
            generation: 0,
            number: 1,
            started_at: t0(),
            duration_ms: 20,
            result: crate::model::AttemptResult::Invoked,
            error: None,
            request_id: Some(REQUEST.into()),
        });
        d
    }

    const REQUEST: &str = "c2a6f2ae-7dbb-4d22-8782-d0485c9877e2";

    fn outcome(of: &Delivery, arn: &str, condition: &str, error: Option<&str>) -> ReportedOutcome {
        ReportedOutcome {
            event_id: of.event_id,
            subscription_id: of.subscription_id,
            generation: of.generation,
            function: FunctionId::parse(arn).unwrap(),
            request_id: REQUEST.into(),
            reported: Reported { at: t0(), condition: condition.into(), approximate_invoke_count: 3 },
            error: error.map(str::to_owned),
        }
    }

    fn home() -> Home {
        Home::new("us-east-1", Some(AccountId::parse("123456789012").unwrap()))
    }

    const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:my-app-orders:$LATEST";

    #[test]
    fn a_success_delivers_and_a_failure_fails_with_lambdas_reason() {
        let d = invoked("my-app-orders", DeliveryPolicy::default());
        let ok = settle(Some(&d), &outcome(&d, ARN, SUCCESS, None), &home(), t0()).unwrap();
        assert_eq!((ok.status, ok.attempts, ok.last_error.as_deref()), (DeliveryStatus::Delivered, 1, None));
        assert_eq!(ok.reported.as_ref().unwrap().condition, "Success");
        let failed =
            settle(Some(&d), &outcome(&d, ARN, "RetriesExhausted", Some("Error: boom")), &home(), t0()).unwrap();
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(
            failed.last_error.as_deref(),
            Some("Lambda gave up on the async invocation (RetriesExhausted) after 3 runs: Error: boom")
        );
        assert!(failed.supersedes(&d) && ok.supersedes(&d));
    }

    #[test]
    fn a_report_is_the_last_word_on_its_series_and_a_redrive_still_wins() {
        let d = invoked("my-app-orders", DeliveryPolicy::default());
        let reported = settle(Some(&d), &outcome(&d, ARN, SUCCESS, None), &home(), t0()).unwrap();
        // a late or duplicated write of the dispatcher's own, even with more attempts, loses
        let late = Delivery { status: DeliveryStatus::Failed, attempts: 5, ..d.clone() };
        assert!(!late.supersedes(&reported));
        let second_report = Delivery { status: DeliveryStatus::Failed, ..reported.clone() };
        assert!(!second_report.supersedes(&reported), "the first report of a series stands");
        let pending = Delivery { status: DeliveryStatus::Pending, attempts: 0, reported: None, ..d.clone() };
        assert!(reported.supersedes(&pending), "a report lands even before the invoked write");
        let redriven = Delivery { generation: 1, attempts: 0, status: DeliveryStatus::Pending, reported: None, ..d };
        assert!(redriven.supersedes(&reported));
    }

    #[test]
    fn records_that_cannot_be_checked_change_nothing() {
        let d = invoked("my-app-orders", DeliveryPolicy::default());
        let ok = outcome(&d, ARN, SUCCESS, None);
        assert_eq!(settle(None, &ok, &home(), t0()), Err(Ignored::UnknownDelivery));
        let later = Delivery { generation: 1, ..d.clone() };
        assert_eq!(settle(Some(&later), &ok, &home(), t0()), Err(Ignored::OtherSeries));
        let sync = invoked("my-app-orders", DeliveryPolicy { mode: DeliveryMode::Sync, ..Default::default() });
        assert_eq!(settle(Some(&sync), &outcome(&sync, ARN, SUCCESS, None), &home(), t0()), Err(Ignored::NotAsync));
        for other in [
            "arn:aws:lambda:us-east-1:123456789012:function:my-app-other",
            "arn:aws:lambda:us-east-1:999999999999:function:my-app-orders",
            "arn:aws:lambda:eu-west-1:123456789012:function:my-app-orders",
            "arn:aws-cn:lambda:us-east-1:123456789012:function:my-app-orders",
        ] {
            assert_eq!(
                settle(Some(&d), &outcome(&d, other, SUCCESS, None), &home(), t0()),
                Err(Ignored::OtherFunction)
            );
        }
        let forged = ReportedOutcome { request_id: "guessed".into(), ..ok.clone() };
        assert_eq!(
            settle(Some(&d), &forged, &home(), t0()),
            Err(Ignored::UnknownInvocation),
            "only Lambda knows the id"
        );
        let no_id = Delivery { history: Vec::new(), ..d.clone() };
        assert_eq!(settle(Some(&no_id), &ok, &home(), t0()), Err(Ignored::UnknownInvocation));
        let unknown_home = Home::new("us-east-1", None);
        assert_eq!(settle(Some(&d), &ok, &unknown_home, t0()), Err(Ignored::OtherFunction), "fails closed");
        let done = settle(Some(&d), &ok, &home(), t0()).unwrap();
        assert_eq!(settle(Some(&done), &ok, &home(), t0()), Err(Ignored::AlreadyReported));
    }

    #[test]
    fn a_delivery_named_by_arn_or_alias_matches_the_record_of_its_function() {
        for named in [
            "my-app-orders",
            "my-app-orders:live",
            "123456789012:function:my-app-orders",
            "arn:aws:lambda:us-east-1:123456789012:function:my-app-orders",
        ] {
            let d = invoked(named, DeliveryPolicy::default());
            let arn = "arn:aws:lambda:us-east-1:123456789012:function:my-app-orders:live";
            assert!(settle(Some(&d), &outcome(&d, arn, SUCCESS, None), &home(), t0()).is_ok(), "{named}");
        }
    }
}
