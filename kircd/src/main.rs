//! kircd: the K-IRC daemon. See ARCHITECTURE.md for the map.

use kircd::backends::logging;
use kircd::cli::{EXIT_ALREADY_RUNNING, EXIT_CONFIG, doctor, init, status, unit};
use kircd::{api, config, daemon};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kircd",
    version,
    about = "The K-IRC daemon: keeps your Kafka mailbox, PostgreSQL memory and Valkey cache connected, and serves kirc-tui on a Unix socket."
)]
struct Cli {
    /// Config file [default: $XDG_CONFIG_HOME/kirc/kircd.toml, if it exists].
    #[arg(long, global = true, env = "KIRC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log filter, overriding log.level (e.g. debug, or kircd=debug,librdkafka=info).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,

    /// Socket path, overriding api.socket.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set kircd up: write the config (from terraform/'s outputs, flags, or
    /// questions), create the identity if missing, then run the doctor's
    /// checks.
    Init(Box<init::InitArgs>),
    /// Run the daemon in the foreground (what the systemd unit runs).
    Run,
    /// Check the configuration, each backend, the topics and the socket folder.
    Doctor {
        /// How long each backend may take to answer.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show the running daemon's status.
    Status,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run kircd as a systemd user service.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Write ~/.config/systemd/user/kircd.service for this kircd binary and
    /// print the commands that enable it.
    Install {
        /// Also run them: daemon-reload, enable --now, loginctl enable-linger.
        #[arg(long)]
        now: bool,
    },
    /// Remove the unit.
    Uninstall {
        /// Also stop and disable it first, and reload systemd after.
        #[arg(long)]
        now: bool,
    },
    /// Say whether the unit is installed and current, running, and lingering.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every key that is set, its value (secrets redacted) and where it came from.
    Show,
    /// Print the reference of every key as a Markdown table.
    Keys,
    /// Print every KIRC_* environment variable as an environment file
    /// (the repository's .env.example).
    Env,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut flags = Vec::new();
    if let Some(level) = cli.log_level {
        flags.push(("log.level", "--log-level", level));
    }
    if let Some(socket) = cli.socket {
        flags.push((
            "api.socket",
            "--socket",
            socket.to_string_lossy().into_owned(),
        ));
    }
    let sources = config::Sources::from_process(cli.config.clone(), flags);
    let loaded = config::load(&sources);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kircd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };

    match cli.command {
        Command::Config {
            command: ConfigCommand::Keys,
        } => {
            print!("{}", config::keys::markdown_reference());
            ExitCode::SUCCESS
        }
        Command::Doctor { timeout } => {
            let checks = match &loaded {
                Ok(config) => runtime.block_on(doctor::run(config, timeout)),
                Err(err) => doctor::config_failure(err),
            };
            print!("{}", doctor::render(&checks));
            if doctor::passed(&checks) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Config {
            command: ConfigCommand::Env,
        } => {
            print!("{}", config::keys::env_example());
            ExitCode::SUCCESS
        }
        Command::Init(args) => {
            let Some(path) = cli.config.clone().or_else(config::default_file) else {
                eprintln!(
                    "kircd: cannot find your config folder (HOME is unset); pass --config FILE"
                );
                return ExitCode::from(EXIT_CONFIG);
            };
            runtime.block_on(init::run(*args, path, sources))
        }
        Command::Service { command } => {
            let result = match command {
                ServiceCommand::Install { now } => unit::install(cli.config.as_deref(), now),
                ServiceCommand::Uninstall { now } => unit::uninstall(now),
                ServiceCommand::Status => unit::status(cli.config.as_deref()),
            };
            result.unwrap_or_else(|err| {
                eprintln!("kircd: {err}");
                ExitCode::FAILURE
            })
        }
        Command::Run => with_config(loaded, |config| run(&runtime, config)),
        Command::Status => with_config(loaded, |config| {
            runtime.block_on(status::print(&config.api.socket))
        }),
        Command::Config {
            command: ConfigCommand::Show,
        } => with_config(loaded, |config| {
            print!("{}", status::render_config(&config));
            ExitCode::SUCCESS
        }),
    }
}

/// Runs `command` with a valid config, or reports the config error with the
/// exit code that says so.
fn with_config(
    loaded: Result<config::Config, config::ConfigError>,
    command: impl FnOnce(config::Config) -> ExitCode,
) -> ExitCode {
    match loaded {
        Ok(config) => command(config),
        Err(err) => {
            eprintln!("kircd: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(runtime: &tokio::runtime::Runtime, config: config::Config) -> ExitCode {
    let _log_guard = match logging::init(&config.log, true) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("kircd: {err:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match runtime.block_on(daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            if matches!(
                err.downcast_ref::<api::socket::Error>(),
                Some(api::socket::Error::AlreadyRunning { .. })
            ) {
                ExitCode::from(EXIT_ALREADY_RUNNING)
            } else if err
                .downcast_ref::<kircd::crypto::identity::IdentityError>()
                .is_some()
            {
                // A missing or unreadable identity is a setup problem, like a
                // bad config: restarting will not fix it.
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
