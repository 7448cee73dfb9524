//! Cold starts: each function's release binary exec'd against a Lambda Runtime API served
//! here, timed from exec to its first `GET /next` (init) and to its first response on a sample
//! event from `events/`, with its peak RSS read from `/proc/<pid>/status` (`VmHWM`) after that
//! response. Starts are interleaved round by round with the hello-world baseline, so a busy
//! machine slows both alike and the ratio holds; each round starts them in another order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

/// One binary to start, with the environment and event it gets.
#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub binary: PathBuf,
    pub env: BTreeMap<String, String>,
    /// What the sample is (`events/sqs/…`), for the report.
    pub event_name: String,
    pub event: Bytes,
}

/// One measured start.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Start {
    pub init: Duration,
    pub first_response: Duration,
    pub peak_rss_kib: u64,
    /// The handler answered through `/response` (not `/error`).
    pub answered: bool,
}

#[derive(Clone)]
struct Api {
    event: Bytes,
    served: Arc<Mutex<bool>>,
    next_at: Arc<Mutex<Option<Instant>>>,
    done_at: Arc<Mutex<Option<(Instant, bool)>>>,
    finished: watch::Sender<bool>,
}

async fn next(State(api): State<Api>) -> Response {
    let first = api.served.lock().map(|mut served| !std::mem::replace(&mut *served, true)).unwrap_or(false);
    if !first {
        // The process asks for its second invocation: hold it until the start is over.
        let mut finished = api.finished.subscribe();
        let _ = finished.wait_for(|done| *done).await;
        return StatusCode::GONE.into_response();
    }
    if let Ok(mut at) = api.next_at.lock() {
        at.get_or_insert_with(Instant::now);
    }
    let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 30_000;
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", "bench-0001".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned()),
        ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, api.event.clone()).into_response()
}

fn finish(api: &Api, answered: bool) -> StatusCode {
    if let Ok(mut at) = api.done_at.lock() {
        at.get_or_insert((Instant::now(), answered));
    }
    StatusCode::ACCEPTED
}

async fn respond(State(api): State<Api>) -> StatusCode {
    finish(&api, true)
}

async fn fail(State(api): State<Api>) -> StatusCode {
    finish(&api, false)
}

async fn init_error(State(api): State<Api>, body: Bytes) -> StatusCode {
    eprintln!("init error: {}", String::from_utf8_lossy(&body));
    finish(&api, false)
}

/// Starts `subject` once, answers its first `/next` with its event, and stops it after the
/// response.
pub async fn start_once(subject: &Subject) -> anyhow::Result<Start> {
    let (finished, _) = watch::channel(false);
    let api = Api {
        event: subject.event.clone(),
        served: Arc::default(),
        next_at: Arc::default(),
        done_at: Arc::default(),
        finished: finished.clone(),
    };
    let router = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut stop = finished.subscribe();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|done| *done).await;
            })
            .await;
    });

    let mut command = tokio::process::Command::new(&subject.binary);
    command.env_clear().envs(&subject.env).env("AWS_LAMBDA_RUNTIME_API", address.to_string());
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let exec = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", subject.binary.display()))?;
    let pid = child.id().unwrap_or(0);

    let deadline = exec + Duration::from_secs(30);
    let outcome = loop {
        if let Some(done) = api.done_at.lock().ok().and_then(|at| *at) {
            break Some(done);
        }
        if Instant::now() > deadline {
            break None;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{} exited before answering ({status})", subject.name);
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let peak_rss_kib = peak_rss(pid);
    let _ = child.kill().await;
    let _ = finished.send(true);
    let _ = server.await;
    let Some((done, answered)) = outcome else {
        bail!("{} did not answer within 30 s", subject.name);
    };
    let next_at = api.next_at.lock().ok().and_then(|at| *at).unwrap_or(done);
    Ok(Start { init: next_at - exec, first_response: done - exec, peak_rss_kib, answered })
}

/// `VmHWM` (the peak resident set) of a running process, in KiB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:")?.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The middle value (the upper middle of an even count).
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Summary of one subject's starts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub function: String,
    pub event: String,
    pub starts: usize,
    pub init_median_us: u128,
    pub first_response_median_us: u128,
    /// Medians relative to the hello-world's, in thousandths (1300 = 1.3×).
    pub init_ratio_milli: u128,
    pub first_response_ratio_milli: u128,
    pub peak_rss_kib: u64,
    pub answered: bool,
    pub stripped_bytes: u64,
    pub zip_bytes: u64,
}

/// Runs `rounds` rounds; in each, the baseline and every subject start once, in an order
/// shuffled per round ([`round_order`]).
pub async fn measure(baseline: &Subject, subjects: &[Subject], rounds: usize) -> anyhow::Result<Vec<Summary>> {
    let mut all: Vec<&Subject> = vec![baseline];
    all.extend(subjects);
    let mut starts: Vec<Vec<Start>> = vec![Vec::new(); all.len()];
    for round in 0..rounds {
        for index in round_order(all.len(), round) {
            starts[index].push(start_once(all[index]).await.with_context(|| format!("round {round}"))?);
        }
        eprint!("\r  cold starts: round {}/{rounds}", round + 1);
    }
    eprintln!();
    let medians = |list: &[Start]| {
        (median(list.iter().map(|s| s.init).collect()), median(list.iter().map(|s| s.first_response).collect()))
    };
    let (base_init, base_first) = medians(&starts[0]);
    let ratio = |value: Duration, base: Duration| value.as_micros() * 1000 / base.as_micros().max(1);
    let mut summaries = Vec::new();
    for (subject, list) in all.iter().zip(&starts) {
        let (init, first) = medians(list);
        let stripped = std::fs::metadata(&subject.binary).map(|m| m.len()).unwrap_or(0);
        summaries.push(Summary {
            function: subject.name.clone(),
            event: subject.event_name.clone(),
            starts: list.len(),
            init_median_us: init.as_micros(),
            first_response_median_us: first.as_micros(),
            init_ratio_milli: ratio(init, base_init),
            first_response_ratio_milli: ratio(first, base_first),
            peak_rss_kib: list.iter().map(|s| s.peak_rss_kib).max().unwrap_or(0),
            answered: list.iter().all(|s| s.answered),
            stripped_bytes: stripped,
            zip_bytes: zip_size(&subject.binary).unwrap_or(0),
        });
    }
    Ok(summaries)
}

/// The order of the starts in round `round`: `0..len` shuffled (Fisher–Yates on a xorshift
/// seeded by the round, so a run is repeatable). In a fixed order every function started right
/// after the same one, and the emulator work a heavy first response leaves behind (relay's,
/// checkout-events') could land in the next function's init, round after round.
fn round_order(len: usize, round: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut state = (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for i in (1..len).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

/// Size of the deployment zip Lambda gets: the binary as `bootstrap`, deflated (`zip -9`, as
/// cargo-lambda's archive is).
pub fn zip_size(binary: &Path) -> anyhow::Result<u64> {
    let dir = std::env::temp_dir().join(format!("ferrocart-bench-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bootstrap = dir.join("bootstrap");
    std::fs::copy(binary, &bootstrap)?;
    let archive = dir.join("function.zip");
    let _ = std::fs::remove_file(&archive);
    let status = std::process::Command::new("zip")
        .current_dir(&dir)
        .args(["-q", "-9", "function.zip", "bootstrap"])
        .status()
        .context("running zip (apt-get install zip)")?;
    anyhow::ensure!(status.success(), "zip failed");
    let size = std::fs::metadata(&archive)?.len();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(size)
}

/// An API Gateway (payload 2.0) request built on the admin sample in `events/apigw/`, so it
/// carries the claims the JWT authorizer would pass.
pub fn api_event(
    sample: &Value,
    method: &str,
    route: &str,
    path: &str,
    parameters: &[(&str, &str)],
    query: &str,
) -> Value {
    let mut event = sample.clone();
    event["routeKey"] = json!(format!("{method} {route}"));
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["routeKey"] = json!(format!("{method} {route}"));
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    if let Some(fields) = event.as_object_mut() {
        fields.remove("body");
        fields.remove("pathParameters");
        fields.remove("queryStringParameters");
        if !parameters.is_empty() {
            fields.insert(
                "pathParameters".into(),
                Value::Object(parameters.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect()),
            );
        }
        if let Some((name, value)) = query.split_once('=') {
            fields.insert("queryStringParameters".into(), json!({ name: value }));
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn every_round_starts_each_binary_once_and_no_binary_always_follows_the_same_one() {
        let (len, rounds) = (16, 20);
        let orders: Vec<Vec<usize>> = (0..rounds).map(|round| round_order(len, round)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..len).collect::<Vec<_>>());
        }
        for subject in 0..len {
            let predecessors: std::collections::BTreeSet<Option<usize>> = orders
                .iter()
                .map(|order| {
                    order.iter().position(|&i| i == subject).and_then(|at| at.checked_sub(1).map(|p| order[p]))
                })
                .collect();
            assert!(predecessors.len() >= 5, "binary {subject} followed only {predecessors:?} over {rounds} rounds");
        }
        assert_eq!(round_order(len, 3), round_order(len, 3), "a round's order is repeatable");
    }
}
