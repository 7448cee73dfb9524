//! Money as integer minor units of an ISO 4217 currency.
//!
//! `Money { amount: 1999, currency: USD }` is $19.99. Amounts are `i64` minor units bounded by
//! [`Money::MAX_AMOUNT`], so sums of many lines cannot overflow silently: every arithmetic step is
//! checked and mixing currencies is an error, not a conversion.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code together with its number of minor-unit digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    exponent: u8,
}

/// Active ISO 4217 codes and their minor-unit exponents (ISO 4217 list one). Codes without a
/// minor unit (JPY, KRW, …) have exponent 0; Bahraini, Jordanian, Kuwaiti, Libyan, Omani and
/// Tunisian dinars use 3.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// The error for a string that is not an active ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ISO 4217 currency code (three upper-case letters such as USD or EUR)")]
pub struct UnknownCurrency(pub String);

impl Currency {
    pub const USD: Currency = Currency { code: "USD", exponent: 2 };
    pub const EUR: Currency = Currency { code: "EUR", exponent: 2 };

    /// Looks a code up in the ISO 4217 table; codes are case-sensitive, as in ISO 4217.
    pub fn parse(code: &str) -> Result<Self, UnknownCurrency> {
        CURRENCIES
            .iter()
            .find(|(candidate, _)| *candidate == code)
            .map(|&(code, exponent)| Currency { code, exponent })
            .ok_or_else(|| UnknownCurrency(code.to_owned()))
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Number of minor-unit digits: 2 for USD (cents), 0 for JPY, 3 for KWD.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Why a money value or calculation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0} is outside the supported range of ±{max} minor units", max = Money::MAX_AMOUNT)]
    OutOfRange(i128),
    #[error("amount must not be negative (got {0})")]
    Negative(i64),
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// An amount of money in integer minor units (cents for USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

impl Money {
    /// The largest magnitude we store: 10^15 minor units (ten trillion dollars). Far beyond any
    /// order, and small enough that adding thousands of such values stays inside `i64`.
    pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

    pub fn new(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount.unsigned_abs() > Self::MAX_AMOUNT.unsigned_abs() {
            return Err(MoneyError::OutOfRange(i128::from(amount)));
        }
        Ok(Self { amount, currency })
    }

    /// A price: like [`Money::new`] but zero or more.
    pub fn price(amount: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount < 0 {
            return Err(MoneyError::Negative(amount));
        }
        Self::new(amount, currency)
    }

    pub fn zero(currency: Currency) -> Self {
        Self { amount: 0, currency }
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Self::from_wide(i128::from(self.amount) + i128::from(other.amount), self.currency)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Self::from_wide(i128::from(self.amount) - i128::from(other.amount), self.currency)
    }

    pub fn checked_mul(self, quantity: u32) -> Result<Money, MoneyError> {
        Self::from_wide(i128::from(self.amount) * i128::from(quantity), self.currency)
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    fn from_wide(amount: i128, currency: Currency) -> Result<Money, MoneyError> {
        let narrow = i64::try_from(amount).map_err(|_| MoneyError::OutOfRange(amount))?;
        Money::new(narrow, currency).map_err(|_| MoneyError::OutOfRange(amount))
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            amount: i64,
            currency: Currency,
        }
        let raw = Raw::deserialize(deserializer)?;
        Money::new(raw.amount, raw.currency).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Money {
    /// `19.99 USD`, `500 JPY`: for logs and messages, never for arithmetic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exponent = u32::from(self.currency.exponent);
        if exponent == 0 {
            return write!(f, "{} {}", self.amount, self.currency);
        }
        let scale = 10_u64.pow(exponent);
        let sign = if self.amount < 0 { "-" } else { "" };
        let magnitude = self.amount.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / scale,
            magnitude % scale,
            self.currency,
            width = exponent as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn currencies_know_their_minor_units() {
        assert_eq!(Currency::parse("USD").map(|c| c.exponent()), Ok(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.exponent()), Ok(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.exponent()), Ok(3));
    }

    #[test]
    fn unknown_or_lower_case_currency_codes_are_refused() {
        assert!(Currency::parse("XYZ").is_err());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn adding_money_of_one_currency_sums_minor_units() {
        assert_eq!(usd(1999).checked_add(usd(1)), Ok(usd(2000)));
        assert_eq!(usd(1999).checked_mul(3), Ok(usd(5997)));
        assert_eq!(usd(500).checked_sub(usd(1999)), Ok(usd(-1499)));
    }

    #[test]
    fn mixing_currencies_is_an_error_not_a_conversion() {
        let eur = Money::new(100, Currency::EUR).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(usd(100).checked_add(eur), Err(MoneyError::CurrencyMismatch(Currency::USD, Currency::EUR)));
    }

    #[test]
    fn arithmetic_past_the_bound_is_refused_instead_of_wrapping() {
        let big = usd(Money::MAX_AMOUNT);
        assert!(big.checked_add(usd(1)).is_err());
        assert!(big.checked_mul(u32::MAX).is_err());
        assert!(Money::new(i64::MAX, Currency::USD).is_err());
    }

    #[test]
    fn prices_cannot_be_negative() {
        assert_eq!(Money::price(-1, Currency::USD), Err(MoneyError::Negative(-1)));
        assert!(Money::price(0, Currency::USD).is_ok());
    }

    #[test]
    fn money_reads_and_writes_the_api_json_shape() {
        let parsed: Money =
            serde_json::from_str(r#"{"amount":1999,"currency":"USD"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed, usd(1999));
        assert_eq!(serde_json::to_value(parsed).ok(), Some(serde_json::json!({"amount": 1999, "currency": "USD"})));
        assert!(serde_json::from_str::<Money>(r#"{"amount":19.99,"currency":"USD"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"ABC"}"#).is_err());
    }

    #[test]
    fn display_places_the_decimal_point_by_currency() {
        assert_eq!(usd(1999).to_string(), "19.99 USD");
        assert_eq!(usd(-5).to_string(), "-0.05 USD");
        let yen = Money::new(500, Currency::parse("JPY").unwrap_or(Currency::USD));
        assert_eq!(yen.map(|m| m.to_string()), Ok("500 JPY".to_owned()));
    }
}
