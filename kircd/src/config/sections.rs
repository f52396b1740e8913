//! Building each section of the config from the values, with the rules
//! across keys.

use super::*;

impl Values {
    pub(super) fn build(self) -> Result<Config, ConfigError> {
        let actor_name = self
            .opt_str("actor.name")
            .filter(|name| !name.trim().is_empty())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| String::from("me"));
        let kafka = self.kafka()?;
        let public = self.public(&kafka)?;
        let postgres = self.postgres()?;
        let valkey = self.valkey()?;
        let api = self.api()?;
        let log = self.log()?;
        let health = self.health()?;
        let rtc = self.rtc()?;
        let files = self.files()?;
        let values = KEYS
            .iter()
            .filter_map(|spec| {
                let raw = self.raw.get(spec.key)?;
                let shown = if spec.secret {
                    String::from("[redacted]")
                } else if spec.key.ends_with(".url") {
                    redact_url(&raw.value.as_str().map(str::to_owned).unwrap_or_default())
                } else {
                    raw.value.to_string()
                };
                Some((spec, shown, raw.origin.clone()))
            })
            .collect();
        Ok(Config {
            file: self.file.clone(),
            actor_name,
            identity_file: self
                .opt_path("identity.file")
                .unwrap_or_else(crate::crypto::identity::default_path),
            public,
            messaging: MessagingConfig {
                read_receipts: self.bool("messaging.read_receipts"),
                receipt_ranges: self.bool("messaging.receipt_ranges"),
                invite_ttl: self.duration("messaging.invite_ttl"),
                // The key table bounds it to 2..=100.
                channel_max_members: usize::try_from(self.int("messaging.channel_max_members"))
                    .unwrap_or(50),
                outbox_check_interval: self.duration("messaging.outbox_check_interval"),
                // The key table bounds these to non-negative values that fit.
                quarantine_max_rows: u64::try_from(self.int("messaging.quarantine_max_rows"))
                    .unwrap_or(0),
                quarantine_max_bytes: u64::try_from(self.int("messaging.quarantine_max_bytes"))
                    .unwrap_or(0),
                rejection_log_burst: u32::try_from(self.int("messaging.rejection_log_burst"))
                    .unwrap_or(0),
                rejection_log_interval: self.duration("messaging.rejection_log_interval"),
                keep_warm_interval: self.duration("kafka.keep_warm_interval"),
                budget_bytes_per_second: u64::try_from(self.int("kafka.budget_bytes_per_second"))
                    .unwrap_or(192_000),
            },
            presence: PresenceConfig {
                heartbeat: self.duration("presence.heartbeat"),
                idle: self.duration("presence.idle"),
                rate_limit: u64::try_from(self.int("presence.rate_limit")).unwrap_or(3000),
            },
            rtc,
            files,
            kafka,
            postgres,
            valkey,
            api,
            log,
            health,
            values,
        })
    }

    fn files(&self) -> Result<FilesConfig, ConfigError> {
        let download_dir = self
            .opt_path("files.download_dir")
            .unwrap_or_else(default_download_dir);
        if !download_dir.is_absolute() {
            return Err(self.invalid(
                "files.download_dir",
                "is not an absolute path",
                "write the full path, from /",
            ));
        }
        Ok(FilesConfig {
            download_dir,
            // The key table bounds both to non-negative values.
            auto_accept_bytes: u64::try_from(self.int("files.auto_accept_bytes")).unwrap_or(0),
            max_offer_bytes: u64::try_from(self.int("files.max_offer_bytes")).unwrap_or(1),
        })
    }

    fn rtc(&self) -> Result<RtcConfig, ConfigError> {
        let list = |key: &'static str| -> Vec<String> {
            self.opt_str(key)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let stun_urls = list("rtc.stun_urls");
        if let Some(bad) = stun_urls
            .iter()
            .find(|url| !(url.starts_with("stun:") || url.starts_with("stuns:")))
        {
            return Err(self.invalid(
                "rtc.stun_urls",
                format!("`{bad}` is not a stun: or stuns: URL"),
                "write URLs like stun:stun.example.org:3478, separated by commas, or leave it empty",
            ));
        }
        let turn = match self.opt_str("rtc.turn_url").filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                if !(url.starts_with("turn:") || url.starts_with("turns:")) {
                    return Err(self.invalid(
                        "rtc.turn_url",
                        format!("`{url}` is not a turn: or turns: URL"),
                        "write it like turn:turn.example.org:3478?transport=udp",
                    ));
                }
                let username = self
                    .opt_str("rtc.turn_username")
                    .filter(|name| !name.is_empty())
                    .ok_or_else(|| {
                        self.invalid(
                            "rtc.turn_username",
                            "is required with rtc.turn_url",
                            "set it to your user name on the TURN server",
                        )
                    })?;
                let credential = self
                    .secret("rtc.turn_credential", "rtc.turn_credential_file")?
                    .ok_or_else(|| {
                        self.invalid(
                            "rtc.turn_credential",
                            "no TURN credential given",
                            "set rtc.turn_credential_file to a file holding it, or KIRC_RTC_TURN_CREDENTIAL",
                        )
                    })?;
                Some(TurnServer {
                    url,
                    username,
                    credential,
                })
            }
        };
        let ice_policy = if self.str("rtc.ice_transport_policy") == "relay" {
            if turn.is_none() {
                return Err(self.invalid(
                    "rtc.ice_transport_policy",
                    "is relay, but no TURN server is configured",
                    "set rtc.turn_url (with its user name and credential), or use all",
                ));
            }
            IcePolicy::Relay
        } else {
            IcePolicy::All
        };
        let mut udp_bind = Vec::new();
        for address in list("rtc.udp_bind") {
            let parsed = address.parse().map_err(|_| {
                self.invalid(
                    "rtc.udp_bind",
                    format!("`{address}` is not ip:port"),
                    "write addresses like 0.0.0.0:0 or 192.168.1.10:50000, separated by commas",
                )
            })?;
            udp_bind.push(parsed);
        }
        if udp_bind.is_empty() {
            return Err(self.invalid(
                "rtc.udp_bind",
                "is empty",
                "give at least one address, e.g. 0.0.0.0:0, or set rtc.enabled = false",
            ));
        }
        Ok(RtcConfig {
            enabled: self.bool("rtc.enabled"),
            stun_urls,
            turn,
            ice_policy,
            udp_bind,
            // The key table bounds it to 1..=1024.
            max_peers: usize::try_from(self.int("rtc.max_peers")).unwrap_or(32),
        })
    }

    fn kafka(&self) -> Result<KafkaConfig, ConfigError> {
        let bootstrap_servers = self.str("kafka.bootstrap_servers");
        for server in bootstrap_servers.split(',').map(str::trim) {
            let port = server.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if server.is_empty() || !matches!(port, Some(Ok(_))) {
                return Err(self.invalid(
                    "kafka.bootstrap_servers",
                    format!("`{server}` is not host:port"),
                    "write host:port pairs separated by commas, e.g. kafka-x.aivencloud.com:12345",
                ));
            }
        }
        let protocol = self.str("kafka.security_protocol");
        let security = match protocol.as_str() {
            "ssl" => KafkaSecurity::Ssl {
                ca_file: self.existing_file("kafka.ca_file", "CA certificate")?,
                client_cert_file: self.required_file(
                    "kafka.client_cert_file",
                    "client certificate",
                    "ssl",
                )?,
                client_key_file: self.required_file(
                    "kafka.client_key_file",
                    "client key",
                    "ssl",
                )?,
            },
            "sasl_ssl" => {
                let username = self
                    .opt_str("kafka.sasl_username")
                    .filter(|name| !name.is_empty());
                let username = username.ok_or_else(|| {
                    self.invalid(
                        "kafka.sasl_username",
                        "is required when kafka.security_protocol is sasl_ssl",
                        "set it to the SCRAM user name (Aiven: the service user)",
                    )
                })?;
                let password = self
                    .secret("kafka.sasl_password", "kafka.sasl_password_file")?
                    .ok_or_else(|| {
                        self.invalid(
                            "kafka.sasl_password",
                            "no SCRAM password given",
                            "set kafka.sasl_password_file to a file holding it, or KIRC_KAFKA_SASL_PASSWORD",
                        )
                    })?;
                KafkaSecurity::SaslSsl {
                    ca_file: self.existing_file("kafka.ca_file", "CA certificate")?,
                    mechanism: self.str("kafka.sasl_mechanism"),
                    username,
                    password,
                }
            }
            _ => {
                for key in [
                    "kafka.sasl_username",
                    "kafka.client_cert_file",
                    "kafka.client_key_file",
                ] {
                    if self.raw.contains_key(key) {
                        return Err(self.invalid(
                            key,
                            "is set but kafka.security_protocol is plaintext, so it would be ignored",
                            "set kafka.security_protocol to ssl or sasl_ssl, or remove the key",
                        ));
                    }
                }
                KafkaSecurity::Plaintext
            }
        };
        let prefix = self.str("kafka.topic_prefix");
        let topic = |key: &'static str, role: &str| -> Result<String, ConfigError> {
            let name = self
                .opt_str(key)
                .unwrap_or_else(|| format!("{prefix}{role}"));
            check_topic_name(&name).map_err(|problem| {
                self.invalid(
                    key,
                    format!("`{name}` is not a valid topic name: {problem}"),
                    "use at most 249 of the characters a-z A-Z 0-9 . _ -",
                )
            })?;
            Ok(name)
        };
        let topics = TopicNames {
            data_in: topic("kafka.topic_data_in", "data-in")?,
            data_out: topic("kafka.topic_data_out", "data-out")?,
            rpc_in: topic("kafka.topic_rpc_in", "rpc-in")?,
            rpc_out: topic("kafka.topic_rpc_out", "rpc-out")?,
        };
        let roles = topics.with_roles();
        for (index, (role, name)) in roles.iter().enumerate() {
            if let Some((other, _)) = roles[..index].iter().find(|(_, other)| other == name) {
                return Err(self.invalid(
                    "kafka.topic_prefix",
                    format!("{other} and {role} would both be the topic `{name}`"),
                    "give each of the four topics its own name",
                ));
            }
        }
        Ok(KafkaConfig {
            bootstrap_servers,
            security,
            topics,
            create_topics: self.bool("kafka.create_topics"),
            partitions: i32::try_from(self.int("kafka.partitions")).unwrap_or(2),
            replication_factor: i32::try_from(self.int("kafka.replication_factor")).unwrap_or(-1),
        })
    }

    fn public(&self, kafka: &KafkaConfig) -> Result<PublicConfig, ConfigError> {
        let own_protocol = match kafka.security {
            KafkaSecurity::Plaintext => "plaintext",
            KafkaSecurity::Ssl { .. } => "ssl",
            KafkaSecurity::SaslSsl { .. } => "sasl_ssl",
        };
        let security_protocol = self
            .opt_str("public.security_protocol")
            .unwrap_or_else(|| own_protocol.to_owned());
        let username = self
            .opt_str("public.username")
            .filter(|name| !name.is_empty());
        let password = self.secret("public.password", "public.password_file")?;
        if security_protocol == "sasl_ssl" && (username.is_none() || password.is_none()) {
            return Err(self.invalid(
                "public.username",
                "contacts need a user and password to write to your inbox over sasl_ssl",
                "set public.username and public.password_file to the write-only user (terraform/ creates it)",
            ));
        }
        let ca_pem = match self.existing_file("public.ca_file", "CA certificate")? {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|err| {
                self.invalid(
                    "public.ca_file",
                    format!("cannot read {}: {err}", path.display()),
                    "point it at a PEM file",
                )
            })?),
            None => None,
        };
        Ok(PublicConfig {
            bootstrap_servers: self
                .opt_str("public.bootstrap_servers")
                .unwrap_or_else(|| kafka.bootstrap_servers.clone()),
            security_protocol,
            sasl_mechanism: self.str("public.sasl_mechanism"),
            username,
            password,
            ca_pem,
        })
    }

    fn postgres(&self) -> Result<PostgresConfig, ConfigError> {
        let url = self.str("postgres.url");
        let options = sqlx::postgres::PgConnectOptions::from_str(&url).map_err(|err| {
            self.invalid(
                "postgres.url",
                format!(
                    "not a PostgreSQL URI: {}",
                    redact_error(&err.to_string(), &url)
                ),
                "write postgres://user@host:port/database (add ?sslmode=require for Aiven)",
            )
        })?;
        let database = options.get_database().unwrap_or("").to_owned();
        if database.is_empty() {
            return Err(self.invalid(
                "postgres.url",
                "names no database",
                "end the URI with /<database>, one database per actor",
            ));
        }
        let endpoint = format!("{}:{}/{}", options.get_host(), options.get_port(), database);
        Ok(PostgresConfig {
            url: SecretString::from(url),
            password: self.secret("postgres.password", "postgres.password_file")?,
            max_connections: u32::try_from(self.int("postgres.max_connections")).unwrap_or(8),
            endpoint,
        })
    }

    fn valkey(&self) -> Result<ValkeyConfig, ConfigError> {
        let url = self.str("valkey.url");
        let info =
            redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|err| {
                self.invalid(
                    "valkey.url",
                    format!("not a Valkey URI: {}", redact_error(&err.to_string(), &url)),
                    "write redis://host:port/db, or rediss://… for TLS",
                )
            })?;
        let endpoint = format!("{}/{}", info.addr(), info.redis_settings().db());
        Ok(ValkeyConfig {
            url: SecretString::from(url),
            password: self.secret("valkey.password", "valkey.password_file")?,
            key_prefix: self.str("valkey.key_prefix"),
            endpoint,
        })
    }

    fn api(&self) -> Result<ApiConfig, ConfigError> {
        let socket = self
            .opt_path("api.socket")
            .unwrap_or_else(kirc_proto::default_socket_path);
        if !socket.is_absolute() {
            return Err(self.invalid(
                "api.socket",
                "is not an absolute path",
                "write the full path, from /",
            ));
        }
        // sun_path holds 108 bytes with the trailing NUL.
        if socket.as_os_str().len() > 107 {
            return Err(self.invalid(
                "api.socket",
                "is longer than the 107 bytes a Unix socket path may have",
                "choose a shorter path",
            ));
        }
        Ok(ApiConfig {
            socket,
            event_buffer: usize::try_from(self.int("api.event_buffer")).unwrap_or(4096),
        })
    }

    fn log(&self) -> Result<LogConfig, ConfigError> {
        let level = self.str("log.level");
        tracing_subscriber::EnvFilter::try_new(&level).map_err(|err| {
            self.invalid(
                "log.level",
                format!("`{level}` is not a log filter ({err})"),
                "use error, warn, info, debug or trace, or directives like kircd=debug,rdkafka=warn",
            )
        })?;
        Ok(LogConfig {
            level,
            directory: self
                .opt_path("log.directory")
                .unwrap_or_else(default_log_dir),
            file: self.bool("log.file"),
        })
    }

    fn health(&self) -> Result<HealthConfig, ConfigError> {
        let health = HealthConfig {
            probe_interval: self.duration("health.probe_interval"),
            probe_timeout: self.duration("health.probe_timeout"),
            retry_initial: self.duration("health.retry_initial"),
            retry_max: self.duration("health.retry_max"),
        };
        if health.retry_initial > health.retry_max {
            return Err(self.invalid(
                "health.retry_initial",
                "is longer than health.retry_max",
                "make health.retry_initial at most health.retry_max",
            ));
        }
        Ok(health)
    }
}

fn check_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 249 {
        return Err("it is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are reserved");
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err("it has a character other than a-z A-Z 0-9 . _ -");
    }
    Ok(())
}

/// A URL with its user info (user name and password) removed, for display.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::from("[redacted]");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// A parser's error message with the (secret-bearing) input cut out, in case
/// the parser quoted it.
fn redact_error(message: &str, input: &str) -> String {
    if input.is_empty() {
        message.to_owned()
    } else {
        message.replace(input, &redact_url(input))
    }
}

/// The user's download folder: XDG's, else ~/Downloads, else a folder in
/// the working directory (no home at all).
fn default_download_dir() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|dirs| {
            dirs.download_dir()
                .map(Path::to_path_buf)
                .or_else(|| Some(dirs.home_dir().join("Downloads")))
        })
        .unwrap_or_else(|| PathBuf::from("Downloads"))
}
