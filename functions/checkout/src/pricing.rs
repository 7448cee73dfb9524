//! Totals by configuration: shipping methods with flat rates per currency (free over a
//! threshold), tax rates by country in basis points, and promotions (a percentage off a
//! category, or a fixed amount off above a threshold; with or without a coupon code, optionally
//! limited in redemptions). The shop changes these in `PRICING_CONFIG`, not in code; the
//! default is `pricing.default.json`.
//!
//! All arithmetic is in integer minor units; percentages and tax round half up, once per order.
//! Where card payments cannot take every minor unit (Stripe wants the three-decimal dinars to end
//! in 0, and whole ariary), `total_rounding` rounds the total, half up, to a multiple of an
//! increment and shows the difference as `rounding` — the cash rounding shops use. A card cannot
//! be charged less than a minimum per currency (Stripe's: USD 0.50, GBP 0.30, …), so
//! `minimum_total` refuses an order whose total is above zero but below it, at placement, where
//! the customer can still add to the cart ([`PricingConfig::chargeable`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use domain_events::queries::PricedLine;
use kernel::{Currency, Money, MoneyError};

/// The shop's pricing configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PricingConfig {
    pub shipping_methods: Vec<ShippingMethod>,
    /// ISO 3166-1 alpha-2 country → VAT/sales tax in basis points (1900 = 19%). Absent: no tax.
    #[serde(default)]
    pub tax_rates_bps: BTreeMap<String, u32>,
    #[serde(default)]
    pub promotions: Vec<Promotion>,
    /// Currency code → the increment (in minor units) totals are rounded to, half up.
    #[serde(default)]
    pub total_rounding: BTreeMap<String, i64>,
    /// Currency code → the least total (in minor units) an order that has something to pay may
    /// have: the smallest card payment the shop's Stripe account takes in that currency. A zero
    /// total is always placed (nothing to pay). Absent: no minimum.
    #[serde(default)]
    pub minimum_total: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingMethod {
    pub id: String,
    pub name: String,
    /// Currency code → flat rate in minor units.
    pub rates: BTreeMap<String, i64>,
    /// Currency code → merchandise total (after discounts) from which shipping is free.
    #[serde(default)]
    pub free_over: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Promotion {
    /// `None`: applies automatically. `Some`: only with this coupon code.
    pub code: Option<String>,
    pub description: String,
    #[serde(flatten)]
    pub rule: Rule,
    /// Coupon codes only: how many orders may use it in all.
    #[serde(default)]
    pub max_redemptions: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    PercentOffCategory { category: String, percent: u32 },
    AmountOffOver { currency: String, threshold: i64, amount_off: i64 },
}

/// A configuration the function refuses to start with.
#[derive(Debug, thiserror::Error)]
#[error("invalid pricing configuration: {0}")]
pub struct ConfigProblem(pub String);

impl PricingConfig {
    pub const DEFAULT: &'static str = include_str!("pricing.default.json");

    pub fn parse(json: &str) -> Result<Self, ConfigProblem> {
        let config: Self = serde_json::from_str(json).map_err(|e| ConfigProblem(e.to_string()))?;
        for method in &config.shipping_methods {
            for (currency, amount) in method.rates.iter().chain(&method.free_over) {
                Currency::parse(currency).map_err(|e| ConfigProblem(format!("{}: {e}", method.id)))?;
                if *amount < 0 {
                    return Err(ConfigProblem(format!("{}: negative amount", method.id)));
                }
            }
        }
        for (currency, increment) in &config.total_rounding {
            Currency::parse(currency).map_err(|e| ConfigProblem(format!("total_rounding: {e}")))?;
            if !(1..=1_000_000).contains(increment) {
                return Err(ConfigProblem(format!(
                    "total_rounding: {currency} must round to 1 to 1000000 minor units"
                )));
            }
        }
        for (currency, minimum) in &config.minimum_total {
            let currency = Currency::parse(currency).map_err(|e| ConfigProblem(format!("minimum_total: {e}")))?;
            // Checked here so that `chargeable` cannot fail on the configuration.
            match Money::new(*minimum, currency) {
                Ok(minimum) if minimum.amount() >= 0 => {}
                _ => {
                    return Err(ConfigProblem(format!("minimum_total: {currency} must be 0 to {}", Money::MAX_AMOUNT)));
                }
            }
        }
        if config.tax_rates_bps.values().any(|bps| *bps > 10_000) {
            return Err(ConfigProblem("a tax rate is above 100%".to_owned()));
        }
        for promotion in &config.promotions {
            match &promotion.rule {
                Rule::PercentOffCategory { percent, .. } if *percent > 100 => {
                    return Err(ConfigProblem(format!("{}: more than 100% off", promotion.description)));
                }
                Rule::AmountOffOver { currency, .. } => {
                    Currency::parse(currency).map_err(|e| ConfigProblem(e.to_string()))?;
                }
                Rule::PercentOffCategory { .. } => {}
            }
        }
        Ok(config)
    }

    /// Refuses a `total` with something to pay that is below its currency's `minimum_total`: no
    /// card payment that small can be taken, so the order would only be cancelled at payment.
    pub fn chargeable(&self, total: Money) -> Result<(), PricingError> {
        let currency = total.currency();
        match self.minimum_total.get(currency.code()) {
            Some(&minimum) if total.amount() > 0 && total.amount() < minimum => {
                Err(PricingError::BelowMinimum { total, minimum: Money::new(minimum, currency)? })
            }
            _ => Ok(()),
        }
    }

    /// The coupon promotion with `code` (codes compare case-insensitively).
    pub fn coupon(&self, code: &str) -> Option<&Promotion> {
        self.promotions.iter().find(|p| p.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(code)))
    }
}

/// An order's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub subtotal: Money,
    pub discount: Money,
    pub shipping: Money,
    pub tax: Money,
    /// Added to reach a total the currency can be charged in (negative when rounded down);
    /// absent when nothing was rounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<Money>,
    pub total: Money,
    /// Descriptions of the promotions applied.
    pub promotions: Vec<String>,
}

/// Why totals could not be computed for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("there is no shipping method `{0}`")]
    UnknownShippingMethod(String),
    #[error("shipping method `{method}` is not available for orders in {currency}")]
    ShippingUnavailable { method: String, currency: Currency },
    #[error("there is no promo code `{0}`")]
    UnknownPromoCode(String),
    #[error("the cart is empty")]
    Empty,
    #[error("SKU {0} is no longer sold")]
    NotSold(String),
    #[error("the order total {total} is below {minimum}, the smallest card payment the shop can take; add to the cart")]
    BelowMinimum { total: Money, minimum: Money },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// `amount × numerator / denominator`, rounded half up, in i128 so nothing overflows.
fn share(amount: Money, numerator: u32, denominator: u32) -> Result<Money, MoneyError> {
    let scaled =
        (i128::from(amount.amount()) * i128::from(numerator) + i128::from(denominator / 2)) / i128::from(denominator);
    let scaled = i64::try_from(scaled).map_err(|_| MoneyError::OutOfRange(scaled))?;
    Money::new(scaled, amount.currency())
}

/// Computes the totals of `lines` shipped with `method` to `country`, with an optional coupon.
pub fn totals(
    config: &PricingConfig,
    lines: &[PricedLine],
    method: &str,
    country: &str,
    coupon: Option<&str>,
) -> Result<Totals, PricingError> {
    priced(config, lines, method, country, coupon).map(|(totals, _)| totals)
}

/// Splits `off` over the lines of `amounts` marked `eligible`, in proportion to their amounts:
/// each takes the floor of its share, and the minor units left go one each to the largest
/// remainders (earlier lines first on a tie), so the shares add up to `off` exactly.
pub fn split(off: i64, amounts: &[i64], eligible: impl Fn(usize) -> bool) -> Vec<i64> {
    let weight = |i: usize| if eligible(i) { i128::from(amounts[i].max(0)) } else { 0 };
    let total: i128 = (0..amounts.len()).map(weight).sum();
    let mut shares = vec![0_i64; amounts.len()];
    if total == 0 || off <= 0 {
        return shares;
    }
    let mut remainders = Vec::with_capacity(amounts.len());
    let mut given: i128 = 0;
    for (i, share) in shares.iter_mut().enumerate() {
        let exact = i128::from(off) * weight(i);
        let floor = exact / total;
        *share = i64::try_from(floor).unwrap_or(i64::MAX);
        given += floor;
        remainders.push((exact % total, i));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let left = usize::try_from(i128::from(off) - given).unwrap_or(0);
    for (_, i) in remainders.into_iter().filter(|(_, i)| weight(*i) > 0).take(left) {
        shares[i] += 1;
    }
    shares
}

/// [`totals`], and each line's share of the discount (in the order of `lines`): a category
/// promotion's amount is split over that category's lines, an order promotion's over every line,
/// each in proportion to the lines' amounts ([`split`]). A line's share never exceeds its amount.
/// Kept on the order lines, it says how much of each line a return pays back.
pub fn priced(
    config: &PricingConfig,
    lines: &[PricedLine],
    method: &str,
    country: &str,
    coupon: Option<&str>,
) -> Result<(Totals, Vec<Money>), PricingError> {
    let first = lines.first().ok_or(PricingError::Empty)?;
    let currency =
        first.offer.as_ref().ok_or_else(|| PricingError::NotSold(first.sku.to_string()))?.unit_price.currency();
    let mut subtotal = Money::zero(currency);
    let mut by_category: BTreeMap<&str, Money> = BTreeMap::new();
    for line in lines {
        let offer = line.offer.as_ref().ok_or_else(|| PricingError::NotSold(line.sku.to_string()))?;
        let amount = offer.unit_price.checked_mul(line.quantity)?;
        subtotal = subtotal.checked_add(amount)?;
        let category = by_category.entry(offer.category.as_str()).or_insert(Money::zero(currency));
        *category = category.checked_add(amount)?;
    }

    let shipping_method = config
        .shipping_methods
        .iter()
        .find(|m| m.id == method)
        .ok_or_else(|| PricingError::UnknownShippingMethod(method.to_owned()))?;

    let mut applied: Vec<&Promotion> = config.promotions.iter().filter(|p| p.code.is_none()).collect();
    if let Some(code) = coupon {
        applied.push(config.coupon(code).ok_or_else(|| PricingError::UnknownPromoCode(code.to_owned()))?);
    }
    let mut discount = Money::zero(currency);
    let mut descriptions = Vec::new();
    // Every line has an offer: the loop above returned `NotSold` otherwise.
    let amounts: Vec<i64> = lines
        .iter()
        .map(|line| line.offer.as_ref().map_or(0, |o| o.unit_price.amount().saturating_mul(i64::from(line.quantity))))
        .collect();
    let categories: Vec<&str> =
        lines.iter().map(|line| line.offer.as_ref().map_or("", |o| o.category.as_str())).collect();
    let mut line_discounts = vec![0_i64; lines.len()];
    for promotion in applied {
        let (off, shares) = match &promotion.rule {
            Rule::PercentOffCategory { category, percent } => match by_category.get(category.as_str()) {
                Some(amount) => {
                    let off = share(*amount, *percent, 100)?;
                    (off, split(off.amount(), &amounts, |i| categories[i] == category.as_str()))
                }
                None => continue,
            },
            Rule::AmountOffOver { currency: code, threshold, amount_off } => {
                if code != currency.code() || subtotal.amount() < *threshold {
                    continue;
                }
                let off = Money::new(*amount_off, currency)?;
                (off, split(off.amount(), &amounts, |_| true))
            }
        };
        discount = discount.checked_add(off)?;
        for (total, share) in line_discounts.iter_mut().zip(shares) {
            *total = total.saturating_add(share);
        }
        descriptions.push(promotion.description.clone());
    }
    let line_discounts = line_discounts
        .iter()
        .zip(&amounts)
        .map(|(off, amount)| Money::new((*off).min(*amount).max(0), currency))
        .collect::<Result<Vec<_>, _>>()?;
    // A discount never makes merchandise cost less than nothing.
    if discount.amount() > subtotal.amount() {
        discount = subtotal;
    }
    let merchandise = subtotal.checked_sub(discount)?;

    let rate = shipping_method
        .rates
        .get(currency.code())
        .ok_or(PricingError::ShippingUnavailable { method: method.to_owned(), currency })?;
    let free = shipping_method.free_over.get(currency.code()).is_some_and(|free| merchandise.amount() >= *free);
    let shipping = if free { Money::zero(currency) } else { Money::new(*rate, currency)? };

    let taxable = merchandise.checked_add(shipping)?;
    let tax = share(taxable, config.tax_rates_bps.get(country).copied().unwrap_or(0), 10_000)?;
    let exact = taxable.checked_add(tax)?;
    let rounding = match config.total_rounding.get(currency.code()) {
        Some(&increment) if increment > 1 => {
            let rest = exact.amount().rem_euclid(increment);
            let adjustment = if rest * 2 >= increment { increment - rest } else { -rest };
            (adjustment != 0).then(|| Money::new(adjustment, currency)).transpose()?
        }
        _ => None,
    };
    let total = match rounding {
        Some(adjustment) => exact.checked_add(adjustment)?,
        None => exact,
    };
    Ok((Totals { subtotal, discount, shipping, tax, rounding, total, promotions: descriptions }, line_discounts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain_events::queries::Offer;
    use kernel::{ProductId, Sku};

    fn config() -> PricingConfig {
        PricingConfig::parse(PricingConfig::DEFAULT).unwrap()
    }

    fn line(sku: &str, category: &str, amount: i64, quantity: u32) -> PricedLine {
        PricedLine {
            sku: Sku::parse(sku).unwrap(),
            quantity,
            offer: Some(Offer {
                product_id: ProductId::new(),
                title: sku.into(),
                category: category.into(),
                unit_price: Money::new(amount, Currency::USD).unwrap(),
            }),
        }
    }

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD).unwrap()
    }

    #[test]
    fn the_default_configuration_is_valid_and_offers_standard_and_express() {
        let ids: Vec<_> = config().shipping_methods.iter().map(|m| m.id.clone()).collect();
        assert_eq!(ids, vec!["standard", "express"]);
    }

    #[test]
    fn totals_add_shipping_and_tax_by_country() {
        let totals = totals(&config(), &[line("A", "mugs", 1000, 2)], "express", "DE", None).unwrap();
        assert_eq!(totals.subtotal, usd(2000));
        assert_eq!(totals.shipping, usd(1500));
        // 19% of 35.00 = 6.65
        assert_eq!(totals.tax, usd(665));
        assert_eq!(totals.total, usd(4165));
    }

    #[test]
    fn standard_shipping_is_free_over_the_threshold() {
        let totals = totals(&config(), &[line("A", "mugs", 6000, 1)], "standard", "US", None).unwrap();
        assert_eq!(totals.shipping, usd(0));
        assert_eq!(totals.total, usd(6000));
    }

    #[test]
    fn a_category_coupon_takes_its_percentage_off_that_category_only() {
        let lines = [line("T", "t-shirts", 1999, 1), line("M", "mugs", 1000, 1)];
        let totals = totals(&config(), &lines, "express", "US", Some("welcome10")).unwrap();
        // 10% of 19.99 = 2.00 (half up)
        assert_eq!(totals.discount, usd(200));
        assert_eq!(totals.promotions, vec!["10% off t-shirts".to_owned()]);
    }

    #[test]
    fn automatic_promotions_apply_without_a_code_over_their_threshold() {
        let totals = totals(&config(), &[line("A", "mugs", 25000, 1)], "express", "US", None).unwrap();
        assert_eq!(totals.discount, usd(1000));
    }

    fn kwd(amount: i64) -> Money {
        Money::new(amount, Currency::parse("KWD").unwrap()).unwrap()
    }

    #[test]
    fn dinar_totals_are_rounded_to_the_ten_fils_a_card_can_be_charged() {
        let mut config = config();
        config.shipping_methods[1].rates.insert("KWD".into(), 2_000);
        config.tax_rates_bps.insert("KW".into(), 1_000);
        let dinar_line = |amount| PricedLine {
            offer: line("A", "mugs", 0, 1).offer.map(|offer| Offer { unit_price: kwd(amount), ..offer }),
            ..line("A", "mugs", 0, 1)
        };

        // 5.000 + 2.000 shipping, 10% tax = 0.700: 7.700, already chargeable.
        let even = totals(&config, &[dinar_line(5_000)], "express", "KW", None).unwrap();
        // 5.123 + 2.000, tax 0.712 (half up): 7.835 → 7.840.
        let up = totals(&config, &[dinar_line(5_123)], "express", "KW", None).unwrap();
        // 5.111 + 2.000, tax 0.711: 7.822 → 7.820.
        let down = totals(&config, &[dinar_line(5_111)], "express", "KW", None).unwrap();

        assert_eq!((even.rounding, even.total), (None, kwd(7_700)));
        assert_eq!((up.rounding, up.total), (Some(kwd(5)), kwd(7_840)));
        assert_eq!((down.rounding, down.total), (Some(kwd(-2)), kwd(7_820)));
    }

    #[test]
    fn a_rounding_increment_must_be_positive_and_for_a_real_currency() {
        for bad in [r#"{"XYZ": 10}"#, r#"{"KWD": 0}"#, r#"{"KWD": -10}"#] {
            let json = format!(r#"{{"shipping_methods": [], "total_rounding": {bad}}}"#);
            assert!(PricingConfig::parse(&json).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_methods_codes_and_unsold_lines_are_errors() {
        let lines = [line("A", "mugs", 1000, 1)];
        assert_eq!(
            totals(&config(), &lines, "drone", "US", None),
            Err(PricingError::UnknownShippingMethod("drone".into()))
        );
        assert_eq!(
            totals(&config(), &lines, "express", "US", Some("NOPE")),
            Err(PricingError::UnknownPromoCode("NOPE".into()))
        );
        let unsold = [PricedLine { sku: Sku::parse("GONE").unwrap(), quantity: 1, offer: None }];
        assert_eq!(totals(&config(), &unsold, "express", "US", None), Err(PricingError::NotSold("GONE".into())));
        assert_eq!(totals(&config(), &[], "express", "US", None), Err(PricingError::Empty));
    }

    #[test]
    fn a_total_with_something_to_pay_below_the_currencys_minimum_is_refused_and_zero_is_not() {
        let config = config();
        let gbp = |amount| Money::new(amount, Currency::parse("GBP").unwrap()).unwrap();

        assert_eq!(config.chargeable(usd(49)), Err(PricingError::BelowMinimum { total: usd(49), minimum: usd(50) }));
        assert_eq!(config.chargeable(usd(50)), Ok(()));
        assert_eq!(config.chargeable(usd(0)), Ok(()), "nothing to pay: placed without a payment");
        assert_eq!(config.chargeable(gbp(30)), Ok(()));
        assert!(config.chargeable(gbp(29)).is_err());
        let yen = Money::new(1, Currency::parse("JPY").unwrap()).unwrap();
        assert_eq!(config.chargeable(yen), Ok(()), "no minimum configured for JPY");
        let said = PricingError::BelowMinimum { total: usd(49), minimum: usd(50) }.to_string();
        assert!(said.contains("0.49 USD is below 0.50 USD"), "{said}");
    }

    #[test]
    fn a_minimum_total_in_an_unknown_currency_or_below_zero_is_refused_at_start() {
        for bad in [r#"{"XYZ": 50}"#, r#"{"USD": -1}"#, r#"{"USD": 1000000000000000000}"#] {
            let json = format!(r#"{{"shipping_methods": [], "minimum_total": {bad}}}"#);
            assert!(PricingConfig::parse(&json).unwrap_err().0.starts_with("minimum_total"), "{bad}");
        }
    }
}
