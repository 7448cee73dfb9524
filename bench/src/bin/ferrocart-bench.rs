//! `make bench`: cold start and size, cost per order, the flash sale, warm handler cost and
//! latency on the local cloud; writes
//! `bench/results.json` and the generated tables of `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bench::cold::{self, Subject};
use bench::report;
use bench::shop;
use bench::stack::{self, Paths};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "Ferrocart's benchmarks (make bench)")]
struct Cli {
    /// The repository (template.yaml, events/, infra/emulators).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The release binaries; default `$CARGO_TARGET_DIR/release` or `target/release`.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Cold start, size and peak RSS of every function against the hello-world baseline.
    Cold {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Only these functions (binary names, comma-separated), beside the hello-world.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// A 3-line order to confirmed and to delivered, every AWS call counted and priced.
    Cost,
    /// Concurrent checkouts of distinct customers on one SKU.
    Flash {
        #[arg(long, default_value_t = 1000)]
        customers: usize,
        #[arg(long, default_value_t = 100)]
        units: u32,
    },
    /// Each handler in-process on its sample events with storage in memory: p50/p99 per call.
    /// Runs the release build of `ferrocart-warm` from the bin dir (`make bench` builds it).
    Warm {
        #[arg(long, default_value_t = 10_000)]
        calls: usize,
        #[arg(long, default_value_t = 1_000)]
        warmup: usize,
    },
    /// Orders placed one at a time on the local cloud: checkout's 202 → `confirmed`, split into
    /// emulator time, ours and the local cloud's plumbing.
    Latency {
        #[arg(long, default_value_t = 50)]
        orders: usize,
        /// How often the order is read while waiting for `confirmed`.
        #[arg(long, default_value_t = 10)]
        poll_ms: u64,
    },
    /// Cold, cost, flash, warm and latency, in that order.
    All {
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value_t = 1000)]
        customers: usize,
    },
    /// Rewrites BENCHMARKS.md's tables from bench/results.json without measuring.
    Report,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = cli.root.canonicalize().context("--root")?;
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("release")
    });
    let paths = Paths::new(&root, bin_dir);
    let results = root.join("bench/results.json");
    let run_cold = |rounds, only| cold_starts(&paths, rounds, only);
    match cli.command {
        Command::Cold { rounds, only } => save(&root, "cold", run_cold(rounds, only).await?)?,
        Command::Cost => save(&root, "cost", cost(&paths).await?)?,
        Command::Flash { customers, units } => save(&root, "flash", flash(&paths, customers, units).await?)?,
        Command::All { rounds, customers } => {
            save(&root, "cold", run_cold(rounds, Vec::new()).await?)?;
            save(&root, "cost", cost(&paths).await?)?;
            save(&root, "flash", flash(&paths, customers, 100).await?)?;
            save(&root, "warm", warm(&paths, 10_000, 1_000)?)?;
            save(&root, "latency", latency(&paths, 50, 10).await?)?;
        }
        Command::Warm { calls, warmup } => save(&root, "warm", warm(&paths, calls, warmup)?)?,
        Command::Latency { orders, poll_ms } => save(&root, "latency", latency(&paths, orders, poll_ms).await?)?,
        Command::Report => {
            let text = std::fs::read_to_string(&results).context("bench/results.json")?;
            report::write_markdown(&root.join("BENCHMARKS.md"), &serde_json::from_str(&text)?)?;
        }
    }
    Ok(())
}

fn save(root: &Path, key: &str, value: Value) -> anyhow::Result<()> {
    let results = report::merge(&root.join("bench/results.json"), key, value)?;
    report::write_markdown(&root.join("BENCHMARKS.md"), &results)?;
    eprintln!("wrote bench/results.json ({key}) and BENCHMARKS.md");
    Ok(())
}

fn stamp() -> Value {
    let date = time::OffsetDateTime::now_utc().date().to_string();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    json!({ "date": date, "commit": commit })
}

/// The sample event each binary answers at its first invocation.
fn sample(root: &Path, binary: &str) -> anyhow::Result<(String, Value)> {
    let read = |file: &str| -> anyhow::Result<(String, Value)> {
        let text = std::fs::read_to_string(root.join("events").join(file)).with_context(|| format!("events/{file}"))?;
        Ok((format!("events/{file}"), serde_json::from_str(&text)?))
    };
    let admin = read("apigw/admin-dispatch-shipment.json")?.1;
    let order = "ord_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z";
    let built =
        |name: &str, event: Value| Ok((format!("{name} (on events/apigw/admin-dispatch-shipment.json)"), event));
    match binary {
        "catalog" => read("apigw/list-products.json"),
        "fulfillment" => read("apigw/admin-dispatch-shipment.json"),
        "relay" => read("dynamodb/outbox-insert.json"),
        "cart-query" => read("lambda/get-cart.json"),
        "cart-events" => read("sqs/cart-catalog-events.json"),
        "checkout-events" => read("sqs/checkout-saga-events.json"),
        "payment-events" => read("sqs/payment-order-events.json"),
        "inventory-events" => read("sqs/inventory-order-events.json"),
        "fulfillment-events" => read("sqs/fulfillment-order-events.json"),
        "cart" => {
            let cart = "cart_01JD4X5M6N7P8Q9R0S1T2V3W4X";
            built(
                "GET /carts/{id}",
                cold::api_event(&admin, "GET", "/carts/{id}", &format!("/carts/{cart}"), &[("id", cart)], ""),
            )
        }
        "checkout" => built(
            "GET /orders/{id}",
            cold::api_event(&admin, "GET", "/orders/{id}", &format!("/orders/{order}"), &[("id", order)], ""),
        ),
        "inventory" => built(
            "GET /availability",
            cold::api_event(&admin, "GET", "/availability", "/availability", &[], "skus=MUG-01-WHI"),
        ),
        "payment-webhooks" => built(
            "POST /webhooks/stripe, unsigned",
            cold::api_event(&admin, "POST", "/webhooks/stripe", "/webhooks/stripe", &[], ""),
        ),
        "payment-admin" => built(
            "POST /admin/orders/{id}/refunds, no body",
            cold::api_event(
                &admin,
                "POST",
                "/admin/orders/{id}/refunds",
                &format!("/admin/orders/{order}/refunds"),
                &[("id", order)],
                "",
            ),
        ),
        "fulfillment-query" => Ok(("HoldForCancel (domain-events::queries)".into(), json!({ "order_id": order }))),
        _ => Ok(("{\"hello\": \"world\"}".into(), json!({ "hello": "world" }))),
    }
}

async fn cold_starts(paths: &Paths, rounds: usize, only: Vec<String>) -> anyhow::Result<Value> {
    eprintln!("cold starts: provisioning the template into a moto of our own");
    let provisioned = stack::provision(paths).await?;
    let base_env = |name: &str, memory: u64| -> BTreeMap<String, String> {
        BTreeMap::from([
            ("AWS_ENDPOINT_URL".into(), provisioned.endpoint.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "bench".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "bench".into()),
            // Checkout's Invoke client is built at init but not called by the sample.
            ("AWS_ENDPOINT_URL_LAMBDA".into(), "http://127.0.0.1:9".into()),
            ("STRIPE_API_BASE".into(), provisioned.stripe_url.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME".into(), name.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), memory.to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{name}")),
            ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "bench".into()),
        ])
    };
    let mut subjects = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for function in &provisioned.functions {
        if !seen.insert(function.binary.clone()) {
            continue;
        }
        let mut env = base_env(&function.name, function.memory_mb);
        env.extend(function.environment.clone());
        if let Some(format) = &function.log_format {
            env.insert("AWS_LAMBDA_LOG_FORMAT".into(), format.to_uppercase());
        }
        if let Some(level) = &function.log_level {
            env.insert("AWS_LAMBDA_LOG_LEVEL".into(), level.to_uppercase());
        }
        let (event_name, event) = sample(&paths.root, &function.binary)?;
        subjects.push(Subject {
            name: function.binary.clone(),
            binary: paths.bin_dir.join(&function.binary),
            env,
            event_name,
            event: event.to_string().into(),
        });
    }
    if let Some(unknown) = only.iter().find(|name| !subjects.iter().any(|s| &s.name == *name)) {
        anyhow::bail!("--only: no function runs the binary `{unknown}`");
    }
    subjects.retain(|s| only.is_empty() || only.contains(&s.name));
    // A binary that is not built is reported, not guessed: `make bench` builds them all.
    let (subjects, missing): (Vec<Subject>, Vec<Subject>) = subjects.into_iter().partition(|s| s.binary.is_file());
    let missing: Vec<String> = missing.into_iter().map(|s| s.name).collect();
    if !missing.is_empty() {
        eprintln!("cold starts: not built, skipped: {}", missing.join(", "));
    }
    let baseline = Subject {
        name: "hello-lambda".into(),
        binary: paths.bin_dir.join("hello-lambda"),
        env: base_env("hello-lambda", 128),
        event_name: sample(&paths.root, "hello-lambda")?.0,
        event: json!({ "hello": "world" }).to_string().into(),
    };
    eprintln!("cold starts: {} functions and the hello-world, {rounds} rounds", subjects.len());
    let summaries = cold::measure(&baseline, &subjects, rounds).await?;
    let mut value = stamp();
    value["rounds"] = json!(rounds);
    value["not_built"] = json!(missing);
    value["functions"] = serde_json::to_value(&summaries)?;
    Ok(value)
}

fn phase_json(phase: &shop::Phase) -> anyhow::Result<Value> {
    let total = phase.ledger.dynamodb_total();
    Ok(json!({
        "name": phase.name,
        "api_requests": phase.api_requests,
        "settle_ms": phase.settle_ms,
        "ledger_total": total,
        "dynamodb_calls": phase.ledger.calls_of("dynamodb"),
        "events_put": phase.ledger.events_put,
        "put_events_calls": phase.ledger.calls.get("events:PutEvents").copied().unwrap_or(0),
        "sqs_requests": report::sqs_requests(&phase.ledger),
        "sqs_deliveries": phase.ledger.sqs_messages_received,
        "secrets_manager_calls": phase.ledger.calls_of("secretsmanager"),
        "lambda_invocations": phase.lambda.invocations.values().sum::<u64>(),
        "lambda": phase.lambda,
        "bill": report::bill(phase),
        "ledger": phase.ledger,
    }))
}

async fn cost(paths: &Paths) -> anyhow::Result<Value> {
    eprintln!("cost per order: starting the local cloud (release binaries) behind the counting proxy");
    let log = std::env::temp_dir().join(format!("ferrocart-bench-{}.log", std::process::id()));
    let metered = stack::metered(paths, 1, &log).await?;
    eprintln!("  function logs: {}", log.display());
    let phases = shop::cost(&metered).await?;
    let idle = idle(&metered).await?;
    let mut value = stamp();
    value["phases"] = Value::Array(phases.iter().map(phase_json).collect::<anyhow::Result<_>>()?);
    value["minimum"] = bench::report::minimum();
    value["idle"] = idle;
    Ok(value)
}

/// One minute without orders: what the scheduled sweeps cost, scaled to a month, plus the SQS
/// long polling of the event source mappings (by AWS's model, not the local one's 1 s polls).
async fn idle(metered: &stack::Metered) -> anyhow::Result<Value> {
    metered.settle(std::time::Duration::from_secs(2), std::time::Duration::from_secs(60)).await;
    eprintln!("  idle: one minute without orders (the sweeps tick once)");
    metered.proxy.take();
    let meters = localcloud::meter::snapshot();
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let ledger = metered.proxy.take();
    let lambda = shop::lambda_since(&meters, metered);
    let phase = shop::Phase { name: "idle minute".into(), api_requests: 0, ledger, lambda, settle_ms: 0 };
    let mut sweeps = report::bill(&phase);
    // Empty receives are the local mappings' 1 s polls: priced below by AWS's model instead.
    sweeps.total -= sweeps.sqs;
    let minutes_per_month: u64 = 30 * 24 * 60;
    let sweeps_month = sweeps.total * minutes_per_month;
    let mappings = metered.sqs_mappings;
    // Lambda polls an idle standard queue with long polls of up to 20 s; we assume the 5
    // concurrent pollers a mapping starts with: 15 ReceiveMessage a minute each.
    let receives_month = mappings * 5 * 3 * minutes_per_month;
    let polling_month = receives_month * bench::prices::SQS_REQUEST;
    let dollars = |picodollars: u64| {
        let cents = (picodollars + 5_000_000_000) / 10_000_000_000;
        format!("${}.{:02}", cents / 100, cents % 100)
    };
    Ok(json!({
        "sweeps_minute": phase_json(&phase)?,
        "sweeps_month": dollars(sweeps_month),
        "sqs_mappings": mappings,
        "sqs_receives_month": receives_month,
        "sqs_polling_month": dollars(polling_month),
        "total": dollars(sweeps_month + polling_month),
        "explanation": format!(
            "the sweeps' minute measured here ({} Lambda invocations, {} DynamoDB read units) × 43,200 minutes = {}; \
             {} SQS event source mappings × 5 long-polling pollers × 3 receives a minute × 43,200 minutes = {} requests = {}",
            phase.lambda.invocations.values().sum::<u64>(),
            bench::units::show(phase.ledger.dynamodb_total().read_halves),
            dollars(sweeps_month),
            mappings,
            receives_month,
            dollars(polling_month)
        ),
    }))
}

/// Runs the release `ferrocart-warm` (the handlers must be timed as Lambda runs them: release)
/// with its stdout (the functions' log and metric lines) discarded, and reads its JSON.
fn warm(paths: &Paths, calls: usize, warmup: usize) -> anyhow::Result<Value> {
    let binary = paths.bin_dir.join("ferrocart-warm");
    anyhow::ensure!(
        binary.is_file(),
        "{} is not built: cargo build --release -p bench --features warm --bin ferrocart-warm",
        binary.display()
    );
    eprintln!("warm handlers: {calls} calls per function after {warmup} untimed ({})", binary.display());
    let out = std::env::temp_dir().join(format!("ferrocart-warm-{}.json", std::process::id()));
    let status = std::process::Command::new(&binary)
        .arg("--root")
        .arg(&paths.root)
        .args(["--calls", &calls.to_string(), "--warmup", &warmup.to_string(), "--out"])
        .arg(&out)
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench-warm")
        .stdout(std::process::Stdio::null())
        .status()
        .context("running ferrocart-warm")?;
    anyhow::ensure!(status.success(), "ferrocart-warm failed: {status}");
    let measured: Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
    let _ = std::fs::remove_file(&out);
    let mut value = stamp();
    for key in ["profile", "functions", "not_measured"] {
        value[key] = measured[key].clone();
    }
    Ok(value)
}

async fn latency(paths: &Paths, orders: usize, poll_ms: u64) -> anyhow::Result<Value> {
    eprintln!("latency: {orders} orders one at a time; starting the local cloud");
    let log = std::env::temp_dir().join(format!("ferrocart-bench-latency-{}.log", std::process::id()));
    let metered = stack::metered(paths, 1, &log).await?;
    let result = shop::latency(&metered, orders, std::time::Duration::from_millis(poll_ms)).await?;
    let mut value = stamp();
    value["orders"] = serde_json::to_value(&result.orders)?;
    value["poll_interval_ms"] = json!(result.poll_interval_ms);
    value["percentiles"] = serde_json::to_value(&result.percentiles)?;
    Ok(value)
}

async fn flash(paths: &Paths, customers: usize, units: u32) -> anyhow::Result<Value> {
    eprintln!("flash sale: {customers} customers, {units} units; starting the local cloud");
    let log = std::env::temp_dir().join(format!("ferrocart-bench-flash-{}.log", std::process::id()));
    let metered = stack::metered(paths, 2, &log).await?;
    let result = shop::flash_sale(&metered, customers, units, 16).await?;
    let mut value = stamp();
    value["result"] = serde_json::to_value(&result)?;
    Ok(value)
}
