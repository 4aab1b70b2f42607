//! `gpures-daemon gpu probe`: one sample of this host's GPUs, printed.

use anyhow::{Context as _, Result};

use crate::cli::GpuCommand;
use crate::config::Config;
use crate::gpu::{Probe, probe_report};

/// Runs a `gpu` command.
///
/// # Errors
/// The probe failed.
pub async fn run(config: &Config, cmd: GpuCommand) -> Result<()> {
    let GpuCommand::Probe { json, repeat } = cmd;
    let probe = Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
    let report = tokio::task::spawn_blocking(move || probe_report(&probe, repeat.max(1), json))
        .await
        .context("the probe thread failed")??;
    print!("{report}");
    Ok(())
}
