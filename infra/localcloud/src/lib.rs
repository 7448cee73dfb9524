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
//!    payload format 2.0 events, the JWT authorizer emulated by [`auth`] and the API's
//!    `CorsConfiguration` applied by [`cors`] (preflights answered, headers added).
//! 6. [`provision`] also creates the SQS queues (with redrive to their DLQs), the EventBridge
//!    buses and rules, and [`triggers`] runs the functions' event source mappings (SQS, DynamoDB
//!    streams) and schedules with Lambda's batching, partial-failure and [`filter`]ing
//!    semantics.
//!
//! [`emulator`] also starts the Stripe emulator (localstripe behind
//! `infra/emulators/stripe_server.py`, which makes it answer like Stripe's test mode) and the
//! functions get `STRIPE_API_BASE`; in AWS that variable is unset and they talk to Stripe.
//!
//! [`site`] serves the storefront under `/shop/` with a dev sign-in, for `localcloud dev` only.
//!
//! What an operator would see: [`console`] makes the functions' output readable and tags it with
//! the function (`dev`), [`journal`] records every invocation with the orders it named (`GET
//! /_localcloud/trace/{order}`, the `trace` subcommand), and [`tail`] taps the bus (`tail`).
//! [`meter`] counts invocations and run time for `make bench`.
//!
//! [`seed`] loads a demo catalog through the admin API. The `localcloud` binary exposes all of
//! this as `dev`, `token`, `seed`, `tail` and `trace` subcommands; tests start it in-process with
//! [`LocalCloud::start`].

pub mod auth;
pub mod console;
pub mod cors;
pub mod emulator;
pub mod filter;
pub mod gateway;
pub mod journal;
pub mod meter;
pub mod openapi;
pub mod provision;
pub mod runtime;
pub mod seed;
pub mod site;
pub mod tail;
pub mod template;
pub mod triggers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use crate::auth::{LocalIdentity, SigningKey};
use crate::emulator::Emulator;
use crate::gateway::{Gateway, Route};
use crate::provision::ProvisionedTable;
use crate::runtime::{FunctionHost, Logs, ProcessSettings};
use crate::template::{Stack, Template, TriggerSpec};
use crate::triggers::Chaos;

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
    /// The Stripe emulator launcher; `None` runs without one.
    pub stripe_script: Option<PathBuf>,
    /// Where the function binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// API port; 0 picks a free one.
    pub port: u16,
    pub signing_key: SigningKey,
    /// Processes per function (Lambda's concurrency).
    pub instances: usize,
    pub logs: Logs,
    /// Faster retries and duplicate deliveries, for tests.
    pub chaos: Chaos,
    /// Template parameter overrides (`sam deploy --parameter-overrides`).
    pub parameters: BTreeMap<String, String>,
    /// The storefront's static files (`storefront/public`), served under `/shop/` with the dev
    /// sign-in; `None` (the default, and the test kit's) serves neither.
    pub storefront: Option<PathBuf>,
}

impl Options {
    /// Defaults for a checkout rooted at `root`: the template there, moto from `.venv/emulators`
    /// (or the interpreter `FERROCART_PYTHON` names),
    /// binaries from `$CARGO_TARGET_DIR/debug` or `target/debug`.
    pub fn for_checkout(root: &std::path::Path, signing_key: SigningKey) -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
        Self {
            template: root.join("template.yaml"),
            stack: std::env::var("LOCALCLOUD_STACK").unwrap_or_else(|_| "ferrocart".to_owned()),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            endpoint: std::env::var("AWS_ENDPOINT_URL").ok().filter(|e| !e.is_empty()),
            python: std::env::var_os("FERROCART_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/emulators/bin/python")),
            moto_script: root.join("infra/emulators/moto_server.py"),
            stripe_script: Some(root.join("infra/emulators/stripe_server.py")),
            bin_dir: target.join("debug"),
            port: 3000,
            signing_key,
            instances: 1,
            logs: Logs::Inherit,
            chaos: Chaos::default(),
            parameters: BTreeMap::new(),
            storefront: None,
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
    /// Physical names (`Ref`) and attributes (`GetAtt`) of every resource, by logical id.
    pub physical: template::Physical,
    /// The Stripe emulator's URL, when one runs.
    pub stripe_url: Option<String>,
    server: tokio::task::JoinHandle<()>,
    _moto: Option<Emulator>,
    _stripe: Option<Emulator>,
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The identity (issuer, audience, key) of the template's JWT authorizer, without starting
/// anything: what `localcloud token` needs.
pub fn identity(template: &Template, stack: &Stack, key: SigningKey) -> anyhow::Result<LocalIdentity> {
    let physical = template.physical_names(stack);
    let api = template.http_api(stack, &physical)?.ok_or_else(|| anyhow!("the template has no HttpApi"))?;
    let authorizer = api.authorizers.first().ok_or_else(|| anyhow!("the HttpApi has no JWT authorizer"))?;
    Ok(LocalIdentity::new(key, authorizer))
}

/// Credentials and endpoint every SDK client (ours and the functions') uses locally.
fn aws_env(endpoint: &str, region: &str) -> BTreeMap<String, String> {
    let credential = |name: &str| std::env::var(name).unwrap_or_else(|_| "test".to_owned());
    BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
        ("AWS_REGION".to_owned(), region.to_owned()),
        ("AWS_DEFAULT_REGION".to_owned(), region.to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), credential("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), credential("AWS_SECRET_ACCESS_KEY")),
    ])
}

/// SDK configuration for the emulator at `endpoint`.
pub async fn sdk_config(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    let env = aws_env(endpoint, region);
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        env["AWS_ACCESS_KEY_ID"].clone(),
        env["AWS_SECRET_ACCESS_KEY"].clone(),
        None,
        None,
        "localcloud",
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .load()
        .await
}

/// A DynamoDB client for the emulator at `endpoint`.
pub async fn dynamodb_client(endpoint: &str, region: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(endpoint, region).await)
}

impl LocalCloud {
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let mut template = Template::load(&options.template)?;
        // The template has no default for it (a known value would let anyone sign webhooks):
        // locally, the Stripe emulator and the webhook function share this one.
        template.set_parameter(STRIPE_WEBHOOK_SIGNING_PARAMETER, LOCAL_WEBHOOK_SIGNING_SECRET);
        for (name, value) in &options.parameters {
            template.set_parameter(name, value);
        }

        let (moto, endpoint) = match &options.endpoint {
            Some(endpoint) => (None, endpoint.clone()),
            None => {
                let moto = Emulator::start("moto", &options.python, &options.moto_script).await?;
                let endpoint = moto.url.clone();
                (Some(moto), endpoint)
            }
        };
        let stack = Stack { name: options.stack.clone(), region: options.region.clone(), endpoint: endpoint.clone() };
        let aws = sdk_config(&endpoint, &options.region).await;

        let mut physical = template.physical_names(&stack);
        let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
        let tables = provision::tables(&dynamodb, &template.tables(&stack, &physical)?).await?;
        for table in &tables {
            if let Some(arn) = &table.stream_arn {
                physical.attributes.insert((table.logical_id.clone(), "StreamArn".to_owned()), arn.clone());
            }
        }
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let queues = template.queues(&stack, &physical)?;
        provision::queues(&sqs, &queues).await?;
        let secretsmanager = aws_sdk_secretsmanager::Client::new(&aws);
        let secrets = template.secrets(&stack, &physical)?;
        // The Stripe emulator signs its webhooks with the same secret the webhook function reads.
        let webhook_secret = secrets
            .iter()
            .find(|secret| secret.logical_id == STRIPE_WEBHOOK_SECRET)
            .and_then(|secret| secret.properties.get("SecretString")?.as_str().map(str::to_owned));
        for (logical_id, arn) in provision::secrets(&secretsmanager, &secrets).await? {
            physical.refs.insert(logical_id, arn);
        }
        let eventbridge = aws_sdk_eventbridge::Client::new(&aws);
        provision::eventbridge(&eventbridge, &template.buses(&physical), &template.rules(&stack, &physical)?).await?;

        let api = template.http_api(&stack, &physical)?;
        let identities: Vec<LocalIdentity> = api
            .iter()
            .flat_map(|api| api.authorizers.iter())
            .map(|authorizer| LocalIdentity::new(options.signing_key.clone(), authorizer))
            .collect();
        let authorizer_index =
            |name: &str| api.as_ref().and_then(|api| api.authorizers.iter().position(|a| a.name == name));

        // Bind the API port first: functions learn it as their Lambda endpoint.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{} (set PORT to use another port)", options.port))?;
        let address = listener.local_addr()?;

        let mut aws_environment = aws_env(&endpoint, &options.region);
        aws_environment.insert("AWS_ENDPOINT_URL_LAMBDA".to_owned(), format!("http://{address}"));
        let stripe = match &options.stripe_script {
            Some(script) => Some(Emulator::start("the Stripe emulator", &options.python, script).await?),
            None => None,
        };
        if let Some(stripe) = &stripe {
            aws_environment.insert("STRIPE_API_BASE".to_owned(), stripe.url.clone());
            if let Some(secret) = &webhook_secret {
                register_webhook(&stripe.url, &format!("http://{address}{STRIPE_WEBHOOK_PATH}"), secret).await?;
            }
        }
        let settings = ProcessSettings {
            bin_dir: options.bin_dir.clone(),
            aws_env: aws_environment,
            instances: options.instances,
            logs: options.logs.clone(),
        };
        let queue_url = |arn: &str| {
            queues.iter().find_map(|queue| {
                let own_arn = physical.attributes.get(&(queue.logical_id.clone(), "Arn".to_owned()))?;
                (own_arn == arn).then(|| physical.refs.get(&queue.logical_id).cloned()).flatten()
            })
        };
        let streams = aws_sdk_dynamodbstreams::Client::new(&aws);
        let mut functions = Vec::new();
        let mut routes = Vec::new();
        let mut schedules = Vec::new();
        for spec in template.functions(&stack, &physical)? {
            let index = functions.len();
            for route in &spec.routes {
                let authorizer = match route.authorizer.as_deref() {
                    None => None,
                    Some("") => api.as_ref().and_then(|a| a.default_authorizer.as_deref()).and_then(authorizer_index),
                    Some(name) => Some(authorizer_index(name).ok_or_else(|| {
                        anyhow!("{} route {} uses unknown authorizer {name}", spec.logical_id, route.key())
                    })?),
                };
                routes.push(Route::new(route.clone(), index, authorizer));
            }
            let arn =
                physical.attributes.get(&(spec.logical_id.clone(), "Arn".to_owned())).cloned().unwrap_or_default();
            let triggers = spec.triggers.clone();
            let host = Arc::new(FunctionHost::start(spec, &settings, arn.clone()).await?);
            for trigger in triggers {
                match trigger {
                    TriggerSpec::Sqs { event, queue_arn, batch_size, report_failures, filters } => {
                        let url = queue_url(&queue_arn).ok_or_else(|| {
                            anyhow!(
                                "{}.Events.{event}: no queue in the template has ARN {queue_arn}",
                                host.spec.logical_id
                            )
                        })?;
                        tokio::spawn(triggers::poll_queue(
                            host.clone(),
                            sqs.clone(),
                            url,
                            queue_arn,
                            options.region.clone(),
                            batch_size,
                            report_failures,
                            filters,
                            options.chaos.clone(),
                        ));
                    }
                    TriggerSpec::Stream {
                        stream_arn,
                        batch_size,
                        report_failures,
                        from_start,
                        max_retries,
                        on_failure,
                        filters,
                        event,
                        ..
                    } => {
                        let on_failure = match on_failure {
                            None => None,
                            Some(queue_arn) => Some(triggers::OnFailure {
                                sqs: sqs.clone(),
                                queue_url: queue_url(&queue_arn).ok_or_else(|| {
                                    anyhow!(
                                        "{}.Events.{event}: no queue in the template has ARN {queue_arn}",
                                        host.spec.logical_id
                                    )
                                })?,
                                function_arn: arn.clone(),
                            }),
                        };
                        tokio::spawn(triggers::poll_stream(
                            host.clone(),
                            streams.clone(),
                            stream_arn,
                            options.region.clone(),
                            batch_size,
                            report_failures,
                            from_start,
                            max_retries,
                            on_failure,
                            filters,
                        ));
                    }
                    TriggerSpec::Schedule { event, expression, enabled } => {
                        let rule_arn = format!(
                            "arn:aws:events:{}:{}:rule/{}-{}-{event}",
                            options.region,
                            template::ACCOUNT_ID,
                            options.stack,
                            host.spec.logical_id
                        );
                        match triggers::rate(&expression) {
                            Some(period) if enabled => {
                                tokio::spawn(triggers::run_schedule(
                                    host.clone(),
                                    rule_arn.clone(),
                                    options.region.clone(),
                                    period,
                                ));
                            }
                            _ => {
                                tracing::info!(function = %host.spec.logical_id, %expression, "schedule runs on demand only")
                            }
                        }
                        schedules.push(gateway::Schedule {
                            function: host.clone(),
                            event,
                            rule_arn,
                            region: options.region.clone(),
                        });
                    }
                }
            }
            functions.push(host);
        }

        let gateway = Arc::new(Gateway {
            routes,
            functions,
            schedules,
            identities: identities.clone(),
            api_id: physical.refs.get(api.as_ref().map_or("", |a| a.logical_id.as_str())).cloned().unwrap_or_default(),
            cors: api.as_ref().and_then(|a| a.cors.clone()),
            site: options.storefront.clone().map(|root| site::Site {
                root,
                api_url: format!("http://{address}"),
                stripe_url: stripe.as_ref().map(|s| s.url.clone()),
            }),
        });
        let router = axum::Router::new()
            .fallback(gateway::serve)
            .layer(axum::extract::DefaultBodyLimit::max(gateway::MAX_PAYLOAD_BYTES))
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
            physical,
            stripe_url: stripe.as_ref().map(|s| s.url.clone()),
            server,
            _moto: moto,
            _stripe: stripe,
        })
    }

    /// A bearer token for `subject`, in the `admin` group when `admin`.
    pub fn token(&self, subject: &str, admin: bool) -> anyhow::Result<String> {
        let identity = self.identity.as_ref().ok_or_else(|| anyhow!("the template has no JWT authorizer"))?;
        identity.mint(subject, if admin { &["admin"] } else { &[] }, 3600)
    }

    /// The physical name of a table by its logical id.
    pub fn table(&self, logical_id: &str) -> Option<&str> {
        self.tables.iter().find(|t| t.logical_id == logical_id).map(|t| t.name.as_str())
    }
}

/// The template's webhook signing secret, and the route Stripe's webhooks are delivered to.
const STRIPE_WEBHOOK_SECRET: &str = "StripeWebhookSecret";
/// The template parameter behind it, and the value the local cloud gives it.
const STRIPE_WEBHOOK_SIGNING_PARAMETER: &str = "StripeWebhookSigningSecret";
pub const LOCAL_WEBHOOK_SIGNING_SECRET: &str = "whsec_local_ferrocart";
const STRIPE_WEBHOOK_PATH: &str = "/webhooks/stripe";

/// Registers the local API's webhook route with the Stripe emulator (localstripe's
/// `POST /_config/webhooks/{id}`), so every event it raises reaches `POST /webhooks/stripe`
/// signed with the template's `StripeWebhookSecret`, as Stripe delivers to a registered endpoint.
async fn register_webhook(stripe_url: &str, url: &str, secret: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{stripe_url}/_config/webhooks/ferrocart"))
        .form(&[("url", url), ("secret", secret)])
        .send()
        .await
        .context("registering the webhook endpoint with the Stripe emulator")?;
    if !response.status().is_success() {
        return Err(anyhow!("the Stripe emulator refused the webhook endpoint: HTTP {}", response.status()));
    }
    tracing::info!(%url, "Stripe emulator delivers its webhooks here");
    Ok(())
}
