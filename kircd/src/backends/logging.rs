//! Logging: human-readable lines on stderr (without timestamps under
//! journald, which adds its own) and daily rolling files in the state dir.

use std::io::IsTerminal;
use std::os::unix::fs::DirBuilderExt;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogConfig;

/// Log files kept before the oldest is deleted.
const KEPT_FILES: usize = 7;

/// Installs the global subscriber. Keep the returned guard alive: dropping it
/// flushes the file writer.
pub fn init(config: &LogConfig, to_file: bool) -> anyhow::Result<Option<WorkerGuard>> {
    // The level was validated with the config.
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let stderr = if under_journald {
        stderr.without_time().boxed()
    } else {
        stderr.boxed()
    };

    let (file, guard) = if to_file && config.file {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.directory)
            .with_context(|| {
                format!(
                    "cannot create the log folder {}",
                    config.directory.display()
                )
            })?;
        let appender = tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("kircd")
            .filename_suffix("log")
            .max_log_files(KEPT_FILES)
            .build(&config.directory)
            .with_context(|| format!("cannot open a log file in {}", config.directory.display()))?;
        let (writer, guard) = tracing_appender::non_blocking(appender);
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false);
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };

    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()
        .context("a logger was already installed")?;
    Ok(guard)
}
