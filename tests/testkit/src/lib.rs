//! # Ferrocart test kit
//!
//! [`shop`] starts, once per test binary, a real moto server and the local cloud from
//! template.yaml (the real function binaries behind the emulated API Gateway), and hands every
//! test the same running shop. Tests talk to it over HTTP exactly as a client would, and keep
//! out of each other's way with unique names (see [`unique`]) instead of sharing fixtures.
//!
//! The shop lives on a runtime of its own in a background thread, so it outlives each test's
//! runtime. When the test binary exits, moto sees its stdin close and stops, and the function
//! processes lose their Runtime API and exit: nothing is left running.
//!
//! [`table::Table`] is the other half, for store tests: one table of one domain, created as the
//! template declares it in a moto of the test binary's own, without a stack.
//!
//! Function logs go to `$TMPDIR/ferrocart-e2e-<pid>.log` (printed at start) to keep test output
//! readable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context as _;
use localcloud::auth::SigningKey;
use localcloud::runtime::Logs;
use localcloud::{LocalCloud, Options};

pub mod table;

/// A running shop: its API URL, emulator endpoint, and tokens.
#[derive(Debug)]
pub struct Shop {
    pub api_url: String,
    pub endpoint: String,
    pub region: String,
    /// The Stripe emulator's URL.
    pub stripe_url: Option<String>,
    /// The file every function and the local cloud write their logs to.
    pub log: PathBuf,
    identity: localcloud::auth::LocalIdentity,
    tables: Vec<(String, String)>,
    physical: localcloud::template::Physical,
}

impl Shop {
    /// `path` on the API: `shop.url("/products")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    /// A bearer token for customer `subject`.
    pub fn customer_token(&self, subject: &str) -> String {
        self.identity.mint(subject, &[], 3600).unwrap_or_default()
    }

    /// Tokens the JWT authorizer must refuse, by what is wrong with them: expired an hour ago,
    /// issued for another app client, signed with another key.
    pub fn refused_tokens(&self) -> Vec<(&'static str, String)> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let expired = self.identity.mint_with(
            "alice",
            &[],
            now - 7200,
            now - 3600,
            self.identity.audience.first().map_or("", String::as_str),
        );
        let other_app = self.identity.mint_with("alice", &[], now, now + 3600, "another-app-client");
        let foreign = match localcloud::auth::SigningKey::random() {
            Ok(key) => {
                let spec = localcloud::template::JwtAuthorizerSpec {
                    name: "foreign".into(),
                    issuer: self.identity.issuer.clone(),
                    audience: self.identity.audience.clone(),
                    identity_source: "$request.header.Authorization".into(),
                };
                localcloud::auth::LocalIdentity::new(key, &spec).mint("alice", &["admin"], 3600)
            }
            Err(error) => Err(error),
        };
        vec![
            ("expired", expired.unwrap_or_default()),
            ("wrong audience", other_app.unwrap_or_default()),
            ("forged signature", foreign.unwrap_or_default()),
            ("not a token", "not-a-jwt".to_owned()),
        ]
    }

    /// A bearer token in the `admin` group.
    pub fn admin_token(&self) -> String {
        self.identity.mint("test-admin", &["admin"], 3600).unwrap_or_default()
    }

    /// The physical name of a table by its logical id in template.yaml.
    pub fn table(&self, logical_id: &str) -> Option<&str> {
        self.tables.iter().find(|(logical, _)| logical == logical_id).map(|(_, name)| name.as_str())
    }

    /// A DynamoDB client for the emulator, for tests that check what was stored.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        localcloud::dynamodb_client(&self.endpoint, &self.region).await
    }

    /// SDK configuration for the emulator, for tests that use other AWS clients.
    pub async fn aws(&self) -> aws_config::SdkConfig {
        localcloud::sdk_config(&self.endpoint, &self.region).await
    }

    /// The physical name (`Ref`) of a template resource: a bus name, a queue URL, a table name.
    pub fn resource(&self, logical_id: &str) -> Option<&str> {
        self.physical.refs.get(logical_id).map(String::as_str)
    }

    /// Sends a control action to the local cloud: `pause`, `resume` or `crash-after-next` for a
    /// function (by logical id).
    pub async fn control(&self, function: &str, action: &str) -> anyhow::Result<()> {
        let url = self.url(&format!("/_localcloud/functions/{function}/{action}"));
        let response = reqwest::Client::new().post(url).send().await?;
        anyhow::ensure!(response.status().is_success(), "control failed: {}", response.status());
        Ok(())
    }

    /// Fires a function's schedule now, as if at `time` (RFC 3339), and returns its response.
    pub async fn fire_schedule(
        &self,
        function: &str,
        event: &str,
        time: Option<&str>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut url = self.url(&format!("/_localcloud/schedules/{function}/{event}"));
        if let Some(time) = time {
            url.push_str(&format!("?time={}", time.replace('+', "%2B")));
        }
        let response = reqwest::Client::new().post(url).send().await?;
        anyhow::ensure!(response.status().is_success(), "schedule failed: {}", response.text().await?);
        Ok(response.json().await?)
    }
}

/// The repository's root directory: two levels above this crate (`tests/testkit`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// How a test binary wants its stack: template parameter overrides and chaos knobs.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub parameters: Vec<(&'static str, String)>,
    pub chaos: localcloud::triggers::Chaos,
}

static SHOP: OnceLock<Shop> = OnceLock::new();

/// The shop shared by the tests of this binary, started on first use with default settings.
pub fn shop() -> &'static Shop {
    shop_with(Settings::default)
}

/// The shop shared by the tests of this binary, started on first use with `settings()`. Every
/// test of a binary must ask with the same settings: the first call wins.
pub fn shop_with(settings: fn() -> Settings) -> &'static Shop {
    SHOP.get_or_init(|| match start(settings()) {
        Ok(shop) => shop,
        // A test cannot run without its shop: fail loudly with the reason.
        Err(error) => panic!("could not start the local cloud for tests: {error:#}"),
    })
}

fn start(settings: Settings) -> anyhow::Result<Shop> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("localcloud".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = sender.send(Err(anyhow::Error::from(error)));
                return;
            }
        };
        runtime.block_on(async move {
            match launch(settings).await {
                Ok((cloud, shop)) => {
                    let _ = sender.send(Ok(shop));
                    // Keep the cloud (and its runtime) alive until the process exits.
                    std::future::pending::<()>().await;
                    drop(cloud);
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                }
            }
        });
    })?;
    receiver.recv().context("the local cloud thread died")?
}

async fn launch(settings: Settings) -> anyhow::Result<(LocalCloud, Shop)> {
    let root = root();
    let mut options = Options::for_checkout(&root, SigningKey::random()?);
    // Tests always get a fresh moto of their own unless told otherwise.
    options.endpoint = std::env::var("FERROCART_TEST_ENDPOINT").ok().filter(|e| !e.is_empty());
    options.stack = format!("e2e{}", std::process::id());
    options.port = 0;
    options.instances = 2;
    options.chaos = settings.chaos;
    options.parameters = settings.parameters.into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
    let log = std::env::temp_dir().join(format!("ferrocart-e2e-{}.log", std::process::id()));
    eprintln!("function and local cloud logs: {}", log.display());
    if let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("LOCALCLOUD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .try_init();
    }
    options.logs = Logs::File(log.clone());
    let cloud = LocalCloud::start(options).await?;
    let identity = cloud.identity.clone().context("the template has no JWT authorizer")?;
    let shop = Shop {
        api_url: cloud.api_url.clone(),
        endpoint: cloud.endpoint.clone(),
        region: cloud.region.clone(),
        stripe_url: cloud.stripe_url.clone(),
        log,
        identity,
        tables: cloud.tables.iter().map(|t| (t.logical_id.clone(), t.name.clone())).collect(),
        physical: cloud.physical.clone(),
    };
    Ok((cloud, shop))
}

/// A name no other test (or earlier run) uses: `prefix` + lower-case letters only, so it is a
/// valid slug, category and search word at once.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = u64::from(std::process::id()) * 1_000_003 + n * 7_919 + nanos();
    let letters: String = (0..8)
        .scan(seed, |state, _| {
            *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let index = u8::try_from((*state >> 33) % 26).unwrap_or(0);
            Some(char::from(b'a' + index))
        })
        .collect();
    format!("{prefix}{letters}")
}

fn nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| u64::from(d.subsec_nanos())).unwrap_or(0)
}
