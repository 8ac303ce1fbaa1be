//! The calendar of a recurring contract (docs/recurring-billing.md).
//!
//! Period k starts `k` intervals after `starts_on`, counted from
//! `starts_on` itself and not from the period before: a contract starting
//! on the 31st starts a period on the last day of every shorter month and
//! on the 31st again in the months that have one (Jan 31 → Feb 28 or 29 →
//! Mar 31). A yearly contract starting on Feb 29 bills on Feb 28 in common
//! years. A period runs until the next one starts (exclusive).

use chrono::{Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};

use super::BillingInterval;

/// How far back a recurring contract may start: its elapsed periods are
/// all billed when it is approved.
pub const MAX_BACKDATE_DAYS: i64 = 366;

/// The start of period `k`; `None` for a one-time contract or a date past
/// the calendar's end.
pub fn start(starts_on: NaiveDate, interval: BillingInterval, k: u32) -> Option<NaiveDate> {
    let months = match interval {
        BillingInterval::OneTime => return None,
        BillingInterval::Monthly => k,
        BillingInterval::Yearly => k.checked_mul(12)?,
    };
    // chrono clamps to the month's last day, from the anchor: the rule above.
    starts_on.checked_add_months(Months::new(months))
}

/// Whether `ends_on` closes a period: the day before some period's start
/// (k ≥ 1), so every billed period is whole. Otherwise the two closest
/// dates that would, for the answer.
pub fn check_ends_on(
    starts_on: NaiveDate,
    interval: BillingInterval,
    ends_on: NaiveDate,
) -> Result<(), (Option<NaiveDate>, NaiveDate)> {
    let mut before = None;
    for k in 1.. {
        let Some(next) = start(starts_on, interval, k) else {
            return Err((before, ends_on));
        };
        let last_day = next.pred_opt().unwrap_or(next);
        if last_day == ends_on {
            return Ok(());
        }
        if last_day > ends_on {
            return Err((before, last_day));
        }
        before = Some(last_day);
    }
    unreachable!("the loop returns")
}

/// The credit for cancelling on `on` (included) in the period
/// [`start`, `end`): `amount` × unused days ÷ the period's days, rounded
/// half-up to `decimals`. Zero when `on` is at or past the end.
pub fn unused_credit(
    amount: Decimal,
    start: NaiveDate,
    end: NaiveDate,
    on: NaiveDate,
    decimals: u32,
) -> Decimal {
    let days = (end - start).num_days();
    let unused = (end - on.max(start)).num_days().clamp(0, days);
    if days <= 0 || unused == 0 {
        return Decimal::ZERO;
    }
    (amount * Decimal::from(unused) / Decimal::from(days))
        .round_dp_with_strategy(decimals, RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn month_end_anchors_come_back_to_the_31st() {
        let m = BillingInterval::Monthly;
        let starts: Vec<NaiveDate> = (0..4).map(|k| start(d("2024-01-31"), m, k).unwrap()).collect();
        assert_eq!(
            starts,
            [d("2024-01-31"), d("2024-02-29"), d("2024-03-31"), d("2024-04-30")]
        );
        assert_eq!(start(d("2023-01-31"), m, 1), Some(d("2023-02-28")));
        assert_eq!(start(d("2024-01-30"), m, 1), Some(d("2024-02-29")));
        assert_eq!(start(d("2024-01-30"), m, 2), Some(d("2024-03-30")));
    }

    #[test]
    fn yearly_periods_from_a_leap_day() {
        let y = BillingInterval::Yearly;
        assert_eq!(start(d("2024-02-29"), y, 1), Some(d("2025-02-28")));
        assert_eq!(start(d("2024-02-29"), y, 4), Some(d("2028-02-29")));
        assert_eq!(start(d("2024-02-29"), BillingInterval::OneTime, 1), None);
    }

    #[test]
    fn ends_on_must_close_a_period() {
        let m = BillingInterval::Monthly;
        assert!(check_ends_on(d("2024-01-31"), m, d("2024-02-28")).is_ok());
        assert!(check_ends_on(d("2024-01-31"), m, d("2024-03-30")).is_ok());
        assert_eq!(
            check_ends_on(d("2024-01-15"), m, d("2024-03-01")),
            Err((Some(d("2024-02-14")), d("2024-03-14")))
        );
        assert_eq!(
            check_ends_on(d("2024-01-15"), m, d("2024-01-20")),
            Err((None, d("2024-02-14")))
        );
    }

    #[test]
    fn the_unused_part_is_prorated_by_days_half_up() {
        let (s, e) = (d("2024-04-01"), d("2024-05-01")); // 30 days
        let amount = Decimal::new(3000, 2);
        assert_eq!(unused_credit(amount, s, e, d("2024-04-01"), 2), amount);
        assert_eq!(
            unused_credit(amount, s, e, d("2024-04-21"), 2),
            Decimal::new(1000, 2)
        );
        assert_eq!(unused_credit(amount, s, e, d("2024-05-01"), 2), Decimal::ZERO);
        // 10 × 1/3 = 3.333… → 3.33; 10 × 2/3 = 6.666… → 6.67; 0.05 × 1/2 → 0.03.
        let (s, e) = (d("2024-01-01"), d("2024-01-04"));
        assert_eq!(
            unused_credit(Decimal::TEN, s, e, d("2024-01-03"), 2),
            Decimal::new(333, 2)
        );
        assert_eq!(
            unused_credit(Decimal::TEN, s, e, d("2024-01-02"), 2),
            Decimal::new(667, 2)
        );
        let (s, e) = (d("2024-01-01"), d("2024-01-03"));
        assert_eq!(
            unused_credit(Decimal::new(5, 2), s, e, d("2024-01-02"), 2),
            Decimal::new(3, 2)
        );
        assert_eq!(
            unused_credit(Decimal::new(5, 2), s, e, d("2024-01-02"), 0),
            Decimal::ZERO
        );
    }
}
