//! The catalog through its HTTP API: admin writes, public reads, uniqueness, bad input.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use e2e::support::{Reply, call};

/// A valid product body in `category` whose title contains `word`, with SKUs from `sku`.
fn product(slug: &str, category: &str, title: &str, sku: &str) -> Value {
    json!({
        "slug": slug,
        "title": title,
        "description": "A product made by the end-to-end tests.",
        "category": category,
        "status": "active",
        "images": ["https://images.example.com/test.png"],
        "options": [{"name": "size", "values": ["S", "M"]}],
        "variants": [
            {"sku": format!("{sku}-S"), "options": {"size": "S"}, "price": {"amount": 1999, "currency": "USD"}},
            {"sku": format!("{sku}-M"), "options": {"size": "M"}, "price": {"amount": 2199, "currency": "USD"}}
        ]
    })
}

fn sku_base() -> String {
    testkit::unique("sku").to_uppercase()
}

async fn create(body: &Value) -> Reply {
    call(Method::POST, "/admin/products").admin().json(body).send().await
}

async fn created(body: &Value) -> Value {
    let reply = create(body).await;
    assert_eq!(reply.status, 201, "create failed: {}", reply.body);
    reply.body
}

/// Every item of a listing, following `next_cursor` to the end.
async fn list_all(query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/products?{query}&cursor={cursor}"),
            None => format!("/products?{query}"),
        };
        let reply = call(Method::GET, &path).send().await;
        assert_eq!(reply.status, 200, "listing failed: {}", reply.body);
        pages += 1;
        ids.extend(
            reply.body["items"].as_array().into_iter().flatten().map(|p| p["id"].as_str().unwrap_or("").to_owned()),
        );
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn an_admin_creates_updates_with_if_match_and_archives_a_product() {
    let category = testkit::unique("cat");
    let slug = testkit::unique("tee");
    let body = product(&slug, &category, "Lifecycle Tee", &sku_base());

    let reply = create(&body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    assert_eq!(reply.header("location"), Some(format!("/admin/products/{id}").as_str()));
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert_eq!(reply.body["variants"][1]["price"], json!({"amount": 2199, "currency": "USD"}));

    let public = call(Method::GET, &format!("/products/{id}")).send().await;
    assert_eq!(public.status, 200);
    assert_eq!(public.body["title"], "Lifecycle Tee");

    let mut changed = body.clone();
    changed["title"] = json!("Lifecycle Tee, Revised");
    let without_precondition = call(Method::PUT, &format!("/admin/products/{id}")).admin().json(&changed).send().await;
    without_precondition.expect_problem(428);

    let updated = call(Method::PUT, &format!("/admin/products/{id}"))
        .admin()
        .header("if-match", "\"1\"")
        .json(&changed)
        .send()
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.header("etag"), Some("\"2\""));

    let stale = call(Method::PUT, &format!("/admin/products/{id}"))
        .admin()
        .header("if-match", "\"1\"")
        .json(&body)
        .send()
        .await;
    stale.expect_problem(412);
    let current = call(Method::GET, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(current.body["title"], "Lifecycle Tee, Revised", "a stale write must change nothing");

    let archived = call(Method::DELETE, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    assert_eq!(archived.body["status"], "archived");
    call(Method::GET, &format!("/products/{id}")).send().await.expect_problem(404);
    let (listed, _) = list_all(&format!("category={category}")).await;
    assert!(listed.is_empty(), "an archived product is not listed: {listed:?}");
    let admin_view = call(Method::GET, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(admin_view.body["status"], "archived", "admins still see archived products");
}

#[tokio::test]
async fn listing_a_category_page_by_page_returns_every_active_product_exactly_once() {
    let category = testkit::unique("cat");
    let mut expected = Vec::new();
    for n in 0..7 {
        let body = product(&testkit::unique("p"), &category, &format!("Paged Product {n}"), &sku_base());
        expected.push(created(&body).await["id"].as_str().unwrap_or_default().to_owned());
    }
    let mut draft = product(&testkit::unique("p"), &category, "Draft Product", &sku_base());
    draft["status"] = json!("draft");
    created(&draft).await;

    let (ids, pages) = list_all(&format!("category={category}&limit=3")).await;

    expected.reverse(); // newest first
    assert_eq!(ids, expected, "every active product once, newest first, and no draft");
    assert_eq!(pages, 3);
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test]
async fn the_unfiltered_listing_pages_through_every_active_product() {
    let category = testkit::unique("cat");
    let mut mine = BTreeSet::new();
    for n in 0..3 {
        let body = product(&testkit::unique("p"), &category, &format!("Everything {n}"), &sku_base());
        mine.insert(created(&body).await["id"].as_str().unwrap_or_default().to_owned());
    }

    let (ids, _) = list_all("limit=100").await;

    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no product appears twice");
    assert!(mine.is_subset(&unique), "all of this test's products are listed");
}

#[tokio::test]
async fn keyword_search_matches_every_word_and_combines_with_category() {
    let word = testkit::unique("kw");
    let (mugs, tees) = (testkit::unique("mugs"), testkit::unique("tees"));
    let blue_mug = created(&product(&testkit::unique("p"), &mugs, &format!("Blue {word} Mug"), &sku_base())).await;
    let red_mug = created(&product(&testkit::unique("p"), &mugs, &format!("Red {word} Mug"), &sku_base())).await;
    let blue_tee = created(&product(&testkit::unique("p"), &tees, &format!("Blue {word} Tees"), &sku_base())).await;
    let id = |p: &Value| p["id"].as_str().unwrap_or_default().to_owned();

    let (all, _) = list_all(&format!("q={word}&limit=2")).await;
    assert_eq!(all, vec![id(&blue_tee), id(&red_mug), id(&blue_mug)]);

    let (blue, _) = list_all(&format!("q=BLUE+{word}")).await;
    assert_eq!(blue, vec![id(&blue_tee), id(&blue_mug)], "every word must match, case-insensitively");

    let (plural, _) = list_all(&format!("q={word}+tee")).await;
    assert_eq!(plural, vec![id(&blue_tee)], "`tee` finds a title saying `Tees`");

    let (in_mugs, _) = list_all(&format!("q=blue+{word}&category={mugs}")).await;
    assert_eq!(in_mugs, vec![id(&blue_mug)]);

    let (nothing, _) = list_all(&format!("q={word}+green")).await;
    assert!(nothing.is_empty());
}

#[tokio::test]
async fn categories_count_only_active_products() {
    let category = testkit::unique("cat");
    let first = created(&product(&testkit::unique("p"), &category, "Counted One", &sku_base())).await;
    created(&product(&testkit::unique("p"), &category, "Counted Two", &sku_base())).await;
    let mut draft = product(&testkit::unique("p"), &category, "Not Counted", &sku_base());
    draft["status"] = json!("draft");
    created(&draft).await;

    let count = || async {
        let reply = call(Method::GET, "/categories").send().await;
        assert_eq!(reply.status, 200);
        reply.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["slug"] == json!(category))
            .map(|c| c["product_count"].as_u64().unwrap_or(0))
    };
    assert_eq!(count().await, Some(2));

    let id = first["id"].as_str().unwrap_or_default();
    call(Method::DELETE, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(count().await, Some(1));
}

#[tokio::test]
async fn a_sku_belongs_to_one_product_across_the_catalog() {
    let category = testkit::unique("cat");
    let sku = sku_base();
    let first = created(&product(&testkit::unique("p"), &category, "First Owner", &sku)).await;

    let clash = create(&product(&testkit::unique("p"), &category, "Second Owner", &sku)).await;
    clash.expect_problem(409);
    // DynamoDB names every failed condition (so does moto behind infra/emulators/moto_server.py).
    assert_eq!(clash.pointers(), vec!["/variants/0/sku", "/variants/1/sku"], "both taken SKUs: {}", clash.body);
    assert!(clash.body["detail"].as_str().unwrap_or_default().contains(&sku));

    // Once the first product drops the SKU, another product may take it.
    let id = first["id"].as_str().unwrap_or_default();
    let mut renamed = product(first["slug"].as_str().unwrap_or_default(), &category, "First Owner", &sku_base());
    renamed["status"] = json!("active");
    let moved =
        call(Method::PUT, &format!("/admin/products/{id}")).admin().header("if-match", "1").json(&renamed).send().await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let second = create(&product(&testkit::unique("p"), &category, "Second Owner", &sku)).await;
    assert_eq!(second.status, 201, "{}", second.body);
}

#[tokio::test]
async fn concurrent_creates_with_one_sku_make_exactly_one_product() {
    let category = testkit::unique("cat");
    let sku = sku_base();
    let attempts = (0..6).map(|n| {
        let body = product(&testkit::unique("p"), &category, &format!("Racer {n}"), &sku);
        async move { create(&body).await.status.as_u16() }
    });

    let statuses = futures_join_all(attempts).await;

    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 5, "{statuses:?}");
}

#[tokio::test]
async fn concurrent_updates_from_one_version_let_exactly_one_win() {
    let body = product(&testkit::unique("p"), &testkit::unique("cat"), "Contended", &sku_base());
    let id = created(&body).await["id"].as_str().unwrap_or_default().to_owned();
    let attempts = (0..4).map(|n| {
        let mut changed = body.clone();
        changed["title"] = json!(format!("Writer {n}"));
        let path = format!("/admin/products/{id}");
        async move {
            call(Method::PUT, &path).admin().header("if-match", "\"1\"").json(&changed).send().await.status.as_u16()
        }
    });

    let statuses = futures_join_all(attempts).await;

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 3, "{statuses:?}");
    let now = call(Method::GET, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(now.body["version"], 2);
}

/// Runs futures concurrently on this test's runtime.
async fn futures_join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task finished"));
    }
    results
}

#[tokio::test]
async fn bad_product_bodies_get_problem_details_naming_the_field() {
    let base = product(&testkit::unique("p"), &testkit::unique("cat"), "Valid Base", &sku_base());
    let with = |pointer: &str, value: Value| {
        let mut body = base.clone();
        *body.pointer_mut(pointer).expect("pointer exists") = value;
        body
    };
    let without = |field: &str| {
        let mut body = base.clone();
        body.as_object_mut().map(|o| o.remove(field));
        body
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("wrong type", with("/title", json!(42)), 422, "/title"),
        ("missing field", without("variants"), 422, "/variants"),
        ("negative price", with("/variants/0/price/amount", json!(-1)), 422, "/variants/0/price/amount"),
        ("fractional price", with("/variants/0/price/amount", json!(19.99)), 422, "/variants/0/price/amount"),
        ("overflowing price", with("/variants/0/price/amount", json!(1e20)), 422, "/variants/0/price/amount"),
        ("price past i64", with("/variants/0/price/amount", json!(u64::MAX)), 422, "/variants/0/price/amount"),
        ("unknown currency", with("/variants/1/price/currency", json!("ABC")), 422, "/variants/1/price/currency"),
        ("lower-case sku", with("/variants/0/sku", json!("tee-s")), 422, "/variants/0/sku"),
        ("bad status", with("/status", json!("live")), 422, "/status"),
        ("bad slug", with("/slug", json!("Has Spaces")), 422, "/slug"),
        ("sku twice", with("/variants/1/sku", base["variants"][0]["sku"].clone()), 422, "/variants/1/sku"),
    ];
    for (name, body, status, pointer) in cases {
        let reply = create(&body).await;
        reply.expect_problem(status);
        assert!(reply.pointers().contains(&pointer.to_owned()), "{name}: expected {pointer} in {}", reply.body);
    }

    let malformed = call(Method::POST, "/admin/products").admin().raw("application/json", "{\"slug\": ").send().await;
    malformed.expect_problem(400);
    let not_json = call(Method::POST, "/admin/products").admin().raw("text/plain", "hello").send().await;
    not_json.expect_problem(415);
    let huge = json!({ "description": "x".repeat(70 * 1024) }).to_string();
    call(Method::POST, "/admin/products").admin().raw("application/json", huge).send().await.expect_problem(413);
}

#[tokio::test]
async fn bad_queries_unknown_ids_and_missing_rights_get_their_status() {
    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1", "cursor=garbage", "category=Not%20A%20Slug"] {
        let reply = call(Method::GET, &format!("/products?{query}")).send().await;
        reply.expect_problem(400);
    }
    let page = call(Method::GET, "/products?limit=1").send().await;
    if let Some(cursor) = page.body["next_cursor"].as_str() {
        let reply = call(Method::GET, &format!("/products?category=other&cursor={cursor}")).send().await;
        reply.expect_problem(400);
        assert_eq!(reply.pointers(), vec!["query:cursor"]);
    }

    call(Method::GET, "/products/prod_01J00000000000000000000000").send().await.expect_problem(404);
    call(Method::GET, "/products/not-an-id").send().await.expect_problem(404);
    call(Method::GET, "/admin/products/prod_01J00000000000000000000000").admin().send().await.expect_problem(404);

    let anonymous = call(Method::POST, "/admin/products").json(&json!({})).send().await;
    assert_eq!(anonymous.status, 401, "API Gateway's authorizer answers before the function");
    let forged = call(Method::GET, "/admin/products/x").token("not.a.jwt").send().await;
    assert_eq!(forged.status, 401);
    let customer = testkit::shop().customer_token("alice");
    let reply = call(Method::POST, "/admin/products").token(&customer).json(&json!({})).send().await;
    reply.expect_problem(403);
}

/// `cursor` with its JSON payload rewritten by `edit`, its signature (if any) kept: what a client
/// forging a cursor can do without the signing key.
fn forged(cursor: &str, edit: impl FnOnce(&mut Value)) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, tag) = match cursor.split_once('.') {
        Some((payload, tag)) => (payload, Some(tag)),
        None => (cursor, None),
    };
    let mut json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON");
    edit(&mut json);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).expect("JSON"));
    match tag {
        Some(tag) => format!("{payload}.{tag}"),
        None => payload,
    }
}

#[tokio::test]
async fn a_cursor_edited_to_start_in_another_category_is_refused_before_any_query() {
    // Arrange: two products in one category, so its first page of one has a cursor, and one in
    // another category whose partition key the forged cursor points at.
    let (mugs, hats) = (testkit::unique("cat"), testkit::unique("cat"));
    for (category, title) in [(&mugs, "Forgery Mug"), (&mugs, "Forgery Mug Two"), (&hats, "Forgery Hat")] {
        created(&product(&testkit::unique("forge"), category, title, &sku_base())).await;
    }
    let page = call(Method::GET, &format!("/products?category={mugs}&limit=1")).send().await;
    assert_eq!(page.status, 200, "{}", page.body);
    let cursor = page.body["next_cursor"].as_str().expect("a first page of one has a cursor").to_owned();

    // Act: the same query with the key moved to the other category's partition, and with empty keys.
    let elsewhere = forged(&cursor, |json| json["k"]["gsi1pk"] = json!(format!("CAT#{hats}")));
    let emptied = forged(&cursor, |json| {
        for value in json["k"].as_object_mut().expect("a key object").values_mut() {
            *value = json!("");
        }
    });

    // Assert: both are a 400 naming the cursor, as any cursor this API did not issue is.
    for cursor in [elsewhere, emptied] {
        let reply = call(Method::GET, &format!("/products?category={mugs}&limit=1&cursor={cursor}")).send().await;
        reply.expect_problem(400);
        assert_eq!(reply.body["type"], "/problems/malformed-request", "{}", reply.body);
        assert_eq!(reply.pointers(), vec!["query:cursor"]);
    }
}

#[tokio::test]
async fn no_body_shape_produces_a_server_error() {
    let shapes = [
        "null",
        "[]",
        "42",
        "\"text\"",
        "{}",
        "{\"variants\": null}",
        "{\"variants\": [null]}",
        "{\"variants\": [{}]}",
        "{\"variants\": [{\"price\": {}}]}",
        "{\"options\": {\"a\": 1}}",
        "{\"slug\": \"\\u0000\"}",
        "{\"title\": {\"nested\": [[[[]]]]}}",
        "\u{feff}{}",
        "{\"a\":1}{\"b\":2}",
    ];
    for shape in shapes {
        for (method, path) in [
            (Method::POST, "/admin/products".to_owned()),
            (Method::PUT, "/admin/products/prod_01J00000000000000000000000".to_owned()),
        ] {
            let reply =
                call(method.clone(), &path).admin().header("if-match", "1").raw("application/json", shape).send().await;
            assert!(reply.status.is_client_error(), "{method} {shape} gave {}: {}", reply.status, reply.body);
        }
    }
}

#[tokio::test]
async fn a_storefront_on_another_origin_may_call_the_api_as_cors_allows() {
    let origin = "https://storefront.example";

    let preflight = call(Method::OPTIONS, "/admin/products")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await;
    let listed = call(Method::GET, "/products?limit=1").header("origin", origin).send().await;

    assert_eq!(preflight.status, 204, "answered by the gateway, before any authorizer");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    let methods = preflight.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.split(',').any(|m| m == "POST"), "{methods}");
    let headers = preflight.header("access-control-allow-headers").unwrap_or_default();
    assert!(headers.contains("authorization") && headers.contains("idempotency-key"), "{headers}");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.header("access-control-allow-origin"), Some("*"));
    let exposed = listed.header("access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("etag") && exposed.contains("retry-after"), "{exposed}");
}
