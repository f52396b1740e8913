//! `kircd doctor`: checks the configuration, each backend, the topics and the
//! socket folder, and prints what is wrong with the fix for each. It uses the
//! same checks as the running daemon's supervisors.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::backends::kafka::Cluster;
use crate::backends::{postgres, valkey};
use crate::config::{Config, ConfigError, IcePolicy};
use crate::peers::probe::{self, Answer, ServerUrl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            verdict: Verdict::Ok,
            name,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            verdict: Verdict::Warn,
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            verdict: Verdict::Fail,
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The report of a config that did not load: nothing else can be checked.
pub fn config_failure(err: &ConfigError) -> Vec<Check> {
    let text = err.to_string();
    let (problem, fix) = match text.split_once("\n  fix: ") {
        Some((problem, fix)) => (problem.to_owned(), fix.to_owned()),
        None => (text, String::from("correct the configuration")),
    };
    vec![Check::fail("config", problem, fix)]
}

/// Runs every check against `config`.
pub async fn run(config: &Config, timeout: Duration) -> Vec<Check> {
    let mut checks = vec![Check::ok(
        "config",
        match &config.file {
            Some(path) => format!("{} (actor {})", path.display(), config.actor_name),
            None => format!("defaults and environment (actor {})", config.actor_name),
        },
    )];
    let (kafka, postgres, valkey, direct) = tokio::join!(
        check_kafka(config, timeout),
        check_postgres(config, timeout),
        check_valkey(config, timeout),
        check_direct_path(config, timeout)
    );
    checks.extend(kafka);
    checks.push(postgres);
    checks.push(valkey);
    checks.extend(direct);
    checks.push(check_socket_dir(config));
    checks.push(check_daemon(config).await);
    checks
}

async fn check_kafka(config: &Config, timeout: Duration) -> Vec<Check> {
    let endpoint = &config.kafka.bootstrap_servers;
    let cluster = match Cluster::new(&config.kafka, "kircd-doctor") {
        Ok(cluster) => cluster,
        Err(err) => {
            return vec![Check::fail(
                "kafka",
                format!("{endpoint}: {err}"),
                err.fix(&config.kafka),
            )];
        }
    };
    // The doctor only looks: creating topics is the daemon's job.
    let report = match cluster.inspect(timeout).await {
        Ok(report) => report,
        Err(err) => {
            return vec![
                Check::fail(
                    "kafka",
                    format!("{endpoint}: {err}"),
                    err.fix(&config.kafka),
                ),
                Check::fail(
                    "topics",
                    "not checked: Kafka is unreachable",
                    "fix Kafka first",
                ),
            ];
        }
    };
    let kafka = Check::ok(
        "kafka",
        format!("{endpoint}: reachable, {} broker(s)", report.brokers),
    );
    let listing = report
        .topics
        .iter()
        .map(|topic| {
            if topic.present {
                format!("{} ({} partitions)", topic.name, topic.partitions)
            } else {
                format!("{} MISSING", topic.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let missing: Vec<&str> = report
        .missing()
        .iter()
        .map(|topic| topic.name.as_str())
        .collect();
    let few_partitions: Vec<&str> = report
        .topics
        .iter()
        .filter(|topic| {
            topic.present && i64::from(topic.partitions) < i64::from(config.kafka.partitions)
        })
        .map(|topic| topic.name.as_str())
        .collect();
    let topics = if !missing.is_empty() {
        let fix = if config.kafka.create_topics {
            format!(
                "start kircd to create {} (kafka.create_topics = true), or create them with terraform/",
                missing.join(", ")
            )
        } else {
            format!(
                "run `terraform apply` in terraform/, which creates {} ({} partitions each); or, if kircd's user may create topics, set kafka.create_topics = true",
                missing.join(", "),
                config.kafka.partitions
            )
        };
        Check::fail("topics", listing, fix)
    } else if !few_partitions.is_empty() {
        Check::warn(
            "topics",
            listing,
            format!(
                "{} have fewer partitions than kafka.partitions = {}; ordering still holds, throughput is lower",
                few_partitions.join(", "),
                config.kafka.partitions
            ),
        )
    } else {
        Check::ok("topics", listing)
    };
    vec![kafka, topics]
}

async fn check_postgres(config: &Config, timeout: Duration) -> Check {
    let endpoint = &config.postgres.endpoint;
    let result = async {
        let options = postgres::connect_options(&config.postgres)?;
        let pool = postgres::pool(options.clone(), 1, timeout);
        let report = postgres::inspect(&pool, &options, timeout).await;
        pool.close().await;
        report
    };
    // A failed check spends one timeout on the pool and one on finding out
    // why; the bound only catches a hang.
    match tokio::time::timeout(timeout * 3, result).await {
        Ok(Ok(report)) if report.pending_migrations == 0 => Check::ok(
            "postgres",
            format!(
                "{endpoint}: PostgreSQL {}, schema up to date",
                report.server_version
            ),
        ),
        Ok(Ok(report)) => Check::ok(
            "postgres",
            format!(
                "{endpoint}: PostgreSQL {}, {} migration(s) to apply at the next start",
                report.server_version, report.pending_migrations
            ),
        ),
        Ok(Err(err)) => Check::fail(
            "postgres",
            format!("{endpoint}: {err}"),
            err.fix(&config.postgres),
        ),
        Err(_) => Check::fail(
            "postgres",
            format!(
                "{endpoint}: no answer within {}",
                humantime::format_duration(timeout)
            ),
            "check postgres.url and that the server is running (local stack: dev/stack up postgres)",
        ),
    }
}

async fn check_valkey(config: &Config, timeout: Duration) -> Check {
    let endpoint = &config.valkey.endpoint;
    let result = async {
        let mut connection = valkey::connect(&config.valkey, timeout)?;
        valkey::inspect(&mut connection).await
    };
    match tokio::time::timeout(timeout, result).await {
        Ok(Ok(report)) => {
            let detail = format!("{endpoint}: server {}", report.version);
            match report.keyspace_events.as_deref() {
                Some(events)
                    if !(events.contains('E')
                        && (events.contains('x') || events.contains('A'))) =>
                {
                    Check::warn(
                        "valkey",
                        format!("{detail}, notify-keyspace-events = \"{events}\""),
                        "enable expiry events for typing indicators: CONFIG SET notify-keyspace-events Ex (Aiven: valkey_notify_keyspace_events, set by terraform/)",
                    )
                }
                _ => Check::ok("valkey", detail),
            }
        }
        Ok(Err(err)) => Check::fail("valkey", format!("{endpoint}: {err}"), err.fix()),
        Err(_) => Check::fail(
            "valkey",
            format!(
                "{endpoint}: no answer within {}",
                humantime::format_duration(timeout)
            ),
            "check valkey.url and that the server is running (local stack: dev/stack up valkey)",
        ),
    }
}

/// Asks each STUN server and the TURN server (with the credential) once.
/// The direct path is a fast path beside Kafka, so a server that does not
/// answer is a warning, unless relay-only leaves no route without it.
async fn check_direct_path(config: &Config, timeout: Duration) -> Vec<Check> {
    let rtc = &config.rtc;
    if !rtc.enabled {
        return vec![Check::ok("direct path", "off (rtc.enabled = false)")];
    }
    let bind = rtc.udp_bind.first().map_or(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
        std::net::SocketAddr::ip,
    );
    let mut asks = Vec::new();
    for url in &rtc.stun_urls {
        asks.push(("stun", url.clone(), None));
    }
    if let Some(turn) = &rtc.turn {
        use secrecy::ExposeSecret as _;
        asks.push((
            "turn",
            turn.url.clone(),
            Some((
                turn.username.clone(),
                turn.credential.expose_secret().to_owned(),
            )),
        ));
    }
    if asks.is_empty() {
        return vec![Check::warn(
            "direct path",
            "no STUN or TURN server: only contacts on the same network can be reached directly",
            "set rtc.stun_urls (the default is Google's public STUN server)",
        )];
    }
    let relay_only = rtc.ice_policy == IcePolicy::Relay;
    let asked = asks.into_iter().map(|(name, url, credential)| async move {
        let server = ServerUrl::parse(&url);
        let answer = match server {
            Err(err) => Err(err),
            Ok(server) => {
                let asking = tokio::task::spawn_blocking(move || {
                    let credential = credential
                        .as_ref()
                        .map(|(user, password)| (user.as_str(), password.as_str()));
                    probe::ask(&server, credential, bind, timeout)
                });
                // The probe bounds its own exchange, but not the name lookup
                // before it, which without a network can take the
                // resolver's many seconds: the doctor does not wait for it.
                match tokio::time::timeout(timeout * 2, asking).await {
                    Ok(joined) => joined
                        .unwrap_or_else(|err| Err(probe::ProbeError::Turn(err.to_string()))),
                    Err(_) => Err(probe::ProbeError::NoAnswer(timeout * 2)),
                }
            }
        };
        match answer {
            Ok(Answer::Reflexive(address)) => {
                Check::ok(name, format!("{url}: answers; it sees this host as {address}"))
            }
            Ok(Answer::Relayed(address)) => Check::ok(
                name,
                format!("{url}: credential accepted; relayed address {address}"),
            ),
            Err(err @ probe::ProbeError::NotUdp(_)) => Check::ok(name, format!("{url}: not checked ({err})")),
            Err(err) => {
                let fix = if name == "turn" {
                    "check rtc.turn_url, rtc.turn_username and the credential, and that UDP to the server is allowed"
                } else {
                    "check rtc.stun_urls and that UDP to the server is allowed; without it, contacts behind NATs are reached over Kafka only"
                };
                let detail = format!("{url}: {err}");
                if name == "turn" && relay_only {
                    Check::fail(name, detail, format!("{fix} (rtc.ice_transport_policy = relay: no direct path without it)"))
                } else {
                    Check::warn(name, detail, fix)
                }
            }
        }
    });
    futures::future::join_all(asked).await
}

fn check_socket_dir(config: &Config) -> Check {
    let Some(dir) = config.api.socket.parent() else {
        return Check::fail(
            "socket dir",
            "api.socket has no parent folder",
            "set api.socket to a full path",
        );
    };
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Check::ok("socket dir", format!("{shown} will be created (mode 0700)"))
        }
        Err(err) => Check::fail(
            "socket dir",
            format!("{shown}: {err}"),
            "set api.socket to a path in a folder of your own",
        ),
        Ok(metadata) => {
            let uid = rustix::process::getuid().as_raw();
            let mode = metadata.mode() & 0o777;
            if metadata.uid() != uid {
                Check::fail(
                    "socket dir",
                    format!(
                        "{shown} belongs to uid {}, not to you (uid {uid})",
                        metadata.uid()
                    ),
                    "set api.socket to a path in a folder of your own",
                )
            } else if mode != 0o700 {
                Check::warn(
                    "socket dir",
                    format!("{shown} has mode {mode:o}: other users can reach the socket's folder"),
                    format!("chmod 700 {shown} (kircd also fixes it at start)"),
                )
            } else {
                Check::ok("socket dir", format!("{shown} (0700, yours)"))
            }
        }
    }
}

async fn check_daemon(config: &Config) -> Check {
    match kirc_proto::connect(&config.api.socket).await {
        Ok(mut client) => match client.get_status(kirc_proto::v1::GetStatusRequest {}).await {
            Ok(status) => {
                let status = status.into_inner();
                let heartbeat = if status.heartbeat_consumed_unix_ms > 0 {
                    let age = kirc_proto::unix_ms(std::time::SystemTime::now())
                        - status.heartbeat_consumed_unix_ms;
                    format!(
                        "; last keep-warm heartbeat {} ago",
                        humantime::format_duration(Duration::from_secs(
                            u64::try_from(age / 1000).unwrap_or(0)
                        ))
                    )
                } else {
                    String::from("; no keep-warm heartbeat consumed yet")
                };
                Check::ok(
                    "daemon",
                    format!(
                        "kircd {} running (pid {}, up {}){heartbeat}",
                        status.version,
                        status.pid,
                        humantime::format_duration(Duration::from_secs(status.uptime_ms / 1000))
                    ),
                )
            }
            Err(err) => Check::warn(
                "daemon",
                format!(
                    "a kircd answers on {} but GetStatus failed: {}",
                    config.api.socket.display(),
                    err.message()
                ),
                "restart it: it may be an incompatible version",
            ),
        },
        Err(err) => Check::warn(
            "daemon",
            err.to_string(),
            "start it: kircd run (or systemctl --user start kircd)",
        ),
    }
}

/// The report as text, one check per line with its fix beneath.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let mark = match check.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{mark}  {:<11} {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "      {:<11} fix: {fix}", "");
        }
    }
    let failures = checks
        .iter()
        .filter(|check| check.verdict == Verdict::Fail)
        .count();
    if failures == 0 {
        out.push_str("all checks passed\n");
    } else {
        let _ = writeln!(out, "{failures} check(s) failed");
    }
    out
}

pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|check| check.verdict != Verdict::Fail)
}
