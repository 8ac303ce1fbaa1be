//! The reconciliation as a plain-text table for a terminal: the header,
//! a row per wallet with its drift marked, the trial balance, the verdict.

use std::fmt::Write;

use super::Reconciliation;

pub fn reconciliation(r: &Reconciliation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "reconciliation of shop {} from {} to {}{}, read from the {}",
        r.shop_id,
        r.from,
        r.to,
        if r.provisional { " (provisional)" } else { "" },
        r.read_from.describe(r.replica_lag_ms)
    );
    let _ = writeln!(
        out,
        "{:<38}{:>6}{:>16}{:>16}{:>16}{:>16}{:>16}  ",
        "wallet", "cur", "opening", "credits", "debits", "closing", "drift"
    );
    for w in &r.wallets {
        let _ = writeln!(
            out,
            "{:<38}{:>6}{:>16}{:>16}{:>16}{:>16}{:>16}  {}",
            w.wallet_id,
            w.currency,
            w.opening_balance,
            w.credits,
            w.debits,
            w.closing_balance,
            w.drift,
            if w.ok { "" } else { "<< DRIFT" }
        );
    }
    for t in &r.trial_balance {
        let _ = writeln!(
            out,
            "trial balance {}: total {} ({})",
            t.currency,
            t.total,
            if t.balanced { "balanced" } else { "NOT BALANCED" }
        );
    }
    let _ = writeln!(
        out,
        "{}",
        if r.ok {
            "all checks passed".to_owned()
        } else {
            format!("FAILED: {}", r.failed_checks.join(", "))
        }
    );
    out
}
