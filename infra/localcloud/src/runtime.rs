//! Runs each function's real binary against a Lambda Runtime API served here, as Lambda does.
//!
//! Every instance of a function is a process with its own Runtime API endpoint
//! (`AWS_LAMBDA_RUNTIME_API`), so the local cloud knows which process holds which invocation:
//! a process that crashes fails only its own invocation and is restarted, and an invocation past
//! the function's `Timeout` kills its process, as Lambda does. Instances of one function share a
//! queue of invocations, so N instances give a concurrency of N.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::template::FunctionSpec;

/// How an invocation ended.
#[derive(Debug)]
pub enum Outcome {
    /// The handler's response payload.
    Response(Bytes),
    /// The handler returned an error (the runtime posted to `/error`).
    FunctionError(Bytes),
    /// The process died while handling the invocation.
    Crashed,
    /// The invocation ran past the function's timeout; its process was killed.
    TimedOut,
}

struct Invocation {
    id: String,
    payload: Bytes,
    timeout: Duration,
    /// Told when an instance picks the invocation up: the function's timeout starts then.
    started: oneshot::Sender<()>,
    reply: oneshot::Sender<Outcome>,
}

/// How long an invocation may wait for a free instance. Lambda would start more instances
/// instead of queueing; locally the instance count is fixed, so waiting stands in for scaling
/// and does not count against the function's timeout. The bound only stops a caller hanging on
/// a function whose every instance is wedged: a loaded 2-core machine running 50 concurrent
/// checkouts queues for more than API Gateway's 30 s, which AWS would never do.
const QUEUE_LIMIT: Duration = Duration::from_secs(300);

/// Where a function's processes write their logs.
#[derive(Debug, Clone)]
pub enum Logs {
    /// The local cloud's own stdout/stderr (for `make dev`).
    Inherit,
    /// Appended to this file (for tests, so output stays readable).
    File(PathBuf),
}

/// What every function process needs besides its template environment.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub bin_dir: PathBuf,
    pub aws_env: BTreeMap<String, String>,
    pub instances: usize,
    pub logs: Logs,
}

/// One instance: a process and its Runtime API.
struct Instance {
    in_flight: Mutex<Option<(String, oneshot::Sender<Outcome>)>>,
    kill: Notify,
}

/// A running function.
pub struct FunctionHost {
    pub spec: FunctionSpec,
    queue: mpsc::UnboundedSender<Invocation>,
    instances: Vec<Arc<Instance>>,
    /// While set, the function's event source mappings stop polling (as when a mapping is
    /// disabled in AWS); direct invocations still run.
    pub paused: std::sync::atomic::AtomicBool,
    /// Invocations still to "crash" after the handler finished: the process is killed before
    /// the response is delivered, so the caller sees a failure although the side effects
    /// happened. This is how tests prove that a redelivered message has no second effect.
    pub crash_after_handling: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for FunctionHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionHost").field("function", &self.spec.logical_id).finish()
    }
}

#[derive(Clone)]
struct ApiState {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    instance: Arc<Instance>,
    function_arn: String,
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

impl FunctionHost {
    /// Starts the function's instances and returns once their processes are spawned.
    pub async fn start(spec: FunctionSpec, settings: &ProcessSettings, function_arn: String) -> anyhow::Result<Self> {
        let binary = settings.bin_dir.join(&spec.binary);
        if !binary.is_file() {
            bail!(
                "function {} needs the binary {} (build it with `cargo build --bins`)",
                spec.logical_id,
                binary.display()
            );
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(tokio::sync::Mutex::new(receiver));
        let mut instances = Vec::new();
        for index in 0..settings.instances.max(1) {
            let instance = Arc::new(Instance { in_flight: Mutex::new(None), kill: Notify::new() });
            let state =
                ApiState { queue: queue.clone(), instance: instance.clone(), function_arn: function_arn.clone() };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            let router = Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next))
                .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
                .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
                .route("/2018-06-01/runtime/init/error", post(init_error))
                .with_state(state);
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, "runtime API stopped");
                }
            });
            let mut env = settings.aws_env.clone();
            env.extend(spec.environment.clone());
            env.insert("AWS_LAMBDA_RUNTIME_API".into(), address.to_string());
            env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), spec.name.clone());
            env.insert("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into());
            env.insert("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), spec.memory_mb.to_string());
            env.insert("AWS_LAMBDA_LOG_GROUP_NAME".into(), format!("/aws/lambda/{}", spec.name));
            env.insert("AWS_LAMBDA_LOG_STREAM_NAME".into(), format!("local/{index}"));
            if let Some(format) = &spec.log_format {
                env.insert("AWS_LAMBDA_LOG_FORMAT".into(), format.to_uppercase());
            }
            if let Some(level) = &spec.log_level {
                env.insert("AWS_LAMBDA_LOG_LEVEL".into(), level.to_uppercase());
            }
            tokio::spawn(supervise(
                binary.clone(),
                env,
                settings.logs.clone(),
                instance.clone(),
                spec.logical_id.clone(),
            ));
            instances.push(instance);
        }
        Ok(Self {
            spec,
            queue: sender,
            instances,
            paused: std::sync::atomic::AtomicBool::new(false),
            crash_after_handling: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn take_crash(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.crash_after_handling.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Invokes the function with `payload` and waits for the outcome, up to its timeout.
    pub async fn invoke(&self, payload: Bytes) -> Outcome {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let timeout = Duration::from_secs(self.spec.timeout_secs.max(1));
        let (reply, outcome) = oneshot::channel();
        let (started, picked_up) = oneshot::channel();
        let (handled, orders) = (crate::journal::handled(&payload), crate::journal::order_ids(&payload));
        let invocation = Invocation { id: id.clone(), payload, timeout, started, reply };
        if self.queue.send(invocation).is_err() {
            return Outcome::Crashed;
        }
        if !matches!(tokio::time::timeout(QUEUE_LIMIT, picked_up).await, Ok(Ok(()))) {
            tracing::warn!(function = %self.spec.logical_id, "no instance was free within {} s", QUEUE_LIMIT.as_secs());
            return Outcome::TimedOut;
        }
        let _metered = crate::meter::Running::begin(&self.spec.logical_id);
        let (started_at, clock) = (time::OffsetDateTime::now_utc(), std::time::Instant::now());
        let outcome = match tokio::time::timeout(timeout, outcome).await {
            Ok(Ok(outcome)) if self.take_crash() => {
                tracing::warn!(function = %self.spec.logical_id, ?outcome, "crashing after the handler finished (chaos)");
                for instance in &self.instances {
                    instance.kill.notify_one();
                }
                Outcome::Crashed
            }
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Crashed,
            Err(_) => {
                for instance in &self.instances {
                    let holds_it =
                        instance.in_flight.lock().map(|held| held.as_ref().is_some_and(|(held, _)| held == &id));
                    if holds_it.unwrap_or(false) {
                        instance.kill.notify_one();
                    }
                }
                Outcome::TimedOut
            }
        };
        self.journal(id, handled, orders, started_at, clock.elapsed(), &outcome);
        outcome
    }

    /// Records the invocation in the [`crate::journal`], with the orders its response named.
    fn journal(
        &self,
        request_id: String,
        handled: Vec<String>,
        mut orders: Vec<String>,
        started_at: time::OffsetDateTime,
        took: Duration,
        outcome: &Outcome,
    ) {
        let (outcome, response) = match outcome {
            Outcome::Response(body) => ("ok", Some(body)),
            Outcome::FunctionError(body) => ("error", Some(body)),
            Outcome::Crashed => ("crashed", None),
            Outcome::TimedOut => ("timed out", None),
        };
        for order in response.map(|body| crate::journal::order_ids(body)).unwrap_or_default() {
            if !orders.contains(&order) {
                orders.push(order);
            }
        }
        crate::journal::record(crate::journal::Entry {
            function: self.spec.logical_id.clone(),
            request_id,
            started_at,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            outcome,
            handled,
            orders,
        });
    }
}

/// Keeps one instance's process running: restarts it when it exits or is killed.
async fn supervise(binary: PathBuf, env: BTreeMap<String, String>, logs: Logs, instance: Arc<Instance>, name: String) {
    let mut restarts = 0_u32;
    loop {
        let child = spawn(&binary, &env, &logs, &name);
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(function = %name, %error, "cannot start function process");
                return;
            }
        };
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(function = %name, ?status, "function process exited; restarting");
            }
            () = instance.kill.notified() => {
                tracing::warn!(function = %name, "function timed out; killing its process");
                let _ = child.kill().await;
            }
        }
        // Whatever it held is lost, as when a Lambda sandbox dies.
        if let Ok(mut held) = instance.in_flight.lock()
            && let Some((_, reply)) = held.take()
        {
            let _ = reply.send(Outcome::Crashed);
        }
        restarts += 1;
        // Back off a crash loop: 50 ms, doubling, at most 2 s.
        tokio::time::sleep(Duration::from_millis(50 << restarts.min(5))).await;
    }
}

fn spawn(
    binary: &Path,
    env: &BTreeMap<String, String>,
    logs: &Logs,
    name: &str,
) -> anyhow::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(binary);
    command.env_clear().envs(env).stdin(Stdio::null()).kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    match logs {
        Logs::Inherit => {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Logs::File(path) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
    }
    let mut child = command.spawn().with_context(|| format!("spawning {}", binary.display()))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(print_lines(stdout, name.to_owned()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(print_lines(stderr, name.to_owned()));
    }
    Ok(child)
}

/// Prints what a function writes, line by line, tagged and made readable ([`crate::console`]).
async fn print_lines(output: impl tokio::io::AsyncRead + Unpin, function: String) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{}", crate::console::render(&function, &line));
    }
}

async fn next(State(state): State<ApiState>) -> Response {
    let invocation = {
        let mut queue = state.queue.lock().await;
        queue.recv().await
    };
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("lambda-runtime-aws-request-id", invocation.id.clone());
    put("lambda-runtime-deadline-ms", (now_ms() + invocation.timeout.as_millis()).to_string());
    let _ = invocation.started.send(());
    put("lambda-runtime-invoked-function-arn", state.function_arn.clone());
    put(
        "lambda-runtime-trace-id",
        // X-Ray's format: Root=1-<8 hex digits of epoch seconds>-<24 hex digits>.
        format!("Root=1-{:08x}-{:024x}", now_ms() / 1000, ulid::Ulid::new().random() & ((1 << 96) - 1)),
    );
    put("content-type", "application/json".to_owned());
    if let Ok(mut held) = state.instance.in_flight.lock() {
        *held = Some((invocation.id, invocation.reply));
    }
    (StatusCode::OK, headers, invocation.payload).into_response()
}

fn complete(state: &ApiState, id: &str, outcome: Outcome) -> StatusCode {
    let held =
        state.instance.in_flight.lock().ok().and_then(|mut held| {
            if held.as_ref().is_some_and(|(held_id, _)| held_id == id) { held.take() } else { None }
        });
    match held {
        Some((_, reply)) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn respond(State(state): State<ApiState>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    complete(&state, &id, Outcome::Response(body))
}

async fn fail(State(state): State<ApiState>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    complete(&state, &id, Outcome::FunctionError(body))
}

async fn init_error(body: Bytes) -> StatusCode {
    tracing::error!(error = %String::from_utf8_lossy(&body), "function failed to initialise");
    StatusCode::ACCEPTED
}
