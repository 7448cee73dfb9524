//! Carts through the HTTP API, priced from the catalog through events.

use reqwest::Method;
use serde_json::{Value, json};

use e2e::flows::{add_when_on_sale, new_cart, product_on_sale, put_item};
use e2e::support::{call, eventually};

#[tokio::test]
async fn a_cart_shows_current_titles_prices_and_totals() {
    let alice = testkit::shop().customer_token(&testkit::unique("alice"));
    let (product, sku) = product_on_sale(1250, "USD").await;
    let cart = new_cart(&alice).await;

    let body = add_when_on_sale(&alice, &cart, &sku, 2).await;

    assert_eq!(body["lines"][0]["title"], format!("Cart Thing {sku}"));
    assert_eq!(body["lines"][0]["unit_price"], json!({ "amount": 1250, "currency": "USD" }));
    assert_eq!(body["lines"][0]["line_total"], json!({ "amount": 2500, "currency": "USD" }));
    assert_eq!(body["subtotal"], json!({ "amount": 2500, "currency": "USD" }));
    assert_eq!(body["item_count"], 2);

    // A price change in the catalog reaches the cart.
    let current = call(Method::GET, &format!("/admin/products/{product}")).admin().send().await.body;
    let mut changed = current.clone();
    changed["variants"][0]["price"]["amount"] = json!(999);
    let updated = call(Method::PUT, &format!("/admin/products/{product}"))
        .admin()
        .header("if-match", &current["version"].to_string())
        .json(&changed)
        .send()
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let repriced = eventually(15, || async {
        let body = call(Method::GET, &format!("/carts/{cart}")).token(&alice).send().await.body;
        (body["subtotal"]["amount"] == 1998).then_some(body)
    })
    .await;
    assert!(repriced.is_some(), "the cart never showed the new price");

    let emptied = call(Method::DELETE, &format!("/carts/{cart}/items/{sku}")).token(&alice).send().await;
    assert_eq!(emptied.status, 200);
    assert_eq!(emptied.body["lines"], json!([]));
    assert_eq!(emptied.body["subtotal"], Value::Null);
}

#[tokio::test]
async fn a_cart_belongs_to_its_customer_alone() {
    let (alice, mallory) = (
        testkit::shop().customer_token(&testkit::unique("alice")),
        testkit::shop().customer_token(&testkit::unique("mallory")),
    );
    let (_, sku) = product_on_sale(500, "USD").await;
    let cart = new_cart(&alice).await;
    add_when_on_sale(&alice, &cart, &sku, 1).await;

    call(Method::GET, &format!("/carts/{cart}")).token(&mallory).send().await.expect_problem(404);
    put_item(&mallory, &cart, &sku, json!(5)).await.expect_problem(404);
    call(Method::DELETE, &format!("/carts/{cart}/items/{sku}")).token(&mallory).send().await.expect_problem(404);

    let untouched = call(Method::GET, &format!("/carts/{cart}")).token(&alice).send().await;
    assert_eq!(untouched.body["lines"][0]["quantity"], 1, "mallory changed nothing");
    call(Method::GET, "/carts/cart_01J00000000000000000000000").token(&alice).send().await.expect_problem(404);
    call(Method::GET, "/carts/nonsense").token(&alice).send().await.expect_problem(404);
    let anonymous = call(Method::POST, "/carts").send().await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn bad_quantities_and_skus_not_on_sale_are_refused() {
    let alice = testkit::shop().customer_token(&testkit::unique("alice"));
    let (_, sku) = product_on_sale(500, "USD").await;
    let (_, euro_sku) = product_on_sale(500, "EUR").await;
    let cart = new_cart(&alice).await;
    add_when_on_sale(&alice, &cart, &sku, 1).await;

    put_item(&alice, &cart, &sku, json!(-1)).await.expect_problem(422);
    put_item(&alice, &cart, &sku, json!(100)).await.expect_problem(422);
    put_item(&alice, &cart, &sku, json!("two")).await.expect_problem(422);
    put_item(&alice, &cart, &sku, json!(1e10)).await.expect_problem(422);
    let unknown = put_item(&alice, &cart, "NO-SUCH-SKU", json!(1)).await;
    unknown.expect_problem(422);
    assert_eq!(unknown.pointers(), vec!["path:sku"]);
    put_item(&alice, &cart, "lower-case", json!(1)).await.expect_problem(422);
    // Wait until the euro SKU is known, then see it refused for its currency.
    let refused = eventually(15, || async {
        let reply = put_item(&alice, &cart, &euro_sku, json!(1)).await;
        reply.body["detail"].as_str().unwrap_or("").contains("priced in EUR").then_some(reply)
    })
    .await;
    refused.expect("a EUR SKU is refused in a USD cart").expect_problem(422);

    let cart_now = call(Method::GET, &format!("/carts/{cart}")).token(&alice).send().await;
    assert_eq!(cart_now.body["item_count"], 1, "nothing bad was written");
}
