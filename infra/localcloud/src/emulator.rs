//! Starting the emulators the local cloud runs itself: moto (when no `AWS_ENDPOINT_URL` is given)
//! and the Stripe emulator.
//!
//! Both are Python scripts in `infra/emulators/` with one contract: `python SCRIPT HOST PORT`
//! prints `READY` once it serves, and exits when its standard input closes. The local cloud
//! holds that pipe, so the emulators stop with it however it ends.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A cold Python on a busy machine can take a while to import moto or localstripe.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running emulator. Dropping it closes the emulator's stdin, which stops it.
#[derive(Debug)]
pub struct Emulator {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: Child,
}

/// A free loopback port (the OS picks one; we release it for the child to bind).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Emulator {
    /// Starts `script` with `python` (the emulators venv's interpreter) on a free port and waits
    /// until it is ready. `name` is for error messages.
    pub async fn start(name: &str, python: &Path, script: &Path) -> anyhow::Result<Self> {
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
            .with_context(|| format!("starting {name} with {} (run `make venv` to install it)", python.display()))?;
        let stdout = child.stdout.take().with_context(|| format!("{name} has no stdout"))?;
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
            Ok(_) => {
                bail!("{name} exited before it was ready (is it installed in {}? run `make venv`)", python.display())
            }
            Err(_) => bail!("{name} was not ready within {} s", READY_WITHIN.as_secs()),
        }
        // Keep draining stdout so the emulator never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { url: format!("http://127.0.0.1:{port}"), _child: child })
    }
}
