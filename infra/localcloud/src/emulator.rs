//! Starting moto server when no `AWS_ENDPOINT_URL` is given.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running moto server. Dropping it closes moto's stdin, which stops it.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    _child: Child,
}

/// A free loopback port (the OS picks one; we release it for the child to bind).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Moto {
    /// Starts `infra/emulators/moto_server.py` with `python` (the emulators venv's interpreter)
    /// and waits until it answers.
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
            .with_context(|| format!("starting moto with {} (run `make venv` to install it)", python.display()))?;
        let stdout = child.stdout.take().context("moto has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
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
            Ok(_) => bail!("moto exited before it was ready"),
            Err(_) => bail!("moto was not ready within 60 s"),
        }
        // Keep draining stdout so moto never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { endpoint: format!("http://127.0.0.1:{port}"), _child: child })
    }
}
