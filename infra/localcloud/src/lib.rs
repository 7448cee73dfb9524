//! # Ferrocart local cloud
//!
//! Runs the whole shop on a laptop from the same `template.yaml` that deploys to AWS:
//!
//! 1. [`template`] reads the template and resolves the intrinsics it uses.
//! 2. [`emulator`] starts moto server, unless `AWS_ENDPOINT_URL` points at another emulator
//!    (LocalStack).
//! 3. [`provision`] creates the declared DynamoDB tables (keys, GSIs, streams, TTL).
//! 4. [`runtime`] starts every function's real binary (the one `cargo lambda build` ships)
//!    against a Lambda Runtime API served here, with the environment the template gives it.
//! 5. [`gateway`] serves every `HttpApi` route on one port, with API Gateway's route matching,
//!    payload format 2.0 events and the JWT authorizer emulated by [`auth`].
//!
//! [`seed`] loads a demo catalog through the admin API. The `localcloud` binary exposes all of
//! this as `dev`, `token` and `seed` subcommands; tests start it in-process with
//! [`LocalCloud::start`].

pub mod auth;
pub mod emulator;
pub mod gateway;
pub mod provision;
pub mod runtime;
pub mod seed;
pub mod template;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use crate::auth::{LocalIdentity, SigningKey};
use crate::emulator::Moto;
use crate::gateway::{Gateway, Route};
use crate::provision::ProvisionedTable;
use crate::runtime::{FunctionHost, Logs, ProcessSettings};
use crate::template::{Stack, Template};

/// How to start the local cloud.
#[derive(Debug, Clone)]
pub struct Options {
    pub template: PathBuf,
    pub stack: String,
    pub region: String,
    /// An emulator to use; `None` starts moto.
    pub endpoint: Option<String>,
    /// Python of the emulators venv and the moto launcher script.
    pub python: PathBuf,
    pub moto_script: PathBuf,
    /// Where the function binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// API port; 0 picks a free one.
    pub port: u16,
    pub signing_key: SigningKey,
    /// Processes per function (Lambda's concurrency).
    pub instances: usize,
    pub logs: Logs,
}

impl Options {
    /// Defaults for a checkout rooted at `root`: the template there, moto from `.venv/emulators`
    /// (or the interpreter `FERROCART_PYTHON` names),
    /// binaries from `$CARGO_TARGET_DIR/debug` or `target/debug`.
    pub fn for_checkout(root: &std::path::Path, signing_key: SigningKey) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        Self {
            template: root.join("template.yaml"),
            stack: std::env::var("LOCALCLOUD_STACK").unwrap_or_else(|_| "ferrocart".to_owned()),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            endpoint: std::env::var("AWS_ENDPOINT_URL")
                .ok()
                .filter(|e| !e.is_empty()),
            python: std::env::var_os("FERROCART_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/emulators/bin/python")),
            moto_script: root.join("infra/emulators/moto_server.py"),
            bin_dir: target.join("debug"),
            port: 3000,
            signing_key,
            instances: 1,
            logs: Logs::Inherit,
        }
    }
}

/// A running local cloud. Dropping it stops the gateway, the functions and moto.
#[derive(Debug)]
pub struct LocalCloud {
    pub api_url: String,
    pub endpoint: String,
    pub region: String,
    pub identity: Option<LocalIdentity>,
    pub tables: Vec<ProvisionedTable>,
    server: tokio::task::JoinHandle<()>,
    _moto: Option<Moto>,
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The identity (issuer, audience, key) of the template's JWT authorizer, without starting
/// anything: what `localcloud token` needs.
pub fn identity(
    template: &Template,
    stack: &Stack,
    key: SigningKey,
) -> anyhow::Result<LocalIdentity> {
    let physical = template.physical_names(stack);
    let api = template
        .http_api(stack, &physical)?
        .ok_or_else(|| anyhow!("the template has no HttpApi"))?;
    let authorizer = api
        .authorizers
        .first()
        .ok_or_else(|| anyhow!("the HttpApi has no JWT authorizer"))?;
    Ok(LocalIdentity::new(key, authorizer))
}

/// Credentials and endpoint every SDK client (ours and the functions') uses locally.
fn aws_env(endpoint: &str, region: &str) -> BTreeMap<String, String> {
    let credential = |name: &str| std::env::var(name).unwrap_or_else(|_| "test".to_owned());
    BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
        ("AWS_REGION".to_owned(), region.to_owned()),
        ("AWS_DEFAULT_REGION".to_owned(), region.to_owned()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            credential("AWS_ACCESS_KEY_ID"),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            credential("AWS_SECRET_ACCESS_KEY"),
        ),
    ])
}

/// A DynamoDB client for the emulator at `endpoint`.
pub async fn dynamodb_client(endpoint: &str, region: &str) -> aws_sdk_dynamodb::Client {
    let env = aws_env(endpoint, region);
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        env["AWS_ACCESS_KEY_ID"].clone(),
        env["AWS_SECRET_ACCESS_KEY"].clone(),
        None,
        None,
        "localcloud",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

impl LocalCloud {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let template = Template::load(&options.template)?;
        let stack = Stack {
            name: options.stack.clone(),
            region: options.region.clone(),
        };

        let (moto, endpoint) = match &options.endpoint {
            Some(endpoint) => (None, endpoint.clone()),
            None => {
                let moto = Moto::start(&options.python, &options.moto_script).await?;
                let endpoint = moto.endpoint.clone();
                (Some(moto), endpoint)
            }
        };

        let mut physical = template.physical_names(&stack);
        let dynamodb = dynamodb_client(&endpoint, &options.region).await;
        let tables = provision::tables(&dynamodb, &template.tables(&stack, &physical)?).await?;
        for table in &tables {
            if let Some(arn) = &table.stream_arn {
                physical.attributes.insert(
                    (table.logical_id.clone(), "StreamArn".to_owned()),
                    arn.clone(),
                );
            }
        }

        let api = template.http_api(&stack, &physical)?;
        let identities: Vec<LocalIdentity> = api
            .iter()
            .flat_map(|api| api.authorizers.iter())
            .map(|authorizer| LocalIdentity::new(options.signing_key.clone(), authorizer))
            .collect();
        let authorizer_index = |name: &str| {
            api.as_ref()
                .and_then(|api| api.authorizers.iter().position(|a| a.name == name))
        };

        let settings = ProcessSettings {
            bin_dir: options.bin_dir.clone(),
            aws_env: aws_env(&endpoint, &options.region),
            instances: options.instances,
            logs: options.logs.clone(),
        };
        let mut functions = Vec::new();
        let mut routes = Vec::new();
        for spec in template.functions(&stack, &physical)? {
            let index = functions.len();
            for route in &spec.routes {
                let authorizer = match route.authorizer.as_deref() {
                    None => None,
                    Some("") => api
                        .as_ref()
                        .and_then(|a| a.default_authorizer.as_deref())
                        .and_then(authorizer_index),
                    Some(name) => Some(authorizer_index(name).ok_or_else(|| {
                        anyhow!(
                            "{} route {} uses unknown authorizer {name}",
                            spec.logical_id,
                            route.key()
                        )
                    })?),
                };
                routes.push(Route::new(route.clone(), index, authorizer));
            }
            let arn = physical
                .attributes
                .get(&(spec.logical_id.clone(), "Arn".to_owned()))
                .cloned()
                .unwrap_or_default();
            functions.push(FunctionHost::start(spec, &settings, arn).await?);
        }

        let gateway = Arc::new(Gateway {
            routes,
            functions,
            identities: identities.clone(),
            api_id: physical
                .refs
                .get(api.as_ref().map_or("", |a| a.logical_id.as_str()))
                .cloned()
                .unwrap_or_default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| {
                format!(
                    "binding 127.0.0.1:{} (set PORT to use another port)",
                    options.port
                )
            })?;
        let address = listener.local_addr()?;
        let router = axum::Router::new()
            .fallback(gateway::serve)
            .layer(axum::extract::DefaultBodyLimit::max(
                gateway::MAX_PAYLOAD_BYTES,
            ))
            .with_state(gateway);
        let server = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            if let Err(error) = axum::serve(listener, service).await {
                tracing::error!(%error, "gateway stopped");
            }
        });

        Ok(Self {
            api_url: format!("http://{address}"),
            endpoint,
            region: options.region,
            identity: identities.into_iter().next(),
            tables,
            server,
            _moto: moto,
        })
    }

    /// A bearer token for `subject`, in the `admin` group when `admin`.
    pub fn token(&self, subject: &str, admin: bool) -> anyhow::Result<String> {
        let identity = self
            .identity
            .as_ref()
            .ok_or_else(|| anyhow!("the template has no JWT authorizer"))?;
        identity.mint(subject, if admin { &["admin"] } else { &[] }, 3600)
    }

    /// The physical name of a table by its logical id.
    pub fn table(&self, logical_id: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|t| t.logical_id == logical_id)
            .map(|t| t.name.as_str())
    }
}
