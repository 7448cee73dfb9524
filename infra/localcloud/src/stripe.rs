//! Starting the local Stripe emulator: `infra/emulators/stripe_server.py`, localstripe patched to
//! answer like Stripe's test mode (documented test payment methods, declines, 3-D Secure,
//! idempotency keys; the script's docstring lists what it works around). Functions reach it
//! through `STRIPE_API_BASE`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::emulator::free_port;

/// The emulator is ready in about 0.4 s; a cold Python on a busy machine may need far longer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running Stripe emulator. Dropping it closes the emulator's stdin, which stops it.
#[derive(Debug)]
pub struct StripeEmulator {
    /// The base URL to give functions as `STRIPE_API_BASE` (`http://127.0.0.1:PORT`).
    pub url: String,
    _child: Child,
}

impl StripeEmulator {
    /// Starts `infra/emulators/stripe_server.py` with `python` (the emulators venv's interpreter,
    /// which has localstripe) and waits until it answers.
    pub async fn start(python: &Path, script: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut child = Command::new(python)
            .arg(script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting the Stripe emulator with {} (run `make venv` to install it)", python.display())
            })?;
        let stdout = child.stdout.take().context("the Stripe emulator has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_WITHIN, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "READY" {
                    return Ok::<bool, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(_) => bail!(
                "the Stripe emulator exited before it was ready (is localstripe in {}? run `make venv`)",
                python.display()
            ),
            Err(_) => bail!("the Stripe emulator was not ready within {} s", READY_WITHIN.as_secs()),
        }
        // Keep draining stdout so the emulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { url: format!("http://127.0.0.1:{port}"), _child: child })
    }
}
