//! `localcloud`: the Ferrocart shop on your machine, from template.yaml.
//!
//! ```text
//! localcloud dev            # emulator + tables + functions + API on http://127.0.0.1:3000
//! localcloud token alice    # a customer's bearer token
//! localcloud token root --admin
//! localcloud seed           # the demo catalog, through the admin API
//! ```

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use localcloud::auth::SigningKey;
use localcloud::tail::Running;
use localcloud::template::{Stack, Template};
use localcloud::{LocalCloud, Options};

#[derive(Debug, Parser)]
#[command(version, about = "Run Ferrocart locally from template.yaml")]
struct Cli {
    /// The checkout's root (where template.yaml is).
    #[arg(long, env = "FERROCART_ROOT", default_value = ".", global = true)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the emulator (moto unless AWS_ENDPOINT_URL is set), provision, serve the API.
    Dev {
        #[arg(long, env = "PORT", default_value_t = 3000)]
        port: u16,
        /// Processes per function (Lambda concurrency).
        #[arg(long, env = "LOCALCLOUD_CONCURRENCY", default_value_t = 2)]
        concurrency: usize,
    },
    /// Print a bearer token for the local JWT authorizer, and nothing else.
    Token {
        /// The customer id (JWT `sub`).
        subject: String,
        /// Put the token in the `admin` group.
        #[arg(long)]
        admin: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 8 * 3600)]
        ttl: u64,
    },
    /// Stream the events passing on the running `dev`'s bus, as they happen.
    Tail {
        /// Only this order's events (its id, `ord_…`).
        #[arg(long)]
        order: Option<String>,
    },
    /// Print an order's timeline in the running `dev`: every invocation that touched it.
    Trace {
        /// The order id (`ord_…`).
        order: String,
    },
    /// Load the demo catalog through the admin API of a running `dev`.
    Seed {
        #[arg(long, env = "API_URL", default_value = "http://127.0.0.1:3000")]
        api: String,
    },
}

/// Where `dev` says where it runs, for `tail` and `trace`.
const RUNNING: &str = ".ferrocart/dev.json";

fn running(root: &std::path::Path) -> anyhow::Result<Running> {
    let text = std::fs::read_to_string(root.join(RUNNING)).context("no `make dev` is running here (start it first)")?;
    serde_json::from_str(&text)
        .ok()
        .and_then(|value| Running::from_json(&value))
        .context("unreadable .ferrocart/dev.json")
}

fn signing_key(root: &std::path::Path) -> anyhow::Result<SigningKey> {
    SigningKey::load_or_create(&root.join(".ferrocart/local-jwt.key"))
}

fn identity(root: &std::path::Path) -> anyhow::Result<localcloud::auth::LocalIdentity> {
    let template = Template::load(&root.join("template.yaml"))?;
    let options = Options::for_checkout(root, signing_key(root)?);
    let stack = Stack { name: options.stack, region: options.region, endpoint: String::new() };
    localcloud::identity(&template, &stack, options.signing_key)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = std::fs::canonicalize(&cli.root).with_context(|| format!("no directory {}", cli.root.display()))?;
    match cli.command {
        Command::Dev { port, concurrency } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("LOCALCLOUD_LOG").unwrap_or_else(|_| "info".into()),
                )
                .with_target(false)
                .init();
            let mut options = Options::for_checkout(&root, signing_key(&root)?);
            options.port = port;
            options.instances = concurrency;
            options.storefront = Some(root.join("storefront/public"));
            let emulator = options.endpoint.clone().unwrap_or_else(|| "moto (started here)".to_owned());
            let cloud = LocalCloud::start(options).await?;
            let buses = Template::load(&root.join("template.yaml"))?.buses(&cloud.physical);
            let running = Running {
                api_url: cloud.api_url.clone(),
                endpoint: cloud.endpoint.clone(),
                region: cloud.region.clone(),
                buses: buses.into_iter().map(|bus| bus.name).collect(),
            };
            std::fs::write(root.join(RUNNING), running.to_json().to_string())?;
            println!();
            println!("  Ferrocart is running on {}", cloud.api_url);
            println!("  Storefront:    {}/shop/  (admin console: {}/shop/#/admin)", cloud.api_url, cloud.api_url);
            println!("  AWS emulator:  {emulator} -> {}", cloud.endpoint);
            if let Some(stripe) = &cloud.stripe_url {
                println!("  Stripe emulator: {stripe} (webhooks -> {}/webhooks/stripe)", cloud.api_url);
            }
            for table in &cloud.tables {
                println!("  table {:<22} {}", table.logical_id, table.name);
            }
            println!();
            println!("  Tokens:  make -s token SUB=alice          (customer)");
            println!("           make -s token SUB=root ADMIN=1   (admin)");
            println!("  Demo catalog: make seed");
            println!("  Watch:   make tail [ORDER=ord_…]        (events on the bus)");
            println!("           make trace ORDER=ord_…         (an order's timeline)");
            println!("  Try:     curl {}/products", cloud.api_url);
            println!();
            println!("  Ctrl-C stops everything started here.");
            tokio::signal::ctrl_c().await?;
            println!("\n  Stopping.");
            drop(cloud);
        }
        Command::Token { subject, admin, ttl } => {
            let token = identity(&root)?.mint(&subject, if admin { &["admin"] } else { &[] }, ttl)?;
            println!("{token}");
        }
        Command::Tail { order } => {
            let running = running(&root)?;
            let bus = running.buses.first().context("the template declares no event bus")?;
            localcloud::tail::run(&running, bus, order.as_deref()).await?;
        }
        Command::Trace { order } => {
            let running = running(&root)?;
            let url = format!("{}/_localcloud/trace/{order}", running.api_url);
            let entries: Vec<serde_json::Value> = reqwest::get(&url).await?.error_for_status()?.json().await?;
            if entries.is_empty() {
                println!("Nothing in this `make dev` named {order}.");
            }
            print!("{}", localcloud::journal::timeline(&entries));
        }
        Command::Seed { api } => {
            let token = identity(&root)?.mint("seed", &["admin"], 3600)?;
            localcloud::seed::run(api.trim_end_matches('/'), &token).await?;
        }
    }
    Ok(())
}
