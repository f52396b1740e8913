//! `kircd run`: builds the subsystems, starts them as components in one
//! list, serves until a signal, and stops them in the reverse order.
//!
//! Start: load the identity → bind the socket (refusing a second kircd) →
//! the systemd watchdog → the backend supervisors → loading the state →
//! the transport's workers (inbox, delivery, keep-warm, traffic figures)
//! and the outbox check → following Valkey → the direct path's peer
//! manager → the own presence → the API →
//! READY. Stop: STOPPING → tell subscribers → the same list backwards: the
//! API stops accepting and ends its streams, contacts are told "offline"
//! while the workers still deliver, the workers store their offsets, the
//! sends' QUEUED writes end and the outbox is flushed, the supervisors stop
//! and the pool closes; then the socket is removed. A new subsystem is built and started here, in
//! its place in the list.

mod components;
mod load;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use kirc_proto::v1::{Backend, BackendState};
use kirc_proto::wire::v1 as wire;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::backends::kafka::{Cluster, KafkaProbe, OwnTopics};
use crate::backends::postgres::PostgresProbe;
use crate::backends::traffic::{self, Budgets};
use crate::backends::valkey::ValkeyProbe;
use crate::backends::{postgres, sd_notify, supervise, valkey};
use crate::book::ContactBook;
use crate::channels::handlers::RecordHandler;
use crate::channels::{self, Channels, ChannelsConfig};
use crate::config::Config;
use crate::contacts::{AcceptedHandler, Contacts, OwnProfile, RequestHandler};
use crate::crypto::identity::Identity;
use crate::hub::Hub;
use crate::live::{self, Live, keys::Keys};
use crate::messaging::{self, ChatStore, Messaging, ReceiptHandler, ReceiptRangeHandler};
use crate::peers::signal::SignalHandler;
use crate::peers::{self, Peers};
use crate::presence::{self, Presence, PresenceHandler, TypingHandler};
use crate::store::QuarantineBounds;
use crate::transfers::manifest::OfferLimits;
use crate::transfers::{self, AnswerHandler, OfferHandler, Transfers, TransfersHandle};
use crate::transport::Lane;
use crate::transport::direct::FileChannels;
use crate::transport::inbox::{Inbox, Limits, RateCounts};
use crate::transport::kafka::keep_warm::{self, HeartbeatHandler};
use crate::transport::kafka::{Outbox, PeerProducers, delivery, handoff};
use crate::transport::marks::Marks;
use crate::transport::outbound::Outbound;
use crate::transport::rejections::Rejections;
use crate::transport::router::Router;
use components::{Component, Components};
use load::Loader;

/// How long open API calls may take to finish at shutdown.
const API_GRACE: Duration = Duration::from_secs(3);

/// The longest kircd waits for its backends before telling systemd it is
/// ready anyway; the unit's start timeout is 90 s.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// How long the outbox may take to hand over what it holds at shutdown.
const OUTBOX_FLUSH: Duration = Duration::from_secs(5);
/// The most posts one channel keeps waiting for the session that opens
/// them: a bound on what an owner (or a member who never shares its key)
/// can make this actor store unread.
const CHANNEL_MAX_WAITING: u64 = 10_000;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Signals are caught from the start, so that a stop during start-up is
    // orderly too.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let identity = Arc::new(Identity::load(&config.identity_file)?);
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
    hub.set_actor(identity.id(), config.actor_name.clone());
    let mut running = Components::default();

    let stop = CancellationToken::new();
    let mut watchdog = Component::new("systemd watchdog", stop.clone());
    if let Some(task) = sd_notify::spawn(Arc::clone(&hub), stop) {
        watchdog = watchdog.task(task);
    }
    running.start(watchdog);

    // The backends, each under its supervisor.
    let client_id = format!("kircd-{}", config.actor_name);
    let budgets = Budgets::new(config.messaging.budget_bytes_per_second);
    let (hand_over, handed) = handoff::channel();
    let outbox = Outbox::new(&config.kafka, identity.id(), budgets.clone(), hand_over)
        .context("cannot create the outbox producer")?;
    let cluster = Cluster::on_client(outbox.client(), &config.kafka, &client_id);
    let pg_options = postgres::connect_options(&config.postgres)?;
    let pool = postgres::pool(
        pg_options.clone(),
        config.postgres.max_connections,
        config.health.probe_timeout,
    );
    let valkey = valkey::connect(&config.valkey, config.health.probe_timeout)?;
    let stop = CancellationToken::new();
    let closing_pool = pool.clone();
    running.start(
        Component::new("backend supervisors", stop.clone())
            .task(supervise::spawn(
                Backend::Kafka,
                KafkaProbe::new(cluster, Arc::clone(&hub), config.health.probe_timeout),
                Arc::clone(&hub),
                config.health.clone(),
                stop.clone(),
            ))
            .task(supervise::spawn(
                Backend::Postgres,
                PostgresProbe::new(pool.clone(), pg_options, config.health.probe_timeout),
                Arc::clone(&hub),
                config.health.clone(),
                stop.clone(),
            ))
            .task(supervise::spawn(
                Backend::Valkey,
                ValkeyProbe::new(valkey.clone()),
                Arc::clone(&hub),
                config.health.clone(),
                stop,
            ))
            .finally(async move { closing_pool.close().await }.boxed()),
    );

    // The subsystems, bottom up.
    let valkey_client = valkey::client(&config.valkey)?;
    let valkey_db = valkey_client.get_connection_info().redis_settings().db();
    let live = Live::new(
        Keys::new(valkey, &config.valkey.key_prefix, valkey_db),
        Arc::clone(&hub),
        config.presence.clone(),
    );
    let book = Arc::new(ContactBook::new(Arc::clone(&identity)));
    let outbound = Arc::new(Outbound::new(Arc::clone(&identity), outbox.clone()));
    let own = OwnProfile::new(Arc::clone(&identity), &config);
    let contacts = Contacts::new(
        pool.clone(),
        Arc::clone(&hub),
        Arc::clone(&book),
        Arc::clone(&outbound),
        own.clone(),
        config.messaging.invite_ttl,
    );
    let messaging = Messaging::new(
        pool.clone(),
        Arc::clone(&hub),
        Arc::clone(&book),
        Arc::clone(&outbound),
        config.messaging.read_receipts,
        config.messaging.receipt_ranges,
    );
    let chat = ChatStore(Arc::clone(&messaging));
    let marks = Arc::new(Marks::default());
    let rejections = Arc::new(Rejections::default());
    // Signalling from the inbox to the peer manager, and records from the
    // data channels back to the inbox.
    let (signals, signals_received) = tokio::sync::mpsc::channel(256);
    let (direct_records, direct_received) = tokio::sync::mpsc::channel(4096);
    // Frames of the files channels, from the peer manager to the transfers;
    // a full queue holds the channel's reader, and so the sender. Four
    // frames of up to 256 KiB: what a resume after a kill may send twice
    // stays within its bound.
    let (file_frames, file_frames_received) = tokio::sync::mpsc::channel(4);
    let (transfers, transfer_commands) = TransfersHandle::new(Arc::clone(&book), &config.files);

    // The channels' engine starts here, for the router to hand it records;
    // as a component it stops after the API and before the workers (below).
    let channels_stop = CancellationToken::new();
    let (channels, channel_tasks) = Channels::start(
        channels::Parts {
            pool: pool.clone(),
            identity: Arc::clone(&identity),
            own: own.clone(),
            book: Arc::clone(&book),
            contacts: Arc::clone(&contacts),
            hub: Arc::clone(&hub),
            outbound: Arc::clone(&outbound),
            awaited: messaging.awaited(),
            config: ChannelsConfig {
                capacity: config.messaging.channel_max_members,
                invite_ttl: config.messaging.invite_ttl,
                max_waiting: CHANNEL_MAX_WAITING,
                retry_initial: config.health.retry_initial,
                retry_max: config.health.retry_max,
            },
        },
        &channels_stop,
    );

    // Every kind of record the inbox accepts, and who handles it.
    let mut router = Router::new(Arc::new(chat.clone()));
    router
        .on(
            wire::Kind::ContactRequest,
            Arc::new(RequestHandler {
                pool: pool.clone(),
                hub: Arc::clone(&hub),
                book: Arc::clone(&book),
                outbound: Arc::clone(&outbound),
                own,
                channels: Some(Arc::new(channels.clone())),
            }),
        )
        .on(
            wire::Kind::ContactAccepted,
            Arc::new(AcceptedHandler {
                pool: pool.clone(),
                hub: Arc::clone(&hub),
                book: Arc::clone(&book),
            }),
        )
        .on(
            wire::Kind::Receipt,
            Arc::new(ReceiptHandler(Arc::clone(&messaging))),
        )
        .on(
            wire::Kind::ReceiptRange,
            Arc::new(ReceiptRangeHandler(Arc::clone(&messaging))),
        )
        .on(
            wire::Kind::Presence,
            Arc::new(PresenceHandler(Arc::clone(&live))),
        )
        .on(
            wire::Kind::Typing,
            Arc::new(TypingHandler(Arc::clone(&live))),
        )
        .on(
            wire::Kind::Heartbeat,
            Arc::new(HeartbeatHandler {
                hub: Arc::clone(&hub),
            }),
        )
        .on(wire::Kind::Signal, Arc::new(SignalHandler { signals }))
        .on(
            wire::Kind::FileOffer,
            Arc::new(OfferHandler {
                transfers: transfers.clone(),
                limits: OfferLimits {
                    max_total_bytes: config.files.max_offer_bytes,
                },
            }),
        )
        .on(
            wire::Kind::FileAnswer,
            Arc::new(AnswerHandler {
                transfers: transfers.clone(),
            }),
        );
    let channel_records = Arc::new(RecordHandler(channels.clone()));
    for kind in [
        wire::Kind::ChannelPost,
        wire::Kind::ChannelRelay,
        wire::Kind::ChannelCommand,
        wire::Kind::ChannelKey,
    ] {
        router.on(
            kind,
            Arc::clone(&channel_records) as Arc<dyn crate::transport::router::ControlHandler>,
        );
    }

    let stop = CancellationToken::new();
    running.start(
        Component::new("state loading", stop.clone()).task(tokio::spawn(
            Loader {
                pool: pool.clone(),
                hub: Arc::clone(&hub),
                book: Arc::clone(&book),
                marks: Arc::clone(&marks),
                rejections: Arc::clone(&rejections),
                contacts: Arc::clone(&contacts),
                messaging: Arc::clone(&messaging),
                health: config.health.clone(),
            }
            .run(stop),
        )),
    );

    let own_topics = Arc::new(OwnTopics::new(config.kafka.clone(), identity.id()));
    let inbox = Arc::new(Inbox {
        kafka: config.kafka.clone(),
        topics: Arc::clone(&own_topics),
        health: config.health.clone(),
        limits: Limits {
            rejection_log_burst: config.messaging.rejection_log_burst,
            rejection_log_interval: config.messaging.rejection_log_interval,
            quarantine: QuarantineBounds {
                rows: config.messaging.quarantine_max_rows,
                bytes: config.messaging.quarantine_max_bytes,
            },
        },
        pool: pool.clone(),
        hub: Arc::clone(&hub),
        book: Arc::clone(&book),
        live: Arc::clone(&live),
        router,
        marks,
        rejections: Arc::clone(&rejections),
        direct: std::sync::Mutex::new(Some(direct_received)),
        rate_counts: RateCounts::starting_in(
            kirc_proto::unix_ms(std::time::SystemTime::now()) / 60_000,
        ),
    });
    let delivery = delivery::Delivery {
        topics: own_topics,
        health: config.health.clone(),
        book: Arc::clone(&book),
        transport: Arc::new(PeerProducers::new(identity.id(), budgets.clone())),
        delivered: Arc::new(chat),
    };
    let stop = CancellationToken::new();
    let flushing = outbox;
    let settling = Arc::clone(&messaging);
    running.start(
        Component::new("workers", stop.clone())
            .task(tokio::spawn(inbox.run(stop.clone())))
            .task(tokio::spawn(delivery::run(
                delivery.clone(),
                Lane::Data,
                handed.data,
                stop.clone(),
            )))
            .task(tokio::spawn(delivery::run(
                delivery,
                Lane::Control,
                handed.control,
                stop.clone(),
            )))
            .task(tokio::spawn(keep_warm::run(
                Arc::clone(&outbound),
                Arc::clone(&hub),
                config.messaging.keep_warm_interval,
                stop.clone(),
            )))
            .task(tokio::spawn(messaging::check_outbox(
                Arc::clone(&messaging),
                config.messaging.outbox_check_interval,
                stop.clone(),
            )))
            .task(tokio::spawn(traffic::report(
                budgets,
                Arc::clone(&hub),
                stop,
            )))
            // The sends' QUEUED writes end, and what the workers produced
            // last is acknowledged, before the backends stop.
            .finally(
                async move {
                    settling.settle().await;
                    let _ = tokio::task::spawn_blocking(move || flushing.flush(OUTBOX_FLUSH)).await;
                }
                .boxed(),
            ),
    );

    // The channels send through the workers' outbox: they stop first.
    let mut channels_component = Component::new("channels", channels_stop);
    for task in channel_tasks {
        channels_component = channels_component.task(task);
    }
    running.start(channels_component);

    let stop = CancellationToken::new();
    running.start(
        Component::new("valkey follower", stop.clone()).task(live::spawn(
            Arc::clone(&live),
            Arc::clone(&book),
            valkey_client,
            config.health.clone(),
            stop,
        )),
    );

    // The direct path, once contacts' presence is followed; stopped after
    // the own presence said "offline" (over it, where open).
    let mut file_channels: Option<Arc<dyn FileChannels>> = None;
    if config.rtc.enabled {
        let stop = CancellationToken::new();
        let peers = peers::spawn(
            Peers {
                config: config.rtc.clone(),
                book: Arc::clone(&book),
                live: Arc::clone(&live),
                outbound: Arc::clone(&outbound),
                hub: Arc::clone(&hub),
                inbound: direct_records,
                files: file_frames,
            },
            signals_received,
            stop.clone(),
        );
        outbound.set_direct(
            Arc::clone(&peers.channels) as Arc<dyn crate::transport::direct::DirectPath>
        );
        file_channels = Some(Arc::clone(&peers.channels) as Arc<dyn FileChannels>);
        running.start(
            Component::new("peer manager", stop).finally(async move { peers.join().await }.boxed()),
        );
    }

    // The transfers, over the direct path; stopped before it, so that no
    // sender writes to a closing channel.
    let stop = CancellationToken::new();
    let transfers_task = transfers::spawn(
        Transfers {
            pool: pool.clone(),
            hub: Arc::clone(&hub),
            book: Arc::clone(&book),
            outbound: Arc::clone(&outbound),
            rejections: Arc::clone(&rejections),
            channels: file_channels,
            config: config.files.clone(),
        },
        transfer_commands,
        file_frames_received,
        stop.clone(),
    );
    running.start(
        Component::new("transfers", stop)
            .finally(async move { transfers_task.join().await }.boxed()),
    );

    // Contacts are told "offline" while the workers still deliver.
    let stop = CancellationToken::new();
    let presence = presence::spawn(
        Presence {
            hub: Arc::clone(&hub),
            book: Arc::clone(&book),
            live: Arc::clone(&live),
            outbound,
        },
        stop.clone(),
    );
    let presence_commands = presence.sender();
    running.start(
        Component::new("presence", stop).finally(async move { presence.join().await }.boxed()),
    );

    let api = api::spawn(
        listener,
        api::Services {
            hub: Arc::clone(&hub),
            contacts,
            messaging,
            presence: presence_commands,
            live,
            transfers,
            channels,
        },
    );
    let stop = CancellationToken::new();
    let stopping_api = stop.clone();
    running.start(Component::new("api", stop).task(tokio::spawn(async move {
        stopping_api.cancelled().await;
        api.shutdown(API_GRACE).await;
    })));

    // READY once every backend has been checked (up or down, as the STATUS
    // line sent with READY says) and, with PostgreSQL up, the state is loaded
    // so that commands work; but no later than READY_DEADLINE. A backend that
    // is down at boot is then reported and retried like any outage, instead
    // of systemd killing and restarting kircd in a loop.
    let started = async {
        hub.backends_checked().await;
        if hub.backend_state(Backend::Postgres) == BackendState::Up {
            book.wait_loaded().await;
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
    running.stop().await;
    socket_guard.remove();
    tracing::info!("stopped");
    Ok(())
}
