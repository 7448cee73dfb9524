//! A demo catalog, loaded through the public admin API (`POST /admin/products`), so seeding
//! exercises exactly what a shop's own tooling would.
//!
//! 6 categories × 10 products, each with size and/or colour variants, all active. Seeding is
//! idempotent: a product whose slug or SKUs exist already (409) is counted as present.
//!
//! Every SKU is then stocked in two warehouses (`PUT /admin/inventory/{sku}`): a few units in
//! `east`, more in `west` ([`STOCK`]). Inventory takes units from warehouses in name order, so an
//! order for more of a SKU than `east` holds is split between the two, and fulfillment ships it
//! as two shipments: the README's walk-through shows that. Seeding again sets the same counts
//! (a warehouse whose units are reserved below the count keeps its stock: 409, counted as kept).

use std::io::Write as _;

use anyhow::{Context as _, bail};
use serde_json::{Value as Json, json};

struct Family {
    category: &'static str,
    noun: &'static str,
    code: &'static str,
    base_price: i64,
    sizes: &'static [&'static str],
    colours: &'static [&'static str],
}

const FAMILIES: &[Family] = &[
    Family {
        category: "t-shirts",
        noun: "Tee",
        code: "TEE",
        base_price: 1900,
        sizes: &["S", "M", "L", "XL"],
        colours: &["black", "white"],
    },
    Family {
        category: "hoodies",
        noun: "Hoodie",
        code: "HOOD",
        base_price: 4900,
        sizes: &["S", "M", "L"],
        colours: &["grey", "navy"],
    },
    Family {
        category: "mugs",
        noun: "Mug",
        code: "MUG",
        base_price: 1400,
        sizes: &[],
        colours: &["white", "black", "blue"],
    },
    Family { category: "posters", noun: "Poster", code: "POST", base_price: 2500, sizes: &["A3", "A2"], colours: &[] },
    Family { category: "stickers", noun: "Sticker Pack", code: "STKR", base_price: 600, sizes: &[], colours: &[] },
    Family {
        category: "socks",
        noun: "Socks",
        code: "SOCK",
        base_price: 1200,
        sizes: &["S", "M", "L"],
        colours: &["red", "green"],
    },
];

/// Units of every demo SKU per warehouse: `east` runs out first, so 3 of a SKU ship from both.
pub const STOCK: [(&str, u32); 2] = [("east", 2), ("west", 20)];

const ADJECTIVES: &[&str] =
    &["Rusty", "Ferrous", "Borrowed", "Async", "Lifetime", "Crab", "Zero-Cost", "Fearless", "Unsafe-Free", "Oxidized"];

/// The demo products as admin API request bodies.
pub fn products() -> Vec<Json> {
    let mut products = Vec::new();
    for family in FAMILIES {
        for (n, adjective) in ADJECTIVES.iter().enumerate() {
            let title = format!("{adjective} {}", family.noun);
            let slug = title.to_lowercase().replace(' ', "-");
            let mut options = Vec::new();
            if !family.sizes.is_empty() {
                options.push(json!({ "name": "size", "values": family.sizes }));
            }
            if !family.colours.is_empty() {
                options.push(json!({ "name": "colour", "values": family.colours }));
            }
            let sizes: Vec<Option<&str>> =
                if family.sizes.is_empty() { vec![None] } else { family.sizes.iter().map(|s| Some(*s)).collect() };
            let colours: Vec<Option<&str>> =
                if family.colours.is_empty() { vec![None] } else { family.colours.iter().map(|c| Some(*c)).collect() };
            let mut variants = Vec::new();
            for (size_index, size) in sizes.iter().enumerate() {
                for colour in &colours {
                    let mut sku = format!("{}-{:02}", family.code, n + 1);
                    let mut chosen = serde_json::Map::new();
                    if let Some(size) = size {
                        sku.push_str(&format!("-{size}"));
                        chosen.insert("size".into(), json!(size));
                    }
                    if let Some(colour) = colour {
                        sku.push_str(&format!("-{}", colour[..3].to_uppercase()));
                        chosen.insert("colour".into(), json!(colour));
                    }
                    // Bigger sizes cost a little more; every price is whole minor units.
                    let amount = family.base_price
                        + 100 * i64::try_from(n).unwrap_or(0)
                        + 200 * i64::try_from(size_index).unwrap_or(0);
                    variants.push(
                        json!({ "sku": sku, "options": chosen, "price": { "amount": amount, "currency": "USD" } }),
                    );
                }
            }
            products.push(json!({
                "slug": slug,
                "title": title,
                "description": format!("The {} you did not know you needed. Memory-safe, thread-safe, and machine washable.", title.to_lowercase()),
                "category": family.category,
                "status": "active",
                "images": [format!("https://images.example.com/{}/{slug}.png", family.category)],
                "options": options,
                "variants": variants,
            }));
        }
    }
    products
}

/// Posts every demo product to `api_url` with an admin `token`, drawing a progress bar on stderr.
pub async fn run(api_url: &str, token: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let products = products();
    let total = products.len();
    let (mut created, mut present) = (0, 0);
    for (index, product) in products.iter().enumerate() {
        let response = client
            .post(format!("{api_url}/admin/products"))
            .bearer_auth(token)
            .json(product)
            .send()
            .await
            .with_context(|| format!("is the local cloud running at {api_url}? (`make dev`)"))?;
        match response.status().as_u16() {
            201 => created += 1,
            409 => present += 1,
            status => {
                let body = response.text().await.unwrap_or_default();
                bail!("creating {} failed with {status}: {body}", product["slug"]);
            }
        }
        let done = index + 1;
        let bar = "#".repeat(done * 30 / total) + &" ".repeat(30 - done * 30 / total);
        eprint!("\r  seeding [{bar}] {done:>3}/{total} {:<28}", product["title"].as_str().unwrap_or(""));
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    println!("Seeded {total} products in {} categories: {created} created, {present} already present.", FAMILIES.len());
    stock(&client, api_url, token, &products).await
}

/// Stocks every variant of `products` in the [`STOCK`] warehouses.
async fn stock(client: &reqwest::Client, api_url: &str, token: &str, products: &[Json]) -> anyhow::Result<()> {
    let skus: Vec<&str> = products
        .iter()
        .flat_map(|p| p["variants"].as_array().into_iter().flatten())
        .filter_map(|v| v["sku"].as_str())
        .collect();
    let (mut set, mut kept) = (0, 0);
    for (index, sku) in skus.iter().enumerate() {
        for (warehouse, on_hand) in STOCK {
            let response = client
                .put(format!("{api_url}/admin/inventory/{sku}"))
                .bearer_auth(token)
                .json(&json!({ "warehouse": warehouse, "on_hand": on_hand }))
                .send()
                .await
                .with_context(|| format!("is the local cloud running at {api_url}? (`make dev`)"))?;
            match response.status().as_u16() {
                200 => set += 1,
                // More units are reserved for orders than the count: the stock stays as it is.
                409 => kept += 1,
                status => {
                    let body = response.text().await.unwrap_or_default();
                    bail!("stocking {sku} in {warehouse} failed with {status}: {body}");
                }
            }
        }
        let done = index + 1;
        let bar = "#".repeat(done * 30 / skus.len()) + &" ".repeat(30 - done * 30 / skus.len());
        eprint!("\r  stocking [{bar}] {done:>3}/{} {sku:<28}", skus.len());
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    let warehouses: Vec<String> = STOCK.iter().map(|(w, n)| format!("{n} in {w}")).collect();
    println!("Stocked {} SKUs ({}): {set} counts set, {kept} kept.", skus.len(), warehouses.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_has_sixty_products_with_unique_slugs_and_skus() {
        let products = products();
        assert_eq!(products.len(), 60);
        let slugs: std::collections::BTreeSet<_> = products.iter().map(|p| p["slug"].to_string()).collect();
        assert_eq!(slugs.len(), 60);
        let skus: Vec<String> = products
            .iter()
            .flat_map(|p| p["variants"].as_array().cloned().unwrap_or_default())
            .map(|v| v["sku"].to_string())
            .collect();
        let unique: std::collections::BTreeSet<_> = skus.iter().collect();
        assert_eq!(unique.len(), skus.len());
        assert!(products.iter().all(|p| { p["variants"].as_array().is_some_and(|v| (1..=25).contains(&v.len())) }));
    }
}
