//! The warm handler benchmark (`bench::warm`), built in release with the feature `warm` and run
//! by `ferrocart-bench warm`, which reads the JSON it writes to `--out`. Run on its own it
//! prints the figures to stderr.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Ferrocart's warm handler benchmark (in-process, storage in memory)")]
struct Cli {
    /// The repository (events/).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Timed calls per function.
    #[arg(long, default_value_t = 10_000)]
    calls: usize,
    /// Untimed calls first, per function.
    #[arg(long, default_value_t = 1_000)]
    warmup: usize,
    /// Where to write the results (JSON); stdout is the functions' own log and metric lines.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let summaries = runtime.block_on(bench::warm::run(&cli.root, cli.calls, cli.warmup))?;
    let value = serde_json::json!({
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "functions": summaries,
        "not_measured": bench::warm::NOT_MEASURED
            .iter()
            .map(|(function, why)| serde_json::json!({ "function": function, "why": why }))
            .collect::<Vec<_>>(),
    });
    if let Some(out) = &cli.out {
        std::fs::write(out, serde_json::to_string_pretty(&value)?).with_context(|| out.display().to_string())?;
    }
    Ok(())
}
