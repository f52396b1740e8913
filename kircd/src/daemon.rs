//! `kircd run`: wires the subsystems together, serves until a signal, and
//! shuts down in a defined order.
//!
//! Start: load the identity → bind the socket (refusing a second kircd) →
//! start the backend supervisors → start messaging → serve the API → READY.
//! Stop: STOPPING → tell subscribers → stop accepting and end streams →
//! stop messaging (offsets committed, outbox flushed) → stop the supervisors
//! → close the pool → remove the socket.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kirc_proto::v1::{Backend, BackendState};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::backends::kafka::{Cluster, KafkaProbe};
use crate::backends::postgres::PostgresProbe;
use crate::backends::traffic::Budgets;
use crate::backends::valkey::ValkeyProbe;
use crate::backends::valkey::store::Store;
use crate::backends::{postgres, sd_notify, supervise, valkey};
use crate::config::Config;
use crate::crypto::identity::Identity;
use crate::hub::Hub;
use crate::messaging::{self, Messaging};
use crate::presence::{self, Live};

/// How long open API calls may take to finish at shutdown.
const API_GRACE: Duration = Duration::from_secs(3);

/// The longest kircd waits for its backends before telling systemd it is
/// ready anyway; the unit's start timeout is 90 s.
const READY_DEADLINE: Duration = Duration::from_secs(60);

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Signals are caught from the start, so that a stop during start-up is
    // orderly too.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let identity = Identity::load(&config.identity_file)?;
    let (listener, socket_guard) = api::socket::bind(&config.api.socket)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        socket = %config.api.socket.display(),
        config = %config.file.as_ref().map_or_else(|| String::from("(defaults and environment)"), |path| path.display().to_string()),
        actor = %identity.id(),
        "kircd starting"
    );

    let hub = Hub::new(
        &[
            (Backend::Kafka, config.kafka.bootstrap_servers.clone()),
            (Backend::Postgres, config.postgres.endpoint.clone()),
            (Backend::Valkey, config.valkey.endpoint.clone()),
        ],
        config.api.event_buffer,
    );

    let backends_stop = CancellationToken::new();
    let client_id = format!("kircd-{}", config.actor_name);
    let cluster = Cluster::new(&config.kafka, &client_id)?;
    let pg_options = postgres::connect_options(&config.postgres)?;
    let pool = postgres::pool(
        pg_options.clone(),
        config.postgres.max_connections,
        config.health.probe_timeout,
    );
    let valkey = valkey::connect(&config.valkey, config.health.probe_timeout)?;
    let supervisors = [
        supervise::spawn(
            Backend::Kafka,
            KafkaProbe::new(cluster, Arc::clone(&hub), config.health.probe_timeout),
            Arc::clone(&hub),
            config.health.clone(),
            backends_stop.clone(),
        ),
        supervise::spawn(
            Backend::Postgres,
            PostgresProbe::new(pool.clone(), pg_options, config.health.probe_timeout),
            Arc::clone(&hub),
            config.health.clone(),
            backends_stop.clone(),
        ),
        supervise::spawn(
            Backend::Valkey,
            ValkeyProbe::new(valkey.clone()),
            Arc::clone(&hub),
            config.health.clone(),
            backends_stop.clone(),
        ),
    ];

    let valkey_client = valkey::client(&config.valkey)?;
    let valkey_db = valkey_client.get_connection_info().redis_settings().db();
    let live = Live::new(
        Store::new(valkey, &config.valkey.key_prefix, valkey_db),
        Arc::clone(&hub),
        config.presence.clone(),
    );
    let budgets = Budgets::new(config.messaging.budget_bytes_per_second);
    let messaging = Messaging::new(
        &config,
        identity,
        pool.clone(),
        Arc::clone(&hub),
        Arc::clone(&live),
        budgets,
    )?;
    let messaging_stop = CancellationToken::new();
    let messaging_task = messaging::spawn(Arc::clone(&messaging), messaging_stop.clone());

    let presence_stop = CancellationToken::new();
    let presence = presence::spawn(
        Arc::clone(&live),
        Arc::clone(&messaging),
        valkey_client,
        presence_stop.clone(),
    );
    let api = api::spawn(
        listener,
        Arc::clone(&hub),
        Arc::clone(&messaging),
        presence.sender(),
        live,
    );
    let systemd_stop = CancellationToken::new();
    let systemd_task = sd_notify::spawn(Arc::clone(&hub), systemd_stop.clone());

    // READY once every backend has been checked (up or down, as the STATUS
    // line sent with READY says) and, with PostgreSQL up, the state is loaded
    // so that commands work; but no later than READY_DEADLINE. A backend that
    // is down at boot is then reported and retried like any outage, instead
    // of systemd killing and restarting kircd in a loop.
    let started = async {
        hub.backends_checked().await;
        if hub.backend_state(Backend::Postgres) == BackendState::Up {
            messaging.wait_ready().await;
        }
    };
    let stop_during_start = tokio::select! {
        () = started => None,
        () = tokio::time::sleep(READY_DEADLINE) => {
            tracing::warn!(after = ?READY_DEADLINE, "not all backends are reachable yet; serving anyway and retrying");
            None
        }
        _ = sigterm.recv() => Some("SIGTERM"),
        _ = sigint.recv() => Some("SIGINT"),
    };
    let reason = match stop_during_start {
        Some(reason) => reason,
        None => {
            sd_notify::ready(&hub);
            tracing::info!("ready");
            tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = sigint.recv() => "SIGINT",
            }
        }
    };
    tracing::info!(signal = reason, "stopping");

    sd_notify::stopping();
    hub.shutting_down(reason);
    api.shutdown(API_GRACE).await;
    // Contacts are told "offline" while the workers still deliver.
    presence_stop.cancel();
    presence.join().await;
    // The workers finish the record in hand, store their offsets, commit,
    // and flush the outbox.
    messaging_stop.cancel();
    messaging_task.join().await;
    backends_stop.cancel();
    for supervisor in supervisors {
        supervisor.join().await;
    }
    pool.close().await;
    systemd_stop.cancel();
    if let Some(task) = systemd_task {
        let _ = task.await;
    }
    socket_guard.remove();
    tracing::info!("stopped");
    Ok(())
}
