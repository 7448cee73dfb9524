//! The stacks the benchmarks run on: the template provisioned into a moto of their own (for cold
//! starts, without running any function), or the whole local cloud behind the counting proxy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use localcloud::auth::SigningKey;
use localcloud::emulator::Emulator;
use localcloud::template::{FunctionSpec, Stack, Template};
use localcloud::{LocalCloud, Options};

use crate::proxy::Proxy;

/// Where the emulators' Python and launchers are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub python: PathBuf,
    /// The release binaries (`$CARGO_TARGET_DIR/release`).
    pub bin_dir: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, bin_dir: PathBuf) -> Self {
        let python = std::env::var_os("FERROCART_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/emulators/bin/python"));
        Self { root: root.to_owned(), python, bin_dir }
    }
}

const STACK: &str = "bench";
const REGION: &str = "us-east-1";

/// The template's resources in a fresh moto, and the functions as the local cloud would run
/// them (environment resolved), for cold starts. Nothing runs the functions.
#[derive(Debug)]
pub struct Provisioned {
    pub endpoint: String,
    pub stripe_url: String,
    pub functions: Vec<FunctionSpec>,
    _moto: Emulator,
    _stripe: Emulator,
}

pub async fn provision(paths: &Paths) -> anyhow::Result<Provisioned> {
    let moto = Emulator::start("moto", &paths.python, &paths.root.join("infra/emulators/moto_server.py")).await?;
    let stripe =
        Emulator::start("the Stripe emulator", &paths.python, &paths.root.join("infra/emulators/stripe_server.py"))
            .await?;
    let mut template = Template::load(&paths.root.join("template.yaml"))?;
    template.set_parameter("StripeWebhookSigningSecret", localcloud::LOCAL_WEBHOOK_SIGNING_SECRET);
    let stack = Stack { name: STACK.to_owned(), region: REGION.to_owned(), endpoint: moto.url.clone() };
    let aws = localcloud::sdk_config(&moto.url, REGION).await;
    let mut physical = template.physical_names(&stack);
    let tables =
        localcloud::provision::tables(&aws_sdk_dynamodb::Client::new(&aws), &template.tables(&stack, &physical)?)
            .await?;
    for table in &tables {
        if let Some(arn) = &table.stream_arn {
            physical.attributes.insert((table.logical_id.clone(), "StreamArn".to_owned()), arn.clone());
        }
    }
    localcloud::provision::queues(&aws_sdk_sqs::Client::new(&aws), &template.queues(&stack, &physical)?).await?;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    for (logical_id, arn) in localcloud::provision::secrets(&secrets, &template.secrets(&stack, &physical)?).await? {
        physical.refs.insert(logical_id, arn);
    }
    localcloud::provision::eventbridge(
        &aws_sdk_eventbridge::Client::new(&aws),
        &template.buses(&physical),
        &template.rules(&stack, &physical)?,
    )
    .await?;
    let functions = template.functions(&stack, &physical)?;
    Ok(Provisioned {
        endpoint: moto.url.clone(),
        stripe_url: stripe.url.clone(),
        functions,
        _moto: moto,
        _stripe: stripe,
    })
}

/// The whole local cloud running the release binaries, its emulator calls going through the
/// counting proxy.
#[derive(Debug)]
pub struct Metered {
    pub cloud: LocalCloud,
    pub proxy: Arc<Proxy>,
    /// Memory size (MB) of every function, by logical id, for Lambda's GB-seconds.
    pub memory_mb: std::collections::BTreeMap<String, u64>,
    pub started: std::time::Instant,
    /// SQS event source mappings in the template (each polls its queue even when idle).
    pub sqs_mappings: u64,
    _moto: Emulator,
}

pub async fn metered(paths: &Paths, instances: usize, log: &Path) -> anyhow::Result<Metered> {
    let moto = Emulator::start("moto", &paths.python, &paths.root.join("infra/emulators/moto_server.py")).await?;
    let (proxy, proxy_url) = Proxy::start(&moto.url).await?;
    let mut options = Options::for_checkout(&paths.root, SigningKey::random()?);
    options.endpoint = Some(proxy_url.clone());
    options.stack = STACK.to_owned();
    options.region = REGION.to_owned();
    options.python = paths.python.clone();
    options.bin_dir = paths.bin_dir.clone();
    options.port = 0;
    options.instances = instances;
    options.logs = localcloud::runtime::Logs::File(log.to_owned());
    let cloud = LocalCloud::start(options).await.context("starting the local cloud")?;
    let started = std::time::Instant::now();
    let template = Template::load(&paths.root.join("template.yaml"))?;
    let stack = Stack { name: STACK.to_owned(), region: REGION.to_owned(), endpoint: proxy_url };
    let functions = template.functions(&stack, &cloud.physical)?;
    let sqs_mappings = functions
        .iter()
        .flat_map(|function| function.triggers.iter())
        .filter(|trigger| matches!(trigger, localcloud::template::TriggerSpec::Sqs { .. }))
        .count() as u64;
    let memory_mb = functions.into_iter().map(|function| (function.logical_id, function.memory_mb)).collect();
    Ok(Metered { cloud, proxy, memory_mb, started, sqs_mappings, _moto: moto })
}

impl Metered {
    /// Waits until nothing has changed for `quiet` and no invocation runs: the saga settled.
    /// Returns false if that did not happen within `limit`.
    pub async fn settle(&self, quiet: std::time::Duration, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.proxy.quiet_for() >= quiet && localcloud::meter::in_flight() == 0 {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits, if a scheduled sweep (every minute from start) would tick within `window`, until
    /// it has ticked, so a measured window holds no sweep.
    pub async fn avoid_schedules(&self, window: std::time::Duration) {
        let period = 60_u64;
        let since = self.started.elapsed().as_secs();
        let into = since % period;
        if period - into < window.as_secs() + 2 {
            let wait = period - into + 4;
            eprintln!("  waiting {wait} s for the minute's sweeps to pass");
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            let _ = self.settle(std::time::Duration::from_secs(2), std::time::Duration::from_secs(30)).await;
        }
    }
}
