//! The product model and the rules a product must satisfy.
//!
//! An admin submits a [`ProductInput`] (plain JSON types, so every field can be checked and
//! reported at once); [`ProductInput::parse`] turns it into [`ProductDetails`], which is valid by
//! construction. A stored [`Product`] is those details plus identity, version and timestamps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kernel::{Currency, FieldError, Money, ProductId, Sku};

/// Limits that keep one product inside a single DynamoDB transaction (100 actions): a full
/// replace writes the product, up to 2×25 SKU claims, 2 slug claims, 2×20 keyword entries,
/// 2 category counters and 1 outbox event = 96 actions.
pub const MAX_VARIANTS: usize = 25;
pub const MAX_KEYWORDS: usize = 20;
pub const MAX_IMAGES: usize = 10;
pub const MAX_OPTIONS: usize = 3;
pub const MAX_OPTION_VALUES: usize = 50;

/// Where a product is in its life: only `active` products are visible to shoppers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Draft,
    Active,
    Archived,
}

macro_rules! slug_type {
    ($(#[$meta:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            /// Lower-case words of letters and digits joined by single hyphens: `summer-tees-2026`.
            pub fn parse(raw: &str) -> Result<Self, String> {
                let well_formed = !raw.is_empty()
                    && raw.len() <= $max
                    && raw.split('-').all(|word| {
                        !word.is_empty()
                            && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                    });
                if well_formed {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(format!(
                        "`{raw}` is not a valid {}: use 1 to {} lower-case letters and digits in words joined by single hyphens",
                        $what, $max
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(raw: String) -> Result<Self, String> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_type!(
    /// A product's URL name, unique across the catalog.
    Slug,
    "slug",
    100
);
slug_type!(
    /// A category, by its URL name (`t-shirts`).
    Category,
    "category",
    50
);

/// A product option such as size, with the values a variant may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

/// One sellable variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    pub sku: Sku,
    /// Option name → value, one entry for each of the product's options.
    pub options: BTreeMap<String, String>,
    pub price: Money,
}

/// Everything an admin controls about a product, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub slug: Slug,
    pub title: String,
    pub description: String,
    pub category: Category,
    pub status: Status,
    pub images: Vec<String>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<Variant>,
}

/// A stored product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    #[serde(flatten)]
    pub details: ProductDetails,
    /// Starts at 1, +1 on every change; the `ETag` and `If-Match` value.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Product {
    pub fn is_active(&self) -> bool {
        self.details.status == Status::Active
    }

    pub fn skus(&self) -> BTreeSet<&Sku> {
        self.details.variants.iter().map(|variant| &variant.sku).collect()
    }

    /// The words this product is found by, when it is active (see [`keywords`]).
    pub fn keywords(&self) -> BTreeSet<String> {
        let option_values = self.details.options.iter().flat_map(|option| option.values.iter().map(String::as_str));
        keywords(
            std::iter::once(self.details.title.as_str())
                .chain(std::iter::once(self.details.category.as_str()))
                .chain(option_values),
        )
    }
}

/// Splits text into search words: lower case, letters and digits only, at least two characters,
/// with a plain English plural folded (`shirts` → `shirt`, but `dress` stays), title words first,
/// at most [`MAX_KEYWORDS`] distinct words.
pub fn keywords<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    for text in texts {
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if words.len() == MAX_KEYWORDS {
                return words;
            }
            let word = normalize_word(word);
            if word.chars().count() >= 2 {
                words.insert(word);
            }
        }
    }
    words
}

fn normalize_word(word: &str) -> String {
    let lower = word.to_lowercase();
    match lower.strip_suffix('s') {
        Some(stem) if stem.chars().count() >= 3 && !stem.ends_with('s') => stem.to_owned(),
        _ => lower,
    }
}

/// A product as an admin sends it: plain JSON types so [`ProductInput::parse`] can report every
/// problem with its JSON Pointer instead of stopping at the first.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductInput {
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub options: Vec<OptionInput>,
    pub variants: Vec<VariantInput>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OptionInput {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VariantInput {
    pub sku: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub price: PriceInput,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PriceInput {
    pub amount: i64,
    pub currency: String,
}

/// Collects field errors while parsing.
#[derive(Debug, Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.0.push(FieldError::new(pointer, detail));
    }

    fn check(&mut self, ok: bool, pointer: impl Into<String>, detail: impl Into<String>) {
        if !ok {
            self.add(pointer, detail);
        }
    }

    fn take<T, E: ToString>(&mut self, result: Result<T, E>, pointer: impl Into<String>) -> Option<T> {
        result.map_err(|error| self.add(pointer, error.to_string())).ok()
    }
}

impl ProductInput {
    pub const MAX_TITLE: usize = 200;
    pub const MAX_DESCRIPTION: usize = 10_000;
    pub const MAX_TEXT: usize = 50;
    pub const MAX_URL: usize = 2048;

    /// Validates everything at once; the error lists every invalid field.
    pub fn parse(self) -> Result<ProductDetails, Vec<FieldError>> {
        let mut errors = Errors::default();
        let slug = errors.take(Slug::parse(&self.slug), "/slug");
        let category = errors.take(Category::parse(&self.category), "/category");
        let title = self.title.trim().to_owned();
        errors.check(!title.is_empty(), "/title", "must not be empty");
        errors.check(
            title.chars().count() <= Self::MAX_TITLE,
            "/title",
            format!("must be at most {} characters", Self::MAX_TITLE),
        );
        errors.check(
            self.description.chars().count() <= Self::MAX_DESCRIPTION,
            "/description",
            format!("must be at most {} characters", Self::MAX_DESCRIPTION),
        );
        check_images(&self.images, &mut errors);
        check_options(&self.options, &mut errors);
        let variants = parse_variants(&self.variants, &self.options, &mut errors);

        match (slug, category, errors.0.is_empty()) {
            (Some(slug), Some(category), true) => Ok(ProductDetails {
                slug,
                title,
                description: self.description,
                category,
                status: self.status,
                images: self.images,
                options: self
                    .options
                    .into_iter()
                    .map(|option| ProductOption { name: option.name, values: option.values })
                    .collect(),
                variants,
            }),
            _ => Err(errors.0),
        }
    }
}

fn check_images(images: &[String], errors: &mut Errors) {
    errors.check(images.len() <= MAX_IMAGES, "/images", format!("at most {MAX_IMAGES} images"));
    for (index, image) in images.iter().enumerate() {
        let pointer = format!("/images/{index}");
        let is_web_url = url::Url::parse(image)
            .map(|url| matches!(url.scheme(), "https" | "http") && url.host().is_some())
            .unwrap_or(false);
        errors.check(is_web_url, pointer.clone(), "must be an absolute http(s) URL");
        errors.check(
            image.len() <= ProductInput::MAX_URL,
            pointer,
            format!("must be at most {} bytes", ProductInput::MAX_URL),
        );
    }
}

fn check_text(text: &str, pointer: String, errors: &mut Errors) {
    let length = text.trim().chars().count();
    errors.check(
        length > 0 && length <= ProductInput::MAX_TEXT && text.trim() == text,
        pointer,
        format!("must be 1 to {} characters without surrounding spaces", ProductInput::MAX_TEXT),
    );
}

fn check_options(options: &[OptionInput], errors: &mut Errors) {
    errors.check(options.len() <= MAX_OPTIONS, "/options", format!("at most {MAX_OPTIONS} options"));
    let mut names = BTreeSet::new();
    for (index, option) in options.iter().enumerate() {
        check_text(&option.name, format!("/options/{index}/name"), errors);
        errors.check(
            names.insert(option.name.as_str()),
            format!("/options/{index}/name"),
            format!("option `{}` is listed twice", option.name),
        );
        errors.check(
            !option.values.is_empty() && option.values.len() <= MAX_OPTION_VALUES,
            format!("/options/{index}/values"),
            format!("must list 1 to {MAX_OPTION_VALUES} values"),
        );
        let mut values = BTreeSet::new();
        for (value_index, value) in option.values.iter().enumerate() {
            let pointer = format!("/options/{index}/values/{value_index}");
            check_text(value, pointer.clone(), errors);
            errors.check(values.insert(value.as_str()), pointer, format!("`{value}` is listed twice"));
        }
    }
}

fn parse_variants(inputs: &[VariantInput], options: &[OptionInput], errors: &mut Errors) -> Vec<Variant> {
    errors.check(
        !inputs.is_empty() && inputs.len() <= MAX_VARIANTS,
        "/variants",
        format!("must list 1 to {MAX_VARIANTS} variants"),
    );
    let mut skus = BTreeSet::new();
    let mut combinations = BTreeSet::new();
    let mut currency: Option<Currency> = None;
    let mut variants = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let at = |field: &str| format!("/variants/{index}/{field}");
        let sku = errors.take(Sku::parse(&input.sku), at("sku"));
        if let Some(sku) = &sku {
            errors.check(skus.insert(sku.clone()), at("sku"), format!("SKU {sku} appears twice in this product"));
        }

        for option in options {
            match input.options.get(&option.name) {
                None => errors.add(at("options"), format!("needs a value for option `{}`", option.name)),
                Some(value) if !option.values.contains(value) => errors.add(
                    format!("{}/{}", at("options"), option.name),
                    format!("`{value}` is not one of the values of option `{}`", option.name),
                ),
                Some(_) => {}
            }
        }
        for name in input.options.keys() {
            errors.check(
                options.iter().any(|option| &option.name == name),
                format!("{}/{name}", at("options")),
                format!("the product has no option `{name}`"),
            );
        }
        errors.check(combinations.insert(&input.options), at("options"), "another variant has the same option values");

        let variant_currency = errors.take(Currency::parse(&input.price.currency), at("price/currency"));
        if let (Some(first), Some(this)) = (currency, variant_currency) {
            errors.check(
                first == this,
                at("price/currency"),
                format!("all variants must be priced in one currency ({first})"),
            );
        }
        currency = currency.or(variant_currency);
        let price =
            variant_currency.and_then(|this| errors.take(Money::price(input.price.amount, this), at("price/amount")));

        if let (Some(sku), Some(price)) = (sku, price) {
            variants.push(Variant { sku, options: input.options.clone(), price });
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(value: serde_json::Value) -> ProductInput {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("test input does not deserialize: {e}"))
    }

    fn tee() -> serde_json::Value {
        json!({
            "slug": "classic-tee",
            "title": "Classic Tee",
            "category": "t-shirts",
            "status": "active",
            "images": ["https://cdn.example.com/tee.png"],
            "options": [{"name": "size", "values": ["S", "M"]}],
            "variants": [
                {"sku": "TEE-S", "options": {"size": "S"}, "price": {"amount": 1999, "currency": "USD"}},
                {"sku": "TEE-M", "options": {"size": "M"}, "price": {"amount": 1999, "currency": "USD"}}
            ]
        })
    }

    fn pointers(value: serde_json::Value) -> Vec<String> {
        match input(value).parse() {
            Ok(details) => panic!("expected errors, got {details:?}"),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_well_formed_product_parses() {
        let details = input(tee()).parse().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(details.slug.as_str(), "classic-tee");
        assert_eq!(details.variants.len(), 2);
        assert_eq!(details.variants[0].price.amount(), 1999);
    }

    #[test]
    fn a_negative_price_is_refused_at_its_field() {
        let mut body = tee();
        body["variants"][1]["price"]["amount"] = json!(-5);
        assert_eq!(pointers(body), vec!["/variants/1/price/amount"]);
    }

    #[test]
    fn a_price_beyond_the_money_bound_is_refused() {
        let mut body = tee();
        body["variants"][0]["price"]["amount"] = json!(Money::MAX_AMOUNT + 1);
        assert_eq!(pointers(body), vec!["/variants/0/price/amount"]);
    }

    #[test]
    fn an_unknown_currency_is_refused_at_its_field() {
        let mut body = tee();
        body["variants"][0]["price"]["currency"] = json!("XXY");
        assert_eq!(pointers(body), vec!["/variants/0/price/currency"]);
    }

    #[test]
    fn variants_in_two_currencies_are_refused() {
        let mut body = tee();
        body["variants"][1]["price"]["currency"] = json!("EUR");
        assert_eq!(pointers(body), vec!["/variants/1/price/currency"]);
    }

    #[test]
    fn a_sku_repeated_inside_one_product_is_refused() {
        let mut body = tee();
        body["variants"][1]["sku"] = json!("TEE-S");
        assert_eq!(pointers(body), vec!["/variants/1/sku"]);
    }

    #[test]
    fn variant_options_must_come_from_the_product_options() {
        let mut body = tee();
        body["variants"][0]["options"] = json!({"size": "XL"});
        body["variants"][1]["options"] = json!({"size": "M", "colour": "red"});
        assert_eq!(pointers(body), vec!["/variants/0/options/size", "/variants/1/options/colour"]);
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let mut body = tee();
        body["slug"] = json!("Not A Slug");
        body["title"] = json!("   ");
        body["images"] = json!(["ftp://x/y.png"]);
        body["variants"] = json!([]);
        assert_eq!(pointers(body), vec!["/slug", "/title", "/images/0", "/variants"]);
    }

    #[test]
    fn keywords_fold_case_punctuation_and_plurals() {
        let words = keywords(["Heavy-Weight Shirts, 100% Cotton!", "dress a"]);
        let expected: BTreeSet<String> =
            ["heavy", "weight", "shirt", "100", "cotton", "dress"].into_iter().map(String::from).collect();
        assert_eq!(words, expected);
    }

    #[test]
    fn keywords_stop_at_the_limit() {
        let many = (0..50).map(|n| format!("word{n}")).collect::<Vec<_>>().join(" ");
        assert_eq!(keywords([many.as_str()]).len(), MAX_KEYWORDS);
    }
}
