//! Credit grants of a locked wallet and the burn-down rule (docs/grants.md),
//! free of SQL: a movement plans here what it takes from, gives back to and
//! creates among the wallet's grants, and the wallet's one writing
//! statement applies the plan.
//!
//! Spending order: credit the spender's own hold reserved (a capture), then
//! free credit of live grants in burn order — priority (lower first), the
//! soonest `expires_at` (none last), the oldest — then credit other holds
//! reserved (those holds keep their amount, now lent by the overdraft), and
//! what is left overdraws the wallet, which no grant records. Whatever the
//! order, Σ remaining = max(balance, 0) before and after.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::metadata::Metadata;

/// Paid for by the customer (a top-up) or given by the shop (a promotion,
/// goodwill, a manual adjustment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    Paid,
    Granted,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Paid => "paid",
            GrantKind::Granted => "granted",
        }
    }
}

/// A grant with credit left, as its wallet's lock reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: Uuid,
    pub kind: GrantKind,
    pub remaining: Decimal,
    /// Reserved by active holds.
    pub held: Decimal,
    pub priority: i16,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Grant {
    /// Spendable at `at`: before its deadline.
    pub fn live_at(&self, at: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| at < e)
    }

    /// Free credit past its deadline: it must leave before anything moves.
    pub fn due_at(&self, at: DateTime<Utc>) -> bool {
        !self.live_at(at) && self.free() > Decimal::ZERO
    }

    pub fn free(&self) -> Decimal {
        self.remaining - self.held
    }
}

/// Priority, then the soonest deadline (none last), then the oldest.
pub fn burn_order(a: &Grant, b: &Grant) -> Ordering {
    a.priority
        .cmp(&b.priority)
        .then_with(|| match (a.expires_at, b.expires_at) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// What a new grant is: its kind, priority, deadline and metadata, and the
/// grant it carries or replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantSpec {
    pub kind: GrantKind,
    pub priority: i16,
    pub expires_at: Option<DateTime<Utc>>,
    pub metadata: Metadata,
    pub source: Option<Uuid>,
}

impl GrantSpec {
    pub const DEFAULT_PRIORITY: i16 = 50;

    /// Paid credit without a deadline (an overpayment given back, credit
    /// an overdraft had lent given back).
    pub fn paid() -> Self {
        GrantSpec {
            kind: GrantKind::Paid,
            priority: Self::DEFAULT_PRIORITY,
            expires_at: None,
            metadata: Metadata::default(),
            source: None,
        }
    }
}

/// A grant a movement creates, with what is left of it once the movement
/// has repaid the overdraft.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGrant {
    pub id: Uuid,
    pub spec: GrantSpec,
    pub amount: Decimal,
    pub remaining: Decimal,
}

/// A change to an existing grant: `taken` leaves `remaining` (a negative
/// `taken` gives back), `unheld` leaves `held`, `expired` is what of
/// `taken` expired.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GrantChange {
    pub taken: Decimal,
    pub unheld: Decimal,
    pub expired: Decimal,
}

/// One line of a movement's consumptions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Use {
    pub grant_id: Uuid,
    pub amount: Decimal,
    pub held: bool,
}

/// Everything a movement writes to its wallet's grants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrantWrites {
    pub created: Vec<NewGrant>,
    pub changed: Vec<(Uuid, GrantChange)>,
    pub uses: Vec<Use>,
    /// Credit of other holds this movement spent: (grant, amount). Those
    /// holds' reservations from the grant shrink by as much.
    pub lent: Vec<(Uuid, Decimal)>,
}

impl GrantWrites {
    fn change(&mut self, id: Uuid, f: impl FnOnce(&mut GrantChange)) {
        match self.changed.iter_mut().find(|(g, _)| *g == id) {
            Some((_, c)) => f(c),
            None => {
                let mut c = GrantChange::default();
                f(&mut c);
                self.changed.push((id, c));
            }
        }
    }

    fn take(&mut self, id: Uuid, amount: Decimal, held: bool) {
        self.change(id, |c| {
            c.taken += amount;
            if held {
                c.unheld += amount;
            }
        });
        self.uses.push(Use {
            grant_id: id,
            amount,
            held,
        });
    }

    /// Σ of what the movement took from grants (net of what it gave back).
    pub fn used(&self) -> Decimal {
        self.uses.iter().map(|u| u.amount).sum()
    }
}

/// The grants of a locked wallet, kept current as the transaction plans
/// and writes movements on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    fn get_mut(&mut self, id: Uuid) -> Option<&mut Grant> {
        self.0.iter_mut().find(|g| g.id == id)
    }

    /// The grants holding free credit past their deadline at `at`.
    pub fn due(&self, at: DateTime<Utc>) -> Vec<Grant> {
        self.0.iter().filter(|g| g.due_at(at)).cloned().collect()
    }

    /// Σ remaining by kind: (paid, granted).
    pub fn split(&self) -> (Decimal, Decimal) {
        self.0
            .iter()
            .fold((Decimal::ZERO, Decimal::ZERO), |(p, g), x| match x.kind {
                GrantKind::Paid => (p + x.remaining, g),
                GrantKind::Granted => (p, g + x.remaining),
            })
    }

    /// Plans spending `amount` at `at`: the hold's own reservation `own`
    /// first (a capture), then free live credit in burn order, then credit
    /// other holds reserved (live or not: it was reserved in time), and
    /// leaves the rest to the overdraft. Due grants must have expired
    /// first (the caller checks `due` is empty).
    pub fn spend(&mut self, amount: Decimal, at: DateTime<Utc>, own: &[(Uuid, Decimal)]) -> GrantWrites {
        let mut w = GrantWrites::default();
        let mut left = amount;
        for &(id, reserved) in own {
            let Some(g) = self.get_mut(id) else { continue };
            let take = reserved.min(left).min(g.held);
            if take > Decimal::ZERO {
                g.remaining -= take;
                g.held -= take;
                w.take(id, take, true);
                left -= take;
            }
        }
        left = self.take_free(left, at, |g, take| {
            g.remaining -= take;
            w.take(g.id, take, false);
        });
        for i in self.order() {
            let g = &mut self.0[i];
            if left.is_zero() {
                break;
            }
            // The own reservation is spent by now: what is held is others'.
            let take = g.held.min(left);
            if take > Decimal::ZERO {
                g.remaining -= take;
                g.held -= take;
                left -= take;
                w.take(g.id, take, true);
                w.lent.push((g.id, take));
            }
        }
        w
    }

    /// Plans a credit of `amount` that creates one grant per `parts`
    /// (spec, amount; the parts sum to `amount`) on a wallet whose balance
    /// is `balance`: whatever the wallet owes is repaid first, from the
    /// new grants in burn order, and what is left of them stays.
    pub fn credit(
        &mut self,
        balance: Decimal,
        at: DateTime<Utc>,
        parts: Vec<(GrantSpec, Decimal)>,
    ) -> GrantWrites {
        let mut w = GrantWrites::default();
        let mut owed = (-balance).max(Decimal::ZERO);
        let mut created: Vec<Grant> = Vec::with_capacity(parts.len());
        for (spec, amount) in parts {
            let id = Uuid::now_v7();
            created.push(Grant {
                id,
                kind: spec.kind,
                remaining: amount,
                held: Decimal::ZERO,
                priority: spec.priority,
                expires_at: spec.expires_at,
                created_at: at,
            });
            w.created.push(NewGrant {
                id,
                spec,
                amount,
                remaining: amount,
            });
        }
        let mut order: Vec<usize> = (0..created.len()).collect();
        order.sort_by(|&a, &b| burn_order(&created[a], &created[b]));
        for i in order {
            if owed.is_zero() {
                break;
            }
            let take = created[i].remaining.min(owed);
            if take > Decimal::ZERO {
                created[i].remaining -= take;
                w.created[i].remaining -= take;
                owed -= take;
                w.uses.push(Use {
                    grant_id: created[i].id,
                    amount: take,
                    held: false,
                });
            }
        }
        self.0
            .extend(created.into_iter().filter(|g| g.remaining > Decimal::ZERO));
        w
    }

    /// Plans a refund of `amount` on a wallet whose balance is `balance`:
    /// it repays what the wallet owes first, then gives back to the grants
    /// the refunded movement took from, in the reverse of the order it took
    /// (`taken`: grant, what is left to give back to it, and the grant as
    /// it is now; `None` when it has no credit left). A grant past its
    /// deadline gets nothing back: a new grant like it, with the same
    /// deadline, takes the credit and is due at once. What is left after
    /// every grant (what the overdraft lent) comes back as paid credit.
    pub fn restore(
        &mut self,
        balance: Decimal,
        amount: Decimal,
        at: DateTime<Utc>,
        taken: Vec<Restorable>,
    ) -> GrantWrites {
        let owed = (-balance).max(Decimal::ZERO);
        let mut left = amount - owed.min(amount);
        let mut w = GrantWrites::default();
        let mut replaced: Vec<(GrantSpec, Decimal)> = Vec::new();
        for r in taken.into_iter().rev() {
            if left.is_zero() {
                break;
            }
            let give = r.left.min(left);
            if give <= Decimal::ZERO {
                continue;
            }
            left -= give;
            let live = r.expires_at.is_none_or(|e| at < e) && !r.expired;
            if live {
                w.change(r.grant_id, |c| c.taken -= give);
                w.uses.push(Use {
                    grant_id: r.grant_id,
                    amount: -give,
                    held: false,
                });
                match self.get_mut(r.grant_id) {
                    Some(g) => g.remaining += give,
                    None => self.0.push(Grant {
                        id: r.grant_id,
                        kind: r.kind,
                        remaining: give,
                        held: Decimal::ZERO,
                        priority: r.priority,
                        expires_at: r.expires_at,
                        created_at: r.created_at,
                    }),
                }
            } else {
                replaced.push((
                    GrantSpec {
                        kind: r.kind,
                        priority: r.priority,
                        expires_at: r.expires_at,
                        metadata: Metadata::default(),
                        source: Some(r.grant_id),
                    },
                    give,
                ));
            }
        }
        if left > Decimal::ZERO {
            replaced.push((GrantSpec::paid(), left));
        }
        if !replaced.is_empty() {
            // The wallet owes nothing by now: the new grants keep it all.
            let more = self.credit(Decimal::ZERO, at, replaced);
            w.created.extend(more.created);
        }
        w
    }

    /// Plans a capture: `spend`, then frees what of the hold's own
    /// reservation `own` it did not spend.
    pub fn spend_hold(&mut self, amount: Decimal, at: DateTime<Utc>, own: &[(Uuid, Decimal)]) -> GrantWrites {
        let mut w = self.spend(amount, at, own);
        for &(id, reserved) in own {
            let spent: Decimal = w
                .uses
                .iter()
                .filter(|u| u.grant_id == id && u.held)
                .map(|u| u.amount)
                .sum();
            let rest = (reserved - spent).max(Decimal::ZERO);
            if let Some(g) = self.get_mut(id)
                && rest > Decimal::ZERO
            {
                g.held -= rest.min(g.held);
                w.change(id, |c| c.unheld += rest);
            }
        }
        w
    }

    /// The grants what `taken` took (out of `amount`) arrives as on the
    /// receiving wallet of a transfer: one per grant it took from, of the
    /// same kind, priority and deadline, naming it as its source; what
    /// overdrew the sender arrives as paid credit without a deadline.
    pub fn carried(&self, taken: &GrantWrites, amount: Decimal) -> Vec<(GrantSpec, Decimal)> {
        let mut parts: Vec<(GrantSpec, Decimal)> = Vec::new();
        for u in &taken.uses {
            if let Some((_, a)) = parts.iter_mut().find(|(s, _)| s.source == Some(u.grant_id)) {
                *a += u.amount;
                continue;
            }
            let Some(g) = self.0.iter().find(|g| g.id == u.grant_id) else {
                continue;
            };
            parts.push((
                GrantSpec {
                    kind: g.kind,
                    priority: g.priority,
                    expires_at: g.expires_at,
                    metadata: Metadata::default(),
                    source: Some(g.id),
                },
                u.amount,
            ));
        }
        let lent = amount - taken.used();
        if lent > Decimal::ZERO {
            parts.push((GrantSpec::paid(), lent));
        }
        parts
    }

    /// Plans reserving `amount` for a hold: free live credit in burn
    /// order; what it does not cover the overdraft backs.
    pub fn reserve(&mut self, amount: Decimal, at: DateTime<Utc>) -> Vec<(Uuid, Decimal)> {
        let mut taken = Vec::new();
        self.take_free(amount, at, |g, take| {
            g.held += take;
            taken.push((g.id, take));
        });
        taken
    }

    /// The grants' indexes in burn order.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.0.len()).collect();
        order.sort_by(|&a, &b| burn_order(&self.0[a], &self.0[b]));
        order
    }

    /// Takes up to `amount` of free credit of grants live at `at`, in burn
    /// order, through `take` (grant, amount taken from it); returns what
    /// they did not cover.
    fn take_free(
        &mut self,
        amount: Decimal,
        at: DateTime<Utc>,
        mut take: impl FnMut(&mut Grant, Decimal),
    ) -> Decimal {
        let mut left = amount;
        for i in self.order() {
            let g = &mut self.0[i];
            if left.is_zero() {
                break;
            }
            let part = g.free().min(left);
            if g.live_at(at) && part > Decimal::ZERO {
                take(g, part);
                left -= part;
            }
        }
        left
    }

    /// Frees what a hold reserved (`held`: grant, amount).
    pub fn unreserve(&mut self, held: &[(Uuid, Decimal)]) {
        for &(id, amount) in held {
            if let Some(g) = self.get_mut(id) {
                g.held -= amount.min(g.held);
            }
        }
    }

    /// Records that `grant`'s free credit expired (the movement is written
    /// by the caller).
    pub fn expire(&mut self, grant: Uuid) -> Option<GrantWrites> {
        let g = self.get_mut(grant)?;
        let amount = g.free();
        if amount <= Decimal::ZERO {
            return None;
        }
        g.remaining -= amount;
        let mut w = GrantWrites::default();
        w.change(grant, |c| {
            c.taken += amount;
            c.expired += amount;
        });
        w.uses.push(Use {
            grant_id: grant,
            amount,
            held: false,
        });
        Some(w)
    }
}

/// A grant a refunded movement took from, with what is left to give back
/// to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Restorable {
    pub grant_id: Uuid,
    pub left: Decimal,
    pub kind: GrantKind,
    pub priority: i16,
    pub expires_at: Option<DateTime<Utc>>,
    pub expired: bool,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn grant(n: u128, kind: GrantKind, remaining: &str, priority: i16, expires_in: Option<i64>) -> Grant {
        let base = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        Grant {
            id: Uuid::from_u128(n),
            kind,
            remaining: d(remaining),
            held: Decimal::ZERO,
            priority,
            expires_at: expires_in.map(|h| base + Duration::hours(h)),
            created_at: base + Duration::seconds(n as i64),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(1)
    }

    fn taken(w: &GrantWrites) -> Vec<(u128, Decimal)> {
        w.uses.iter().map(|u| (u.grant_id.as_u128(), u.amount)).collect()
    }

    #[test]
    fn burn_down_takes_priority_then_soonest_deadline_then_oldest() {
        let mut grants = Grants(vec![
            grant(1, GrantKind::Paid, "10", 50, None),
            grant(2, GrantKind::Granted, "3", 50, Some(48)),
            grant(3, GrantKind::Granted, "4", 50, Some(24)),
            grant(4, GrantKind::Granted, "5", 10, None),
            grant(5, GrantKind::Paid, "6", 50, None),
        ]);
        let w = grants.spend(d("20"), now(), &[]);
        assert_eq!(
            taken(&w),
            vec![(4, d("5")), (3, d("4")), (2, d("3")), (1, d("8"))],
            "priority 10 first; then the soonest deadline; no deadline last, oldest first"
        );
        assert_eq!(w.used(), d("20"));
        assert_eq!(grants.split(), (d("8"), Decimal::ZERO));
    }

    #[test]
    fn a_grant_past_its_deadline_is_never_spent_and_the_rest_overdraws() {
        let mut grants = Grants(vec![
            grant(1, GrantKind::Granted, "10", 0, Some(-1)),
            grant(2, GrantKind::Paid, "4", 50, None),
        ]);
        assert_eq!(grants.due(now()).len(), 1);
        let w = grants.spend(d("6"), now(), &[]);
        assert_eq!(
            taken(&w),
            vec![(2, d("4"))],
            "2.00 beyond every live grant is overdraft"
        );
        assert_eq!(
            grants.0[0].remaining,
            d("10"),
            "the expired grant is left to expire"
        );
    }

    #[test]
    fn a_capture_spends_its_own_reservation_first_even_past_the_deadline() {
        let mut g1 = grant(1, GrantKind::Granted, "5", 0, Some(-1));
        g1.held = d("5");
        let mut grants = Grants(vec![g1, grant(2, GrantKind::Paid, "10", 50, None)]);
        let w = grants.spend(d("7"), now(), &[(Uuid::from_u128(1), d("5"))]);
        assert_eq!(taken(&w), vec![(1, d("5")), (2, d("2"))]);
        assert!(w.uses[0].held && !w.uses[1].held);
        assert!(w.lent.is_empty());
    }

    #[test]
    fn spending_beyond_free_credit_takes_what_other_holds_reserved() {
        let mut g1 = grant(1, GrantKind::Paid, "10", 50, None);
        g1.held = d("8");
        let mut grants = Grants(vec![g1]);
        let w = grants.spend(d("5"), now(), &[]);
        assert_eq!(taken(&w), vec![(1, d("2")), (1, d("3"))]);
        assert_eq!(w.lent, vec![(Uuid::from_u128(1), d("3"))]);
        assert_eq!((grants.0[0].remaining, grants.0[0].held), (d("5"), d("5")));
    }

    #[test]
    fn a_credit_repays_the_overdraft_before_it_keeps_anything() {
        let mut grants = Grants::default();
        let spec = GrantSpec::paid();
        let w = grants.credit(d("-3"), now(), vec![(spec, d("10"))]);
        assert_eq!(w.created[0].amount, d("10"));
        assert_eq!(w.created[0].remaining, d("7"));
        assert_eq!(w.used(), d("3"));
        assert_eq!(grants.split(), (d("7"), Decimal::ZERO));
        let w = grants.credit(d("-20"), now(), vec![(GrantSpec::paid(), d("10"))]);
        assert_eq!(w.created[0].remaining, Decimal::ZERO);
        assert_eq!(grants.0.len(), 1, "a grant with nothing left is not live");
    }

    #[test]
    fn a_refund_gives_back_in_reverse_and_replaces_an_expired_grant() {
        let mut grants = Grants(vec![grant(2, GrantKind::Paid, "1", 50, None)]);
        let r = |n: u128, left: &str, expires_in: Option<i64>| Restorable {
            grant_id: Uuid::from_u128(n),
            left: d(left),
            kind: GrantKind::Granted,
            priority: 50,
            expires_at: expires_in.map(|h| now() + Duration::hours(h)),
            expired: false,
            created_at: now(),
        };
        let w = grants.restore(
            Decimal::ONE,
            d("9"),
            now(),
            vec![r(1, "5", Some(-1)), r(2, "3", None), r(3, "4", Some(5))],
        );
        assert_eq!(
            taken(&w),
            vec![(3, d("-4")), (2, d("-3"))],
            "the last taken comes back first"
        );
        assert_eq!(w.created.len(), 1, "the expired grant's share is a new grant");
        assert_eq!(w.created[0].amount, d("2"));
        assert_eq!(w.created[0].spec.source, Some(Uuid::from_u128(1)));
        assert!(
            !grants
                .0
                .iter()
                .find(|g| g.id == w.created[0].id)
                .unwrap()
                .live_at(now())
        );
        let (paid, granted) = grants.split();
        assert_eq!(paid + granted, d("10"));
    }

    #[test]
    fn a_hold_reserves_free_live_credit_in_burn_order() {
        let mut grants = Grants(vec![
            grant(1, GrantKind::Paid, "10", 50, None),
            grant(2, GrantKind::Granted, "3", 20, Some(1)),
            grant(3, GrantKind::Granted, "9", 0, Some(-1)),
        ]);
        let held = grants.reserve(d("5"), now());
        assert_eq!(
            held,
            vec![(Uuid::from_u128(2), d("3")), (Uuid::from_u128(1), d("2"))]
        );
        grants.unreserve(&held);
        assert!(grants.0.iter().all(|g| g.held.is_zero()));
    }
}
