//! How long the delivery log keeps a trigger once it has run its course.

use chrono::{DateTime, Utc};

/// How long a trigger's delivery records (and, locally, its payload) are kept after it was
/// received. Locally, a trigger with a pending delivery is kept however old, since its rows
/// are the outbox; in the cloud the queue holds the work, so records go by age alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryRetention {
    days: u32,
}

impl DeliveryRetention {
    pub const DEFAULT_DAYS: u32 = 30;
    /// At least a day, so a record lasts as long as the 24-hour idempotency window of its trigger.
    pub const MIN_DAYS: u32 = 1;
    /// Ten years: more is surely a typo, and anyone who wants to keep everything is served.
    pub const MAX_DAYS: u32 = 3650;

    pub fn days(days: u32) -> Result<Self, String> {
        if (Self::MIN_DAYS..=Self::MAX_DAYS).contains(&days) {
            Ok(Self { days })
        } else {
            Err(format!("{days} is not between {} and {} days", Self::MIN_DAYS, Self::MAX_DAYS))
        }
    }

    /// Reads a number of days as configuration gives it; `None` is the default.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw.map(str::trim) {
            None => Ok(Self::default()),
            Some(text) => {
                let days = text.parse().map_err(|_| format!("'{text}' is not a whole number of days"))?;
                Self::days(days)
            }
        }
    }

    /// When the records of a trigger received at `received_at` may go.
    pub fn expires_at(self, received_at: DateTime<Utc>) -> DateTime<Utc> {
        received_at + chrono::Duration::days(i64::from(self.days))
    }

    /// Triggers received before this instant are past their retention at `now`.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.days))
    }
}

impl Default for DeliveryRetention {
    fn default() -> Self {
        Self { days: Self::DEFAULT_DAYS }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_read_in_whole_days_within_bounds() {
        assert_eq!(DeliveryRetention::parse(None), Ok(DeliveryRetention::days(30).unwrap()));
        assert_eq!(DeliveryRetention::parse(Some(" 7 ")), DeliveryRetention::days(7));
        assert!(DeliveryRetention::parse(Some("0")).unwrap_err().contains("between 1 and 3650"));
        assert!(DeliveryRetention::parse(Some("3651")).is_err());
        assert!(DeliveryRetention::parse(Some("1.5")).unwrap_err().contains("whole number"));
    }

    #[test]
    fn a_trigger_expires_its_retention_after_it_was_received() {
        let retention = DeliveryRetention::days(2).unwrap();
        let received: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
        assert_eq!(retention.expires_at(received), "2026-01-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(retention.cutoff(retention.expires_at(received)), received);
    }
}
