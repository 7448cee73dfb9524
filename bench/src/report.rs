//! `bench/results.json` and the generated part of `BENCHMARKS.md` (between the `bench:begin` and
//! `bench:end` markers; everything else in that file is written by hand).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::prices;
use crate::proxy::Ledger;
use crate::shop::Phase;
use crate::units::show;

/// The bill of one phase, per order, in picodollars by line.
#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    pub dynamodb_writes: u64,
    pub dynamodb_reads: u64,
    pub eventbridge: u64,
    pub sqs: u64,
    pub secrets_manager: u64,
    pub lambda_requests: u64,
    /// From the locally measured run time: an upper bound.
    pub lambda_duration: u64,
    pub http_api: u64,
    pub total: u64,
}

/// SQS requests an order causes: every call but empty receives (idle polling, priced apart),
/// plus one `SendMessage` per message EventBridge delivered.
pub fn sqs_requests(ledger: &Ledger) -> u64 {
    ledger.calls_of("sqs") - ledger.calls.get("sqs:ReceiveMessage (empty)").copied().unwrap_or(0)
        + ledger.sqs_messages_received
}

pub fn bill(phase: &Phase) -> Bill {
    let total = phase.ledger.dynamodb_total();
    let invocations: u64 = phase.lambda.invocations.values().sum();
    let mut bill = Bill {
        dynamodb_writes: (total.write_halves + total.index_write_halves) * prices::DYNAMODB_WRITE_UNIT / 2,
        dynamodb_reads: total.read_halves * prices::DYNAMODB_READ_UNIT / 2,
        eventbridge: phase.ledger.events_put * prices::EVENTBRIDGE_EVENT,
        sqs: sqs_requests(&phase.ledger) * prices::SQS_REQUEST,
        secrets_manager: phase.ledger.calls_of("secretsmanager") * prices::SECRETS_MANAGER_CALL,
        lambda_requests: invocations * prices::LAMBDA_REQUEST,
        lambda_duration: prices::lambda_duration(phase.lambda.mb_ms),
        http_api: phase.api_requests * prices::HTTP_API_REQUEST,
        total: 0,
    };
    bill.total = bill.dynamodb_writes
        + bill.dynamodb_reads
        + bill.eventbridge
        + bill.sqs
        + bill.secrets_manager
        + bill.lambda_requests
        + bill.lambda_duration
        + bill.http_api;
    bill
}

/// Reads `results.json` (or starts an empty one), sets `key`, writes it back.
pub fn merge(path: &Path, key: &str, value: Value) -> anyhow::Result<Value> {
    let mut results: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({}));
    if !results.is_object() {
        results = json!({});
    }
    results[key] = value;
    results["machine"] = json!(machine());
    std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")?;
    Ok(results)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cores} × {cpu}, Linux")
}

fn mib(bytes: u64) -> String {
    let tenths = (bytes * 10 + 524_288) / 1_048_576;
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn ratio(milli: u64) -> String {
    let hundredths = (milli + 5) / 10;
    format!("{}.{:02}×", hundredths / 100, hundredths % 100)
}

fn ms(us: u64) -> String {
    let tenths = (us + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// The generated Markdown: one section per benchmark present in `results`.
pub fn markdown(results: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Machine: {}.", results["machine"].as_str().unwrap_or("?"));
    if let Some(cold) = results.get("cold") {
        let _ = writeln!(
            out,
            "\n### Cold start and size ({}, {} rounds, {})\n",
            cold["date"].as_str().unwrap_or("?"),
            cold["rounds"],
            cold["commit"].as_str().unwrap_or("?")
        );
        out.push_str("| function | stripped MiB | zip MiB | init ms (median) | init ÷ hello | first response ms | ÷ hello | peak RSS MiB | sample event |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for row in cold["functions"].as_array().into_iter().flatten() {
            let n = |field: &str| row[field].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}{} |",
                row["function"].as_str().unwrap_or("?"),
                mib(n("stripped_bytes")),
                mib(n("zip_bytes")),
                ms(n("init_median_us")),
                ratio(n("init_ratio_milli")),
                ms(n("first_response_median_us")),
                ratio(n("first_response_ratio_milli")),
                mib(n("peak_rss_kib") * 1024),
                row["event"].as_str().unwrap_or(""),
                if row["answered"].as_bool().unwrap_or(false) { "" } else { " (answered with an error)" },
            );
        }
    }
    if let Some(missing) = results["cold"]["not_built"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(out, "\nNot built for this run, so not measured: {}.", names.join(", "));
    }
    if let Some(cost) = results.get("cost") {
        let _ = writeln!(
            out,
            "\n### Cost per order ({}, {})\n",
            cost["date"].as_str().unwrap_or("?"),
            cost["commit"].as_str().unwrap_or("?")
        );
        out.push_str("| | ");
        let phases: Vec<&Value> = cost["phases"].as_array().into_iter().flatten().collect();
        out.push_str(
            &phases.iter().map(|p| p["name"].as_str().unwrap_or("?").to_owned()).collect::<Vec<_>>().join(" | "),
        );
        out.push_str(" | minimum, cart → confirmed |\n|---|");
        out.push_str(&"---:|".repeat(phases.len() + 1));
        out.push('\n');
        // Derived, not measured: always the current derivation.
        let minimum = &minimum();
        let row = |out: &mut String, label: &str, cell: &dyn Fn(&Value) -> String, min: String| {
            let cells: Vec<String> = phases.iter().map(|p| cell(p)).collect();
            let _ = writeln!(out, "| {label} | {} | {min} |", cells.join(" | "));
        };
        let halves = |p: &Value, f: &str| p["ledger_total"][f].as_u64().unwrap_or(0);
        row(
            &mut out,
            "DynamoDB write units (table)",
            &|p| show(halves(p, "write_halves")),
            show(minimum["write_halves"].as_u64().unwrap_or(0)),
        );
        row(
            &mut out,
            "DynamoDB write units (indexes)",
            &|p| show(halves(p, "index_write_halves")),
            show(minimum["index_write_halves"].as_u64().unwrap_or(0)),
        );
        row(
            &mut out,
            "DynamoDB read units",
            &|p| show(halves(p, "read_halves")),
            show(minimum["read_halves"].as_u64().unwrap_or(0)),
        );
        row(
            &mut out,
            "DynamoDB items written",
            &|p| halves(p, "items_written").to_string(),
            minimum["items"].to_string(),
        );
        row(&mut out, "DynamoDB calls", &|p| p["dynamodb_calls"].to_string(), "".into());
        row(
            &mut out,
            "EventBridge events (PutEvents calls)",
            &|p| format!("{} ({})", p["events_put"], p["put_events_calls"]),
            minimum["events"].to_string(),
        );
        row(
            &mut out,
            "SQS requests (of which EventBridge deliveries)",
            &|p| format!("{} ({})", p["sqs_requests"], p["sqs_deliveries"]),
            minimum["sqs_requests"].to_string(),
        );
        row(&mut out, "Secrets Manager calls", &|p| p["secrets_manager_calls"].to_string(), "0".into());
        row(
            &mut out,
            "Lambda invocations",
            &|p| p["lambda_invocations"].to_string(),
            minimum["lambda_invocations"].to_string(),
        );
        row(&mut out, "HTTP API requests", &|p| p["api_requests"].to_string(), minimum["api_requests"].to_string());
        row(&mut out, "local time to settle, s", &|p| ms(p["settle_ms"].as_u64().unwrap_or(0)), "".into());
        row(
            &mut out,
            "**AWS bill per 1,000,000 orders**",
            &|p| format!("**{}**", prices::per_million(p["bill"]["total"].as_u64().unwrap_or(0))),
            format!("{} + duration", prices::per_million(minimum["bill"].as_u64().unwrap_or(0))),
        );
        for (label, field) in [
            ("… DynamoDB writes", "dynamodb_writes"),
            ("… DynamoDB reads", "dynamodb_reads"),
            ("… EventBridge", "eventbridge"),
            ("… SQS", "sqs"),
            ("… Lambda requests", "lambda_requests"),
            ("… Lambda duration (local run time: upper bound)", "lambda_duration"),
            ("… HTTP API", "http_api"),
        ] {
            row(&mut out, label, &|p| prices::per_million(p["bill"][field].as_u64().unwrap_or(0)), "".into());
        }
        if let Some(idle) = cost.get("idle") {
            let _ = writeln!(
                out,
                "\nIdle, per month (no orders): {} — {}",
                idle["total"].as_str().unwrap_or("?"),
                idle["explanation"].as_str().unwrap_or("")
            );
        }
        let _ = writeln!(
            out,
            "\nDynamoDB items written, cart → confirmed (table, operation, partition key, bytes, write units incl. indexes):\n"
        );
        if let Some(first) = phases.first() {
            for item in first["ledger"]["written"].as_array().into_iter().flatten() {
                let units =
                    item["write_halves"].as_u64().unwrap_or(0) + item["index_write_halves"].as_u64().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "- {} {} `{}` {} B, {} WRU",
                    item["table"].as_str().unwrap_or("?").trim_start_matches("bench-"),
                    item["operation"].as_str().unwrap_or("?"),
                    item["key"].as_str().unwrap_or("?"),
                    item["bytes"],
                    show(units)
                );
            }
        }
    }
    if let Some(flash) = results.get("flash") {
        let _ = writeln!(
            out,
            "\n### Flash sale ({}, {})\n",
            flash["date"].as_str().unwrap_or("?"),
            flash["commit"].as_str().unwrap_or("?")
        );
        let r = &flash["result"];
        let _ = writeln!(
            out,
            "{} customers, one SKU with {} units: **{} confirmed, {} oversold**; cancelled by reason: {}; other statuses: {}. \
             Placement (all {} checkouts answered) {} s, drain (first checkout → last saga write) {} s; setup of the carts {} s. \
             Inventory afterwards: {}.",
            r["customers"],
            r["units"],
            r["confirmed"],
            r["oversold"],
            r["cancelled_by_reason"],
            r["other_status"],
            r["customers"],
            ms(r["placement_ms"].as_u64().unwrap_or(0)),
            ms(r["drain_ms"].as_u64().unwrap_or(0)),
            r["setup_ms"].as_u64().unwrap_or(0) / 1000,
            r["inventory"],
        );
    }
    if let Some(warm) = results.get("warm") {
        warm_table(&mut out, warm);
    }
    if let Some(latency) = results.get("latency") {
        latency_table(&mut out, latency);
    }
    out
}

/// Nanoseconds as microseconds, one decimal.
fn micros(ns: u64) -> String {
    let tenths = (ns + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn warm_table(out: &mut String, warm: &Value) {
    let first = &warm["functions"][0];
    let _ = writeln!(
        out,
        "\n### Warm handler cost ({}, {}, {} build, {} calls per function after {} untimed)\n",
        warm["date"].as_str().unwrap_or("?"),
        warm["commit"].as_str().unwrap_or("?"),
        warm["profile"].as_str().unwrap_or("?"),
        first["calls"],
        first["warmup"],
    );
    out.push_str("| function | p50 µs | p99 µs | max µs | mean µs | every call answered | sample |\n");
    out.push_str("|---|---:|---:|---:|---:|---|---|\n");
    for row in warm["functions"].as_array().into_iter().flatten() {
        let f = |field: &str| micros(row[field].as_u64().unwrap_or(0));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row["function"].as_str().unwrap_or("?"),
            f("p50_ns"),
            f("p99_ns"),
            f("max_ns"),
            f("mean_ns"),
            row["answer"].as_str().unwrap_or("?"),
            row["sample"].as_str().unwrap_or("?"),
        );
    }
    let skipped: Vec<String> = warm["not_measured"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| format!("{} ({})", row["function"].as_str().unwrap_or("?"), row["why"].as_str().unwrap_or("?")))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nNot measured: {}.", skipped.join("; "));
    }
}

fn latency_table(out: &mut String, latency: &Value) {
    let _ = writeln!(
        out,
        "\n### Latency on the local cloud, placed → confirmed ({}, {}, {} orders one at a time, polled every {} ms)\n",
        latency["date"].as_str().unwrap_or("?"),
        latency["commit"].as_str().unwrap_or("?"),
        latency["orders"].as_array().map_or(0, Vec::len),
        latency["poll_interval_ms"],
    );
    out.push_str("| part | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|\n");
    for (part, label) in [
        ("wall", "**checkout's 202 → `confirmed`**"),
        ("emulator", "emulator: our AWS calls answered by moto"),
        ("ours", "ours: Lambda run time minus those calls (Stripe emulator included)"),
        ("plumbing", "local cloud plumbing: no function running (polling, queues)"),
        ("mapping calls", "… of which the event source mappings' own emulator calls"),
    ] {
        let p = &latency["percentiles"][part];
        let at = |i: usize| ms(p[i].as_u64().unwrap_or(0));
        let _ = writeln!(out, "| {label} | {} | {} | {} |", at(0), at(1), at(2));
    }
}

/// Replaces the generated block of `BENCHMARKS.md`.
pub fn write_markdown(path: &Path, results: &Value) -> anyhow::Result<()> {
    const BEGIN: &str = "<!-- bench:begin (generated by `make bench` from bench/results.json; do not edit) -->";
    const END: &str = "<!-- bench:end -->";
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let generated = format!("{BEGIN}\n{}\n{END}", markdown(results).trim_end());
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => format!("{}{generated}{}", &text[..begin], &text[end + END.len()..]),
        _ => format!("{text}\n{generated}\n"),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// The least a 3-line order to `confirmed` must cost for the same work and guarantees, derived
/// step by step in BENCHMARKS.md ("The minimum"): DynamoDB writes and index writes (half
/// units), reads, items, events; its bill leaves Lambda's duration out.
pub fn minimum() -> Value {
    // (step, table write units, index write units, items) as BENCHMARKS.md lists them.
    const STEPS: [(&str, u64, u64, u64); 10] = [
        ("cart: create, 3 lines", 4, 0, 4),
        ("placement: order + OrderPlaced + idempotency key, one transaction", 8, 3, 3),
        ("cart emptied on OrderPlaced", 1, 0, 1),
        ("reservation: 3 stock items + reservation + StockReserved, one transaction", 10, 1, 5),
        ("payment: noted twice, authorizing, authorized + PaymentAuthorized", 8, 2, 5),
        ("order reserved", 2, 2, 1),
        ("order confirmed + OrderConfirmed, one transaction", 6, 3, 2),
        ("commit: 3 stock items + reservation + StockCommitted, one transaction", 10, 1, 5),
        ("fulfillment: order noted, shipment + ShipmentCreated", 7, 1, 4),
        ("order learns its shipment", 2, 0, 1),
    ];
    let writes: u64 = STEPS.iter().map(|s| s.1).sum();
    let index_writes: u64 = STEPS.iter().map(|s| s.2).sum();
    let items: u64 = STEPS.iter().map(|s| s.3).sum();
    // GetCart, 3 reads of the order by checkout, 2 of the payment, 3 of stock, 2 of
    // fulfillment's order record, the customer's one read: 12 consistent reads of < 4 KB.
    let reads: u64 = 12;
    let events: u64 = 6;
    // 10 deliveries (EventBridge's SendMessage), each received and deleted once.
    let sqs: u64 = 30;
    // 5 API calls + GetCart + 6 relay batches + 10 consumer batches; 6 HTTP API requests.
    let (invocations, api) = (22_u64, 6_u64);
    let bill = (writes + index_writes) * prices::DYNAMODB_WRITE_UNIT
        + reads * prices::DYNAMODB_READ_UNIT
        + events * prices::EVENTBRIDGE_EVENT
        + sqs * prices::SQS_REQUEST
        + invocations * prices::LAMBDA_REQUEST
        + api * prices::HTTP_API_REQUEST;
    json!({
        "write_halves": writes * 2, "index_write_halves": index_writes * 2, "read_halves": reads * 2,
        "items": items, "events": events, "sqs_requests": sqs, "lambda_invocations": invocations,
        "api_requests": api, "bill": bill,
        "steps": STEPS.iter().map(|s| json!({ "step": s.0, "write_units": s.1, "index_write_units": s.2, "items": s.3 })).collect::<Vec<_>>(),
    })
}
