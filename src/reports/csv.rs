//! The reconciliation as one CSV table (RFC 4180): a row per wallet, then a
//! row per check, then where it was read. Opens as is in a spreadsheet.

use super::Reconciliation;

pub const HEADER: [&str; 12] = [
    "row",
    "name",
    "customer_ref",
    "currency",
    "opening_balance",
    "credits",
    "debits",
    "closing_balance",
    "journal_balance",
    "stored_balance",
    "drift",
    "ok",
];

/// A field quoted when it must be: a comma, a quote or a line break inside,
/// or a leading character a spreadsheet would read as a formula (then
/// prefixed with `'`).
fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && value.parse::<rust_decimal::Decimal>().is_err()
    {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn line(out: &mut String, fields: &[&str]) {
    let row: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&row.join(","));
    out.push_str("\r\n");
}

pub fn reconciliation(r: &Reconciliation) -> String {
    let mut out = String::new();
    line(&mut out, &HEADER);
    for w in &r.wallets {
        line(
            &mut out,
            &[
                "wallet",
                &w.wallet_id.to_string(),
                &w.customer_ref,
                &w.currency,
                &w.opening_balance,
                &w.credits,
                &w.debits,
                &w.closing_balance,
                &w.journal_balance,
                &w.stored_balance,
                &w.drift,
                if w.ok { "true" } else { "false" },
            ],
        );
    }
    let blank = "";
    for (name, ok) in r.checks().into_iter().chain([("report", r.ok)]) {
        let ok = if ok { "true" } else { "false" };
        line(
            &mut out,
            &[
                "check", name, blank, blank, blank, blank, blank, blank, blank, blank, blank, ok,
            ],
        );
    }
    // Where the figures were read and how fresh they are.
    let source = r.read_from.describe(r.replica_lag_ms);
    let fresh = if r.provisional { "provisional" } else { "final" };
    line(
        &mut out,
        &[
            "source", &source, blank, blank, blank, blank, blank, blank, blank, blank, blank, fresh,
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("-12.50"), "-12.50");
        assert_eq!(field("\tcmd"), "'\tcmd");
        assert!(field("\r=1").starts_with("\"'\r"));
    }
}
