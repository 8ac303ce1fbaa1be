//! Money: currencies with their ISO 4217 exponents, and strictly parsed
//! positive amounts. Amounts are `rust_decimal`, never floats, and travel as
//! plain decimal strings.

use std::fmt;

use rust_decimal::Decimal;
use validator::ValidationError;

use crate::store::StoreError;

/// Minor-unit exponents. ISO 4217 where it applies; `CREDIT` is the service's
/// own unit for prepaid credits.
const CURRENCIES: &[(&str, u32)] = &[
    ("CREDIT", 4),
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NGN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
];

/// Largest number of integer digits an amount may have.
pub const MAX_INTEGER_DIGITS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(code, exponent)| Currency { code, exponent })
            .ok_or(MoneyError::UnknownCurrency)
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn exponent(&self) -> u32 {
        self.exponent
    }

    /// Every supported currency.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES
            .iter()
            .map(|&(code, exponent)| Currency { code, exponent })
    }

    /// Renders an amount of this currency with exactly its number of
    /// decimals. A value with more significant decimals than the currency
    /// has is an error, never rounded.
    pub fn format(&self, value: Decimal) -> Result<String, MoneyError> {
        if value.normalize().scale() > self.exponent {
            return Err(MoneyError::TooManyDecimals {
                currency: self.code,
                exponent: self.exponent,
            });
        }
        // A zero reached through a negative (e.g. 0.00 − 0.00 stored as -0)
        // is shown as zero, never "-0.00".
        let mut v = if value.is_zero() { Decimal::ZERO } else { value };
        // Only adds or drops trailing zeros: the check above makes it exact.
        v.rescale(self.exponent);
        Ok(v.to_string())
    }
}

impl Currency {
    /// A currency read back from storage. Codes are checked on the way in,
    /// so an unknown one is a broken invariant.
    pub fn stored(code: &str) -> Result<Self, StoreError> {
        Currency::parse(code).map_err(|_| StoreError::broken(format!("unknown currency {code}")))
    }

    /// A stored amount (a balance, a total) as text. Amounts are checked
    /// against their currency on the way in, so one that does not fit is a
    /// broken invariant: answered as a failure, never rounded.
    pub fn text(&self, value: Decimal) -> Result<String, StoreError> {
        self.format(value)
            .map_err(|e| StoreError::broken(format!("stored amount {value}: {e}")))
    }
}

/// A figure for a report: an amount of a currency with its decimals, or,
/// where it does not fit the currency (only possible when the books are
/// damaged, which the report exists to show), the figure whole, never
/// rounded.
pub fn figure(currency: &str, value: Decimal) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| c.format(value).ok())
        .unwrap_or_else(|| value.normalize().to_string())
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a plain decimal string such as \"12.50\"")]
    Syntax,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must have at most {MAX_INTEGER_DIGITS} integer digits")]
    TooLarge,
    #[error("has more decimal places than {currency} allows ({exponent})")]
    TooManyDecimals { currency: &'static str, exponent: u32 },
    #[error("is not a supported currency code")]
    UnknownCurrency,
}

/// A decimal string checked for syntax and size, not yet tied to a currency:
/// the currency often comes from the wallet, known only inside the use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimalish {
    value: Decimal,
    decimals: u32,
}

impl Decimalish {
    /// Accepts `0`, `12`, `12.5`, `0.0001`; rejects signs, exponents, spaces,
    /// separators, leading zeros (`007`), a bare or trailing dot.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(MoneyError::Syntax);
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(MoneyError::Syntax);
        }
        if int.len() > MAX_INTEGER_DIGITS {
            return Err(MoneyError::TooLarge);
        }
        let decimals = frac.map_or(0, |f| f.len() as u32);
        // More fractional digits than any currency allows: refuse before
        // Decimal has to hold them (it keeps at most 28).
        if decimals > 18 {
            return Err(MoneyError::TooManyDecimals {
                currency: "any currency",
                exponent: 4,
            });
        }
        let value: Decimal = s.parse().map_err(|_| MoneyError::Syntax)?;
        Ok(Decimalish { value, decimals })
    }

    pub fn value(&self) -> Decimal {
        self.value
    }

    /// A non-negative amount in `currency` (e.g. an overdraft limit).
    pub fn in_currency(self, currency: Currency) -> Result<Decimal, MoneyError> {
        if self.decimals > currency.exponent {
            return Err(MoneyError::TooManyDecimals {
                currency: currency.code,
                exponent: currency.exponent,
            });
        }
        Ok(self.value)
    }
}

/// An amount of a request that is not valid in its currency, naming the
/// request's field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {error}")]
pub struct InvalidAmount {
    pub field: &'static str,
    pub error: MoneyError,
}

/// A strictly positive amount of a known currency, with no more decimals
/// than the currency has: only `new` and `parse` make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimalish, currency: Currency) -> Result<Self, MoneyError> {
        let amount = amount.in_currency(currency)?;
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        Ok(Money { amount, currency })
    }

    /// `raw`, the request's `field`, as an amount of `currency`: strictly
    /// parsed, never rounded (more decimals than the currency has is an
    /// error).
    pub fn parse(field: &'static str, raw: &str, currency: Currency) -> Result<Self, InvalidAmount> {
        Decimalish::parse(raw)
            .and_then(|d| Money::new(d, currency))
            .map_err(|error| InvalidAmount { field, error })
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// With exactly the currency's decimals; exact by construction.
    pub fn text(&self) -> String {
        let mut v = self.amount;
        v.rescale(self.currency.exponent);
        v.to_string()
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
}

/// Request validators (`#[validate(custom(function = …))]`): the syntax
/// of an amount before its currency is known, and currency codes.
pub mod validate {
    use super::*;

    fn invalid(code: &'static str, e: MoneyError) -> ValidationError {
        ValidationError::new(code).with_message(e.to_string().into())
    }

    /// A positive decimal string.
    pub fn amount(s: &str) -> Result<(), ValidationError> {
        let d = Decimalish::parse(s).map_err(|e| invalid("amount", e))?;
        if d.value().is_zero() {
            return Err(invalid("amount", MoneyError::NotPositive));
        }
        Ok(())
    }

    /// A non-negative decimal string (a limit).
    pub fn limit(s: &str) -> Result<(), ValidationError> {
        Decimalish::parse(s).map(|_| ()).map_err(|e| invalid("amount", e))
    }

    pub fn currency(s: &str) -> Result<(), ValidationError> {
        Currency::parse(s).map(|_| ()).map_err(|e| invalid("currency", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn exponents() {
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("BHD").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("CREDIT").unwrap().exponent(), 4);
        assert_eq!(Currency::parse("usd"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::parse("XYZ"), Err(MoneyError::UnknownCurrency));
    }

    #[test]
    fn parses_plain_decimals_only() {
        for ok in ["0", "1", "12.5", "12.50", "0.01", "999999999999999.99"] {
            assert!(Decimalish::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1e3", "1E3", " 1", "1 ", "1,000", "1_000", "007", "0x10",
            "NaN", "inf", "1.2.3", "١",
        ] {
            assert_eq!(Decimalish::parse(bad), Err(MoneyError::Syntax), "{bad:?}");
        }
        assert_eq!(Decimalish::parse("1000000000000000"), Err(MoneyError::TooLarge));
    }

    #[test]
    fn decimals_are_checked_against_the_currency_never_rounded() {
        let m = |s: &str, c: &str| Money::new(Decimalish::parse(s).unwrap(), Currency::parse(c).unwrap());
        assert!(m("1.23", "USD").is_ok());
        assert!(matches!(
            m("1.234", "USD"),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(m("1.0", "JPY"), Err(MoneyError::TooManyDecimals { .. })));
        assert!(m("1.234", "BHD").is_ok());
        assert!(m("0.0001", "CREDIT").is_ok());
        assert!(matches!(
            m("0.00001", "CREDIT"),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert_eq!(m("0", "USD"), Err(MoneyError::NotPositive));
        assert_eq!(m("0.00", "USD"), Err(MoneyError::NotPositive));
    }

    #[test]
    fn formats_with_the_currency_exponent() {
        assert_eq!(usd().format(Decimal::new(5, 0)).unwrap(), "5.00");
        assert_eq!(usd().format(Decimal::new(-1250, 3)).unwrap(), "-1.25");
        assert_eq!(usd().format(Decimal::new(12_0000, 4)).unwrap(), "12.00");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.format(Decimal::new(500, 0)).unwrap(), "500");
        assert_eq!(
            Currency::parse("CREDIT")
                .unwrap()
                .format(Decimal::new(15, 1))
                .unwrap(),
            "1.5000"
        );
    }

    #[test]
    fn a_negative_zero_is_shown_as_zero() {
        let negative_zero = Decimal::new(-0, 2) - Decimal::new(0, 2);
        let minus = -Decimal::new(0, 2);
        for z in [negative_zero, minus] {
            assert_eq!(usd().format(z).unwrap(), "0.00", "{z:?}");
        }
        assert_eq!(figure("USD", -Decimal::new(0, 4)), "0.00");
    }

    #[test]
    fn parsed_money_keeps_its_currency_and_prints_its_decimals() {
        let m = Money::parse("amount", "7.5", usd()).unwrap();
        assert_eq!(m.text(), "7.50");
        assert_eq!(m.currency(), usd());
        let e = Money::parse("limit", "7.555", usd()).unwrap_err();
        assert_eq!(e.field, "limit");
        assert!(matches!(e.error, MoneyError::TooManyDecimals { .. }));
        assert!(
            Currency::stored("XYZ").is_err(),
            "an unknown stored code is a broken invariant"
        );
        assert!(usd().text(Decimal::new(1005, 3)).is_err(), "never rounded");
    }

    #[test]
    fn formatting_never_rounds() {
        for (value, currency) in [(Decimal::new(1005, 3), "USD"), (Decimal::new(5, 1), "JPY")] {
            let c = Currency::parse(currency).unwrap();
            assert!(
                matches!(c.format(value), Err(MoneyError::TooManyDecimals { .. })),
                "{value} {currency}"
            );
        }
    }

    #[test]
    fn round_trips_every_valid_amount_shape() {
        // Exhaustive over a grid of shapes rather than random: every digit count.
        for int_digits in 1..=MAX_INTEGER_DIGITS {
            for dec in 0..=4u32 {
                let s = format!(
                    "{}{}",
                    "9".repeat(int_digits),
                    if dec == 0 {
                        String::new()
                    } else {
                        format!(".{}", "7".repeat(dec as usize))
                    }
                );
                let d = Decimalish::parse(&s).unwrap();
                let c = Currency::parse("CREDIT").unwrap();
                let money = Money::new(d, c).unwrap();
                assert_eq!(money.amount().to_string(), s);
            }
        }
    }
}
