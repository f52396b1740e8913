//! The one list of every configuration key: its type, default, environment
//! variable and documentation. Loading, validation, `kircd config keys` and the
//! README's reference table all come from this list. It is long because it is
//! one table, an entry per key; split by section it would no longer be the
//! one place to read them all.

use std::time::Duration;

/// What values a key accepts.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Path,
    Bool,
    Int { min: i64, max: i64 },
    Duration { min: Duration, max: Duration },
    Choice(&'static [&'static str]),
}

/// A key's default value, or how it is found when not set.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    /// No default: the key is optional, or required in some setups (the
    /// validation says which).
    Unset,
    Str(&'static str),
    Int(i64),
    Bool(bool),
    /// Worked out at load time; the text says how.
    Computed(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// `section.name`, as in the TOML file.
    pub key: &'static str,
    pub kind: Kind,
    pub default: Default,
    /// Never printed; may only come from the environment (not the file), so
    /// that the config file can be shared or committed without leaking it.
    pub secret: bool,
    pub doc: &'static str,
}

impl KeySpec {
    /// The environment variable that overrides this key: `KIRC_` followed by
    /// the key in upper case with dots as underscores.
    pub fn env_var(&self) -> String {
        format!("KIRC_{}", self.key.replace('.', "_").to_ascii_uppercase())
    }

    pub fn section(&self) -> &'static str {
        self.key
            .split_once('.')
            .map_or(self.key, |(section, _)| section)
    }
}

const fn key(key: &'static str, kind: Kind, default: Default, doc: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        default,
        secret: false,
        doc,
    }
}

const fn secret(key: &'static str, doc: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind: Kind::Str,
        default: Default::Unset,
        secret: true,
        doc,
    }
}

const fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

pub const KEYS: &[KeySpec] = &[
    key(
        "actor.name",
        Kind::Str,
        Default::Computed("the login name"),
        "Display name of this actor: a label for humans, not an identity.",
    ),
    key(
        "identity.file",
        Kind::Path,
        Default::Computed("$XDG_DATA_HOME/kirc/identity.key (~/.local/share/kirc/identity.key)"),
        "The identity (Ed25519 and X25519 secret keys) made by `kircd init`; mode 0600.",
    ),
    key(
        "kafka.bootstrap_servers",
        Kind::Str,
        Default::Str("127.0.0.1:19092"),
        "Comma-separated host:port list of the actor's own Kafka cluster.",
    ),
    key(
        "kafka.security_protocol",
        Kind::Choice(&["plaintext", "ssl", "sasl_ssl"]),
        Default::Str("plaintext"),
        "plaintext (local stack only), ssl (TLS with a client certificate) or sasl_ssl (TLS with SCRAM, as on Aiven).",
    ),
    key(
        "kafka.ca_file",
        Kind::Path,
        Default::Unset,
        "PEM CA certificate that signed the broker's certificate (ssl, sasl_ssl); the system store when unset.",
    ),
    key(
        "kafka.client_cert_file",
        Kind::Path,
        Default::Unset,
        "PEM client certificate (required for ssl).",
    ),
    key(
        "kafka.client_key_file",
        Kind::Path,
        Default::Unset,
        "PEM private key of the client certificate (required for ssl).",
    ),
    key(
        "kafka.sasl_mechanism",
        Kind::Choice(&["SCRAM-SHA-256", "SCRAM-SHA-512"]),
        Default::Str("SCRAM-SHA-256"),
        "SCRAM mechanism for sasl_ssl.",
    ),
    key(
        "kafka.sasl_username",
        Kind::Str,
        Default::Unset,
        "SCRAM user name (required for sasl_ssl).",
    ),
    key(
        "kafka.sasl_password_file",
        Kind::Path,
        Default::Unset,
        "File holding the SCRAM password (sasl_ssl); or set KIRC_KAFKA_SASL_PASSWORD.",
    ),
    secret(
        "kafka.sasl_password",
        "The SCRAM password itself; environment only.",
    ),
    key(
        "kafka.topic_prefix",
        Kind::Str,
        Default::Str(""),
        "Prefix of the four topic names, so that several actors can share one cluster.",
    ),
    key(
        "kafka.topic_data_in",
        Kind::Str,
        Default::Computed("<topic_prefix>data-in"),
        "Inbox: chat envelopes from other actors.",
    ),
    key(
        "kafka.topic_data_out",
        Kind::Str,
        Default::Computed("<topic_prefix>data-out"),
        "Outbox: every envelope this actor sends, durable until delivered.",
    ),
    key(
        "kafka.topic_rpc_in",
        Kind::Str,
        Default::Computed("<topic_prefix>rpc-in"),
        "Control inbox: contact requests, receipts, presence, typing, signalling.",
    ),
    key(
        "kafka.topic_rpc_out",
        Kind::Str,
        Default::Computed("<topic_prefix>rpc-out"),
        "Control outbox.",
    ),
    key(
        "kafka.create_topics",
        Kind::Bool,
        Default::Bool(true),
        "Create missing topics at start (needs the CreateTopics permission); otherwise only report them.",
    ),
    key(
        "kafka.partitions",
        Kind::Int { min: 1, max: 64 },
        Default::Int(2),
        "Partitions of each topic kircd creates (Aiven's free tier allows 2).",
    ),
    key(
        "kafka.replication_factor",
        Kind::Int { min: -1, max: 16 },
        Default::Int(-1),
        "Replication factor of each topic kircd creates; -1 takes the broker's default.",
    ),
    key(
        "public.bootstrap_servers",
        Kind::Str,
        Default::Computed("kafka.bootstrap_servers"),
        "Bootstrap servers contacts use to reach your inbox, as published in your profile.",
    ),
    key(
        "public.security_protocol",
        Kind::Choice(&["plaintext", "ssl", "sasl_ssl"]),
        Default::Computed("kafka.security_protocol"),
        "How contacts connect to your cluster.",
    ),
    key(
        "public.sasl_mechanism",
        Kind::Choice(&["SCRAM-SHA-256", "SCRAM-SHA-512"]),
        Default::Str("SCRAM-SHA-256"),
        "SCRAM mechanism of the public credential.",
    ),
    key(
        "public.username",
        Kind::Str,
        Default::Unset,
        "The write-only, quota-limited user contacts use (sasl_ssl); it may write to data-in and rpc-in only.",
    ),
    key(
        "public.password_file",
        Kind::Path,
        Default::Unset,
        "File holding that user's password; or set KIRC_PUBLIC_PASSWORD. It is shared with your contacts.",
    ),
    secret(
        "public.password",
        "The public user's password itself; environment only.",
    ),
    key(
        "public.ca_file",
        Kind::Path,
        Default::Unset,
        "PEM CA certificate contacts need to trust your brokers; published in your profile.",
    ),
    key(
        "messaging.read_receipts",
        Kind::Bool,
        Default::Bool(true),
        "Tell contacts when you have read their messages.",
    ),
    key(
        "messaging.receipt_ranges",
        Kind::Bool,
        Default::Bool(true),
        "Acknowledge runs of messages with one small receipt instead of listing every message (contacts whose kircd predates it get lists either way); false makes this kircd speak as one that predates it.",
    ),
    key(
        "messaging.channel_max_members",
        Kind::Int { min: 2, max: 100 },
        Default::Int(50),
        "The most members a channel this actor creates takes, itself included (at most 100: the owner relays the whole roster in one envelope). The owner relays every message to every member: a message to N members costs its Kafka N deliveries of egress, paced under kafka.budget_bytes_per_second.",
    ),
    key(
        "messaging.invite_ttl",
        Kind::Duration {
            min: seconds(60),
            max: seconds(365 * 24 * 3600),
        },
        Default::Str("7days"),
        "How long an invite stays valid.",
    ),
    key(
        "messaging.outbox_check_interval",
        Kind::Duration {
            min: Duration::from_secs(1),
            max: seconds(24 * 3600),
        },
        Default::Str("10min"),
        "How often kircd looks for messages that expired from data-out before their contact could be reached (offline longer than its retention) and sends them again.",
    ),
    key(
        "messaging.quarantine_max_rows",
        Kind::Int {
            min: 0,
            max: 10_000_000,
        },
        Default::Int(10_000),
        "Rejected records kept in the database for inspection at most; the oldest are dropped first (counted as quarantine_dropped), and one batch of the inbox writes at most an eighth of this, its newest. 0 keeps none.",
    ),
    key(
        "messaging.quarantine_max_bytes",
        Kind::Int {
            min: 0,
            max: 1_073_741_824,
        },
        Default::Int(8_388_608),
        "Bytes of rejected records (at most 4 KiB of each) kept at most; the oldest are dropped first. Aiven's free PostgreSQL has 1 GB in all.",
    ),
    key(
        "messaging.rejection_log_burst",
        Kind::Int {
            min: 0,
            max: 10_000,
        },
        Default::Int(5),
        "Rejected records logged one line each per reason and interval; the rest of the interval becomes one summary line.",
    ),
    key(
        "messaging.rejection_log_interval",
        Kind::Duration {
            min: Duration::from_secs(1),
            max: seconds(24 * 3600),
        },
        Default::Str("1min"),
        "The interval of messaging.rejection_log_burst.",
    ),
    key(
        "kafka.keep_warm_interval",
        Kind::Duration {
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 3600 - 1),
        },
        Default::Str("6h"),
        "How often kircd produces and consumes a heartbeat on its own cluster, so that Aiven's free tier (off after 24 h idle) stays on; under 24 h.",
    ),
    key(
        "kafka.budget_bytes_per_second",
        Kind::Int {
            min: 1024,
            max: 1_073_741_824,
        },
        Default::Int(192_000),
        "Outgoing bytes per second kircd allows itself per cluster (its own and each contact's); 75 % of Aiven's free-tier 250 KiB/s (older documents say 125 KiB/s: lower it to 96000 there).",
    ),
    key(
        "presence.heartbeat",
        Kind::Duration {
            min: Duration::from_millis(200),
            max: seconds(3600),
        },
        Default::Str("60s"),
        "How often your presence is repeated to contacts; they count you offline after three missed heartbeats.",
    ),
    key(
        "presence.idle",
        Kind::Duration {
            min: Duration::from_millis(200),
            max: seconds(7 * 24 * 3600),
        },
        Default::Str("10min"),
        "Away after this long without a key pressed in any kirc-tui.",
    ),
    key(
        "presence.rate_limit",
        Kind::Int {
            min: 1,
            max: 1_000_000,
        },
        Default::Int(3000),
        "Records one contact may send you per minute, counted by the minute they reached your inbox (so a backlog read after time offline is not a flood); more are dropped and counted (rate_limited).",
    ),
    key(
        "rtc.enabled",
        Kind::Bool,
        Default::Bool(true),
        "Hold a direct WebRTC data channel with each accepted contact that is online (chat, typing and presence take it; Kafka stays the durable path). false: Kafka only.",
    ),
    key(
        "rtc.stun_urls",
        Kind::Str,
        Default::Str("stun:stun.l.google.com:19302"),
        "STUN servers (stun: or stuns: URLs, separated by commas) that tell kircd its public address, so that two contacts behind ordinary home NATs connect; empty: host candidates only.",
    ),
    key(
        "rtc.turn_url",
        Kind::Str,
        Default::Unset,
        "A TURN server (turn: or turns: URL) that relays when no direct route exists (symmetric NATs, strict firewalls).",
    ),
    key(
        "rtc.turn_username",
        Kind::Str,
        Default::Unset,
        "User name on the TURN server (required with rtc.turn_url).",
    ),
    key(
        "rtc.turn_credential_file",
        Kind::Path,
        Default::Unset,
        "File holding the TURN credential; or set KIRC_RTC_TURN_CREDENTIAL.",
    ),
    secret(
        "rtc.turn_credential",
        "The TURN credential itself; environment only.",
    ),
    key(
        "rtc.ice_transport_policy",
        Kind::Choice(&["all", "relay"]),
        Default::Str("all"),
        "all: any route (host, server-reflexive, relay); relay: only through the TURN server, which then sees every connection and hides your address from contacts.",
    ),
    key(
        "rtc.udp_bind",
        Kind::Str,
        Default::Str("0.0.0.0:0"),
        "UDP addresses (ip:port, separated by commas; port 0 picks a free one) the direct path binds; 127.0.0.1:0 keeps it on loopback.",
    ),
    key(
        "rtc.max_peers",
        Kind::Int { min: 1, max: 1024 },
        Default::Int(32),
        "At most this many direct connections at once. A contact you chat with takes the place of the connection unused the longest; contacts that are merely online wait for a free place.",
    ),
    key(
        "files.download_dir",
        Kind::Path,
        Default::Computed(
            "the XDG download folder (XDG_DOWNLOAD_DIR in user-dirs.dirs), else ~/Downloads",
        ),
        "Where received files are saved (an absolute path); kircd creates it, owner-only, when the first file arrives.",
    ),
    key(
        "files.auto_accept_bytes",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
        Default::Int(8 * 1024 * 1024),
        "Offers from accepted contacts of at most this many bytes (all files together) are accepted without asking; 0: ask for every offer.",
    ),
    key(
        "files.max_offer_bytes",
        Kind::Int {
            min: 1,
            max: i64::MAX,
        },
        Default::Int(64 * 1024 * 1024 * 1024),
        "Offers larger than this (all files together) are refused without being shown.",
    ),
    key(
        "postgres.url",
        Kind::Str,
        Default::Str("postgres://kirc@127.0.0.1:15432/kirc"),
        "PostgreSQL connection URI of the actor's own database (a password in it is accepted but better kept in postgres.password_file).",
    ),
    key(
        "postgres.password_file",
        Kind::Path,
        Default::Unset,
        "File holding the PostgreSQL password; or set KIRC_POSTGRES_PASSWORD.",
    ),
    secret(
        "postgres.password",
        "The PostgreSQL password itself; environment only.",
    ),
    key(
        "postgres.max_connections",
        Kind::Int { min: 1, max: 20 },
        Default::Int(8),
        "Connection pool size (Aiven's free tier allows 20 connections in all). Each concurrent writer (a send, its QUEUED write, the delivery, the inbox, receipts) holds one for at least a round trip; with backends far away, fewer make calls wait.",
    ),
    key(
        "valkey.url",
        Kind::Str,
        Default::Str("redis://127.0.0.1:16379/0"),
        "Valkey URI: redis:// or rediss:// (TLS), with the database index as path.",
    ),
    key(
        "valkey.password_file",
        Kind::Path,
        Default::Unset,
        "File holding the Valkey password; or set KIRC_VALKEY_PASSWORD.",
    ),
    secret(
        "valkey.password",
        "The Valkey password itself; environment only.",
    ),
    key(
        "valkey.key_prefix",
        Kind::Str,
        Default::Str("kirc:"),
        "Prefix of every key and channel kircd uses, so that several actors can share one server.",
    ),
    key(
        "api.socket",
        Kind::Path,
        Default::Computed("$XDG_RUNTIME_DIR/kirc/kircd.sock, or /tmp/kirc-<uid>/kircd.sock"),
        "Unix socket of the daemon API. Its folder is made owner-only.",
    ),
    key(
        "api.event_buffer",
        Kind::Int {
            min: 16,
            max: 1_048_576,
        },
        Default::Int(4096),
        "Events kept for resuming subscribers; a subscriber further behind than this is cut off and starts again from a snapshot.",
    ),
    key(
        "log.level",
        Kind::Str,
        Default::Str("info"),
        "Log filter, as in RUST_LOG: a level (error, warn, info, debug, trace) or directives like kircd=debug,librdkafka=warn.",
    ),
    key(
        "log.directory",
        Kind::Path,
        Default::Computed("$XDG_STATE_HOME/kirc/logs (~/.local/state/kirc/logs)"),
        "Folder of the daily rolling log files.",
    ),
    key(
        "log.file",
        Kind::Bool,
        Default::Bool(true),
        "Write rolling log files as well as logging to stderr.",
    ),
    key(
        "health.probe_interval",
        Kind::Duration {
            min: Duration::from_millis(100),
            max: seconds(3600),
        },
        Default::Str("10s"),
        "How often each backend is checked while it is up.",
    ),
    key(
        "health.probe_timeout",
        Kind::Duration {
            min: Duration::from_millis(100),
            max: seconds(120),
        },
        Default::Str("5s"),
        "How long one check may take before the backend counts as down.",
    ),
    key(
        "health.retry_initial",
        Kind::Duration {
            min: Duration::from_millis(10),
            max: seconds(600),
        },
        Default::Str("500ms"),
        "First retry delay after a backend goes down; it doubles on each failure.",
    ),
    key(
        "health.retry_max",
        Kind::Duration {
            min: Duration::from_millis(10),
            max: seconds(3600),
        },
        Default::Str("30s"),
        "Cap of the retry delay.",
    ),
];

pub fn find(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.key == key)
}

/// The README's configuration reference, printed by `kircd config keys`.
pub fn markdown_reference() -> String {
    let mut out = String::from("| key | environment | default | meaning |\n|---|---|---|---|\n");
    for spec in KEYS {
        let default = match spec.default {
            Default::Unset => String::from("—"),
            Default::Str("") => String::from("\"\""),
            Default::Str(value) => format!("`{value}`"),
            Default::Int(value) => format!("`{value}`"),
            Default::Bool(value) => format!("`{value}`"),
            Default::Computed(how) => how.to_owned(),
        };
        let kind = match spec.kind {
            Kind::Choice(choices) => format!(" One of: {}.", choices.join(", ")),
            _ => String::new(),
        };
        let file = if spec.secret {
            " (not in the file)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| `{}`{file} | `{}` | {default} | {}{kind} |\n",
            spec.key,
            spec.env_var(),
            spec.doc
        ));
    }
    out
}

/// An environment file listing every `KIRC_*` variable, each commented out
/// with its meaning and default: the repository's `.env.example`, usable as
/// the systemd unit's `EnvironmentFile` once the wanted lines are uncommented.
pub fn env_example() -> String {
    let mut out = String::from(
        "# kircd's environment variables: each overrides the config key it names.\n\
         # Copy to ~/.config/kirc/kircd.env (the systemd unit reads it), keep it mode\n\
         # 0600 if it holds a password, and uncomment what you set.\n\
         # Generated by `kircd config env`; the README's table has the same list.\n\
         \n\
         # The config file to read instead of ~/.config/kirc/kircd.toml.\n\
         # KIRC_CONFIG=\n",
    );
    for spec in KEYS {
        // A literal default is shown as the value; one worked out at load
        // time is described, so that uncommenting the line never sets the
        // description itself.
        let (value, computed) = match spec.default {
            Default::Unset => (String::new(), String::new()),
            Default::Str(value) => (value.to_owned(), String::new()),
            Default::Int(value) => (value.to_string(), String::new()),
            Default::Bool(value) => (value.to_string(), String::new()),
            Default::Computed(how) => (String::new(), format!(" Default: {how}.")),
        };
        out.push_str(&format!(
            "\n# {} ({}): {}{computed}\n",
            spec.key,
            kind_name(spec),
            spec.doc
        ));
        if spec.secret {
            out.push_str(
                "# A secret: only here or in the *_file key's file, never in kircd.toml.\n",
            );
        }
        out.push_str(&format!("# {}={value}\n", spec.env_var()));
    }
    out
}

fn kind_name(spec: &KeySpec) -> String {
    match spec.kind {
        Kind::Str => "text".to_owned(),
        Kind::Path => "path".to_owned(),
        Kind::Bool => "true or false".to_owned(),
        Kind::Int { min, max } => format!("integer {min}..{max}"),
        Kind::Duration { .. } => "duration, e.g. 30s or 5m".to_owned(),
        Kind::Choice(choices) => format!("one of {}", choices.join(", ")),
    }
}
