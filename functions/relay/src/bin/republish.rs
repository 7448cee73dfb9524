//! Republishes outbox events to the bus, for operators: an order's events after a relay parked
//! or Lambda skipped them (see docs/events.md, "Delivery guarantees").
//!
//! ```sh
//! cargo run -p relay --bin republish -- --table <TableName> --bus <BusName> \
//!     --correlation-id ord_… [--event-id evt_…] [--dry-run]
//! ```
//!
//! Credentials, region and `AWS_ENDPOINT_URL` (the local cloud) come from the environment only,
//! as for the functions; `--features operator` adds aws-config's default chain (profiles, SSO,
//! `credential_process`). Exits non-zero when nothing matched or an event was not published.

use anyhow::{Context as _, bail};
use clap::Parser;

use relay::bus::EventBridgeBus;
use relay::republish::{self, Selection};

/// The SDK configuration: with the `operator` feature, aws-config's whole default chain (profiles,
/// SSO, `credential_process`) for an operator's machine; without it, the environment only, as
/// the Lambda functions read it.
async fn load_config() -> aws_types::SdkConfig {
    #[cfg(feature = "operator")]
    {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(adapters::aws::https_client())
            .load()
            .await
    }
    #[cfg(not(feature = "operator"))]
    {
        adapters::aws::load_config().await
    }
}

/// Publishes a correlation id's outbox events again, with their original event ids.
#[derive(Debug, Parser)]
#[command(name = "republish")]
struct Args {
    /// The domain table holding the outbox (a stack output: CheckoutTableName, …).
    #[arg(long)]
    table: String,
    /// The event bus (stack output EventBusName).
    #[arg(long)]
    bus: String,
    /// The correlation id of the events: `ord_…` for an order, `prod_…` for a product.
    #[arg(long)]
    correlation_id: String,
    /// Only this event (`evt_…`); read by key, without scanning the table.
    #[arg(long)]
    event_id: Option<String>,
    /// List what would be published and publish nothing.
    #[arg(long)]
    dry_run: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let aws = load_config().await;
    let selection = Selection { correlation_id: args.correlation_id.clone(), event_id: args.event_id.clone() };
    let found = republish::find(&aws_sdk_dynamodb::Client::new(&aws), &args.table, &selection)
        .await
        .with_context(|| format!("reading the outbox of {}", args.table))?;
    for (pk, error) in &found.unreadable {
        println!("UNREADABLE {pk}: {error} (repair the item, then republish it with --event-id)");
    }
    let records = found.records;
    if records.is_empty() && found.unreadable.is_empty() {
        bail!("no outbox item of {} in {} (items expire 7 days after their event)", args.correlation_id, args.table);
    }
    let mut failed = found.unreadable.len();
    if args.dry_run {
        for record in &records {
            println!(
                "would publish {} {}",
                record.pk.trim_start_matches(adapters::outbox::KEY_PREFIX),
                record.detail_type
            );
        }
    } else {
        let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws), args.bus);
        for event in republish::publish(&bus, &records).await {
            match &event.result {
                Ok(()) => println!("published {} {}", event.event_id, event.detail_type),
                Err(error) => {
                    failed += 1;
                    println!("FAILED {} {}: {error}", event.event_id, event.detail_type);
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} outbox items were not published", records.len() + found.unreadable.len());
    }
    Ok(())
}
