//! `kircd status` and `kircd config show`: what the daemon and the config say,
//! as text for humans.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kirc_proto::v1::{self as pb, BackendState};

use crate::backends::supervise::backend_name;
use crate::cli::EXIT_NOT_RUNNING;
use crate::config::Config;

pub async fn print(socket: &Path) -> ExitCode {
    let mut client = match kirc_proto::connect(socket).await {
        Ok(client) => client,
        Err(err) => {
            eprintln!("kircd: {err}");
            return ExitCode::from(EXIT_NOT_RUNNING);
        }
    };
    match client.get_status(pb::GetStatusRequest {}).await {
        Ok(status) => {
            let status = status.into_inner();
            // Contacts name the direct paths; without them, ids do.
            let names: HashMap<String, String> = client
                .list_contacts(pb::ListContactsRequest {})
                .await
                .map(|contacts| {
                    contacts
                        .into_inner()
                        .contacts
                        .into_iter()
                        .map(|contact| (contact.actor_id, contact.display_name))
                        .collect()
                })
                .unwrap_or_default();
            print!("{}", render_status(&status, &names));
            if status
                .backends
                .iter()
                .all(|backend| backend.state() == BackendState::Up)
            {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!(
                "kircd: the daemon on {} did not answer: {}",
                socket.display(),
                err.message()
            );
            ExitCode::from(EXIT_NOT_RUNNING)
        }
    }
}

pub fn render_status(status: &pb::Status, names: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kircd {} (api v{}), pid {}, up {}",
        status.version,
        status.api_version,
        status.pid,
        humantime::format_duration(Duration::from_secs(status.uptime_ms / 1000))
    );
    for backend in &status.backends {
        let state = match backend.state() {
            BackendState::Up => "up",
            BackendState::Down => "DOWN",
            BackendState::Connecting | BackendState::Unspecified => "connecting",
        };
        let _ = write!(
            out,
            "  {:<9} {:<10} {}",
            backend_name(backend.backend()),
            state,
            backend.endpoint
        );
        if !backend.last_error.is_empty() {
            let _ = write!(out, "  ({})", backend.last_error);
        }
        out.push('\n');
    }
    for topic in &status.topics {
        let _ = writeln!(
            out,
            "  topic     {:<10} {}{}",
            topic.role,
            topic.name,
            if topic.present {
                format!(" ({} partitions)", topic.partitions)
            } else {
                String::from(" MISSING")
            }
        );
    }
    if !status.actor_id.is_empty() {
        let _ = writeln!(
            out,
            "  actor     {} ({}){}",
            status.display_name,
            status.actor_id,
            if status.ready { "" } else { " — starting" }
        );
    }
    if let Some(presence) = &status.presence {
        let _ = writeln!(
            out,
            "  presence  {}{}{}",
            presence
                .state()
                .as_str_name()
                .trim_start_matches("PRESENCE_STATE_")
                .to_lowercase(),
            if presence.text.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", presence.text)
            },
            if presence.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", presence.reason)
            }
        );
    }
    let when = |unix_ms: i64| {
        if unix_ms == 0 {
            String::from("not yet")
        } else {
            jiff::Timestamp::from_millisecond(unix_ms)
                .map_or_else(|_| String::from("?"), |at| at.to_string())
        }
    };
    let _ = writeln!(
        out,
        "  keep-warm produced {}, consumed {}",
        when(status.heartbeat_produced_unix_ms),
        when(status.heartbeat_consumed_unix_ms)
    );
    for traffic in &status.traffic {
        let _ = writeln!(
            out,
            "  traffic   {}: {} B/s of {} B/s budget, {} B in all, {} sends paced",
            traffic.cluster,
            traffic.last_second_bytes,
            traffic.budget_bytes_per_second,
            traffic.total_bytes,
            traffic.paced
        );
    }
    for path in &status.direct_paths {
        let _ = writeln!(
            out,
            "  direct    {}: {}",
            names.get(&path.actor_id).unwrap_or(&path.actor_id),
            kirc_proto::direct_path_summary(path)
        );
    }
    if !status.rejected.is_empty() {
        let _ = writeln!(
            out,
            "  rejected  {}",
            kirc_proto::rejection_summary(&status.rejected)
        );
    }
    if let Some(inbox) = &status.inbox
        && (inbox.redelivered > 0 || inbox.quarantine_rows > 0 || inbox.quarantine_dropped > 0)
    {
        let _ = writeln!(
            out,
            "  inbox     {} redelivered; quarantine {} rows, {} bytes, {} dropped",
            inbox.redelivered,
            inbox.quarantine_rows,
            inbox.quarantine_bytes,
            inbox.quarantine_dropped
        );
    }
    if status.refused_connections > 0 {
        let _ = writeln!(
            out,
            "  refused connections from other users: {}",
            status.refused_connections
        );
    }
    out
}

pub fn render_config(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# config file: {}",
        config
            .file
            .as_ref()
            .map_or_else(|| String::from("none"), |path| path.display().to_string())
    );
    let _ = writeln!(out, "# socket: {}", config.api.socket.display());
    let _ = writeln!(
        out,
        "# topics: {}",
        config
            .kafka
            .topics
            .with_roles()
            .map(|(_, name)| name)
            .join(", ")
    );
    for (spec, shown, origin) in &config.values {
        let _ = writeln!(out, "{} = {shown}    # from {origin}", spec.key);
    }
    out
}
