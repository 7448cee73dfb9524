//! The authorization matrix: every route of template.yaml, called with no token, with tokens the
//! JWT authorizer must refuse, as a customer and as an admin, answers what its guard says; and no
//! customer reaches another customer's cart or order.
//!
//! Routes come from the template itself, so a route added without thinking about who may call it
//! is checked the day it is added.

use reqwest::Method;
use serde_json::{Value, json};

use e2e::flows::{checkout_body, new_cart, place, shopper_with_cart};
use e2e::support::{Reply, call};
use kernel::{CartId, OrderId, ProductId, ReturnId, ShipmentId};
use localcloud::template::{Stack, Template};

/// One route as the template declares it.
#[derive(Debug, Clone)]
struct Route {
    method: Method,
    path: String,
    /// False for `Auth: { Authorizer: NONE }`.
    guarded: bool,
}

fn routes() -> Vec<Route> {
    let template = Template::load(&testkit::root().join("template.yaml")).unwrap();
    let stack = Stack { name: "matrix".into(), region: "us-east-1".into(), endpoint: "http://127.0.0.1:1".into() };
    let mut physical = template.physical_names(&stack);
    for table in template.tables(&stack, &physical).unwrap() {
        // Stream ARNs exist once tables do; any value resolves the relays' environments.
        let arn = format!("{}/stream", table.logical_id);
        physical.attributes.insert((table.logical_id, "StreamArn".to_owned()), arn);
    }
    let mut routes: Vec<Route> = template
        .functions(&stack, &physical)
        .unwrap()
        .into_iter()
        .flat_map(|function| function.routes)
        .map(|route| Route {
            method: Method::from_bytes(route.method.as_bytes()).unwrap(),
            guarded: route.authorizer.is_some(),
            path: route.path,
        })
        .collect();
    routes.sort_by(|a, b| (&a.path, a.method.as_str()).cmp(&(&b.path, b.method.as_str())));
    assert!(routes.len() >= 20, "the template's routes: {routes:?}");
    routes
}

/// The route's path with every parameter filled by a well-formed id that names nothing.
fn concrete(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut filled = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let previous = index.checked_sub(1).map_or("", |i| segments[i]);
        filled.push(match (*segment, previous) {
            ("{sku}", _) => "NOPE-SKU-1".to_owned(),
            ("{flag}", _) => "disputed".to_owned(),
            ("{id}", "products") => ProductId::new().to_string(),
            ("{id}", "carts") => CartId::new().to_string(),
            ("{id}", "orders") => OrderId::new().to_string(),
            ("{id}", "shipments") => ShipmentId::new().to_string(),
            ("{id}", "returns") => ReturnId::new().to_string(),
            (other, _) if other.starts_with('{') => panic!("no id for {path}: teach `concrete` this route"),
            (other, _) => other.to_owned(),
        });
    }
    filled.join("/")
}

async fn send(route: &Route, token: Option<&str>) -> Reply {
    let mut request = call(route.method.clone(), &concrete(&route.path));
    if let Some(token) = token {
        request = request.token(token);
    }
    if matches!(route.method, Method::POST | Method::PUT) {
        request = request.json(&json!({}));
    }
    request.send().await
}

fn refused_by_guard(reply: &Reply) -> bool {
    reply.status == 401 || reply.status == 403
}

#[tokio::test]
async fn every_route_answers_as_its_guard_says_to_every_kind_of_caller() {
    let shop = testkit::shop();
    let (customer, admin) = (shop.customer_token("matrix-alice"), shop.admin_token());
    let mut wrong = Vec::new();

    for route in routes() {
        let name = format!("{} {}", route.method, route.path);
        let admin_only = route.path.starts_with("/admin/");
        let anonymous = send(&route, None).await;
        if route.guarded {
            if anonymous.status != 401 {
                wrong.push(format!("{name} without a token: {}", anonymous.status));
            }
            for (what, token) in shop.refused_tokens() {
                let reply = send(&route, Some(&token)).await;
                if reply.status != 401 {
                    wrong.push(format!("{name} with an {what} token: {}", reply.status));
                }
            }
        } else if refused_by_guard(&anonymous) || anonymous.status.is_server_error() {
            wrong.push(format!("{name} is public, yet without a token: {}", anonymous.status));
        }
        let as_customer = send(&route, Some(&customer)).await;
        let customer_ok = if admin_only { as_customer.status == 403 } else { !refused_by_guard(&as_customer) };
        if !customer_ok || as_customer.status.is_server_error() {
            wrong.push(format!("{name} as a customer: {} {}", as_customer.status, as_customer.body));
        }
        if admin_only && as_customer.status == 403 && as_customer.body["type"] != "/problems/forbidden" {
            wrong.push(format!("{name} refuses a customer without a problem+json body: {}", as_customer.body));
        }
        let as_admin = send(&route, Some(&admin)).await;
        if refused_by_guard(&as_admin) || as_admin.status.is_server_error() {
            wrong.push(format!("{name} as an admin: {} {}", as_admin.status, as_admin.body));
        }
    }

    assert!(wrong.is_empty(), "routes answering the wrong caller:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn no_customer_reaches_another_customers_cart_or_order() {
    let shop = testkit::shop();
    let bob = shop.customer_token("matrix-bob");
    let alice = shopper_with_cart(3, 1).await;
    let placed = place(&alice.token, &testkit::unique("key"), &checkout_body(&alice.cart, "pm_card_visa")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let order = placed.body["order_id"].as_str().unwrap().to_owned();
    let cart = new_cart(&alice.token).await;
    let line = json!({ "quantity": 1 });

    let replies: Vec<(&str, Reply)> = vec![
        ("read her cart", call(Method::GET, &format!("/carts/{cart}")).token(&bob).send().await),
        (
            "add to her cart",
            call(Method::PUT, &format!("/carts/{cart}/items/{}", alice.sku)).token(&bob).json(&line).send().await,
        ),
        (
            "remove from her cart",
            call(Method::DELETE, &format!("/carts/{cart}/items/{}", alice.sku)).token(&bob).send().await,
        ),
        ("read her order", call(Method::GET, &format!("/orders/{order}")).token(&bob).send().await),
        ("cancel her order", call(Method::POST, &format!("/orders/{order}/cancel")).token(&bob).send().await),
        ("check out her cart", place(&bob, &testkit::unique("key"), &checkout_body(&alice.cart, "pm_card_visa")).await),
    ];
    let listed = call(Method::GET, "/orders").token(&bob).send().await;

    for (what, reply) in &replies {
        assert!(
            reply.status == 404 || (*what == "check out her cart" && reply.status == 422),
            "bob could {what}: {} {}",
            reply.status,
            reply.body
        );
    }
    assert_eq!(listed.status, 200);
    let ids: Vec<&Value> = listed.body["items"].as_array().unwrap().iter().map(|o| &o["order_id"]).collect();
    assert!(!ids.contains(&&json!(order)), "bob's list shows alice's order");
    let hers = call(Method::GET, &format!("/orders/{order}")).token(&alice.token).send().await;
    assert_eq!((hers.status.as_u16(), hers.body["cancel_reason"].clone()), (200, Value::Null), "untouched");
}
