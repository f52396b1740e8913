use std::io::Write;

use secrecy::ExposeSecret;

use super::*;

fn load_with(
    file: Option<&str>,
    env: &[(&str, &str)],
) -> (Result<Config, ConfigError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let explicit_file = file.map(|text| {
        let path = dir.path().join("kircd.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    });
    let sources = Sources {
        // An explicit file (or an empty one) keeps the developer's own
        // ~/.config/kirc/kircd.toml out of the tests.
        explicit_file: Some(explicit_file.unwrap_or_else(|| {
            let path = dir.path().join("empty.toml");
            std::fs::write(&path, "").unwrap();
            path
        })),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        flags: Vec::new(),
    };
    (load(&sources), dir)
}

fn error_text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected a config error"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn defaults_load() {
    let (config, _dir) = load_with(None, &[]);
    let config = config.unwrap();
    assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:19092");
    assert!(matches!(config.kafka.security, KafkaSecurity::Plaintext));
    assert_eq!(config.kafka.topics.data_in, "data-in");
    assert_eq!(config.kafka.partitions, 2);
    assert_eq!(config.postgres.endpoint, "127.0.0.1:15432/kirc");
    assert_eq!(config.valkey.endpoint, "127.0.0.1:16379/0");
    assert_eq!(config.health.probe_interval, Duration::from_secs(10));
    assert_eq!(config.health.retry_initial, Duration::from_millis(500));
    assert_eq!(config.health.retry_max, Duration::from_secs(30));
    assert_eq!(config.health.probe_timeout, Duration::from_secs(5));
    assert!(config.api.socket.ends_with("kircd.sock"));
}

#[test]
fn every_key_has_a_usable_default_or_none() {
    // Each Str default of a Duration key must parse, or `Values::duration`
    // would silently give zero.
    for spec in KEYS {
        if let (Kind::Duration { min, max }, keys::Default::Str(text)) = (spec.kind, spec.default) {
            let value = humantime::parse_duration(text).unwrap();
            assert!(
                value >= min && value <= max,
                "{} default out of range",
                spec.key
            );
        }
    }
}

#[test]
fn file_env_and_flags_layer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kircd.toml");
    std::fs::write(
        &path,
        "[kafka]\ntopic_prefix = \"alice.\"\npartitions = 3\n[log]\nlevel = \"debug\"\n",
    )
    .unwrap();
    let sources = Sources {
        explicit_file: Some(path.clone()),
        env: vec![
            ("KIRC_KAFKA_PARTITIONS".into(), "4".into()),
            ("KIRC_UNRELATED_TOOL".into(), "x".into()),
            ("PATH".into(), "/bin".into()),
        ],
        flags: vec![("log.level", "--log-level", "warn".into())],
    };
    let config = load(&sources).unwrap();
    assert_eq!(config.kafka.topics.rpc_out, "alice.rpc-out");
    assert_eq!(config.kafka.partitions, 4);
    assert_eq!(config.log.level, "warn");
    let origin_of = |key: &str| {
        config
            .values
            .iter()
            .find(|(spec, _, _)| spec.key == key)
            .map(|(_, _, origin)| origin.clone())
    };
    assert_eq!(origin_of("kafka.topic_prefix"), Some(Origin::File(path)));
    assert_eq!(
        origin_of("kafka.partitions"),
        Some(Origin::Env("KIRC_KAFKA_PARTITIONS".into()))
    );
    assert_eq!(origin_of("log.level"), Some(Origin::Flag("--log-level")));
}

#[test]
fn unknown_key_in_file_is_named_with_a_suggestion() {
    let (result, _dir) = load_with(Some("[kafka]\nbootstrap_server = \"x:1\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("unknown key `kafka.bootstrap_server`"),
        "{text}"
    );
    assert!(
        text.contains("did you mean `kafka.bootstrap_servers`"),
        "{text}"
    );
}

#[test]
fn unknown_section_is_rejected() {
    let (result, _dir) = load_with(Some("[kafak]\nbootstrap_servers = \"x:1\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("unknown key `kafak.bootstrap_servers`"),
        "{text}"
    );
}

#[test]
fn misspelt_environment_variable_is_rejected() {
    let (result, _dir) = load_with(None, &[("KIRC_KAFKA_BOOTSTRAP_SERVER", "x:1")]);
    let text = error_text(result);
    assert!(text.contains("KIRC_KAFKA_BOOTSTRAP_SERVER"), "{text}");
    assert!(
        text.contains("did you mean KIRC_KAFKA_BOOTSTRAP_SERVERS"),
        "{text}"
    );
}

#[test]
fn syntax_error_names_the_file_and_line() {
    let (result, _dir) = load_with(Some("[kafka]\npartitions = = 2\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("is not valid TOML"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn wrong_type_and_range_name_the_key_and_fix() {
    let (result, _dir) = load_with(Some("[kafka]\npartitions = \"two\"\n"), &[]);
    let text = error_text(result);
    assert!(text.starts_with("invalid `kafka.partitions`"), "{text}");
    assert!(text.contains("fix: write a whole number"), "{text}");

    let (result, _dir) = load_with(Some("[postgres]\nmax_connections = 50\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("invalid `postgres.max_connections`"),
        "{text}"
    );
    assert!(text.contains("use a number from 1 to 20"), "{text}");

    let (result, _dir) = load_with(None, &[("KIRC_HEALTH_PROBE_INTERVAL", "soon")]);
    let text = error_text(result);
    assert!(
        text.contains(
            "invalid `health.probe_interval` (from environment variable KIRC_HEALTH_PROBE_INTERVAL)"
        ),
        "{text}"
    );

    let (result, _dir) = load_with(Some("[kafka]\nsecurity_protocol = \"tls\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("use one of: plaintext, ssl, sasl_ssl"),
        "{text}"
    );
}

#[test]
fn bad_bootstrap_servers_are_rejected() {
    let (result, _dir) = load_with(Some("[kafka]\nbootstrap_servers = \"localhost\"\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("invalid `kafka.bootstrap_servers`"), "{text}");
    assert!(text.contains("`localhost` is not host:port"), "{text}");
}

#[test]
fn ssl_needs_existing_certificate_files() {
    let (result, _dir) = load_with(Some("[kafka]\nsecurity_protocol = \"ssl\"\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("invalid `kafka.client_cert_file`"), "{text}");
    assert!(
        text.contains("is required when kafka.security_protocol is ssl"),
        "{text}"
    );

    let (result, _dir) = load_with(
        Some(
            "[kafka]\nsecurity_protocol = \"ssl\"\nclient_cert_file = \"/nonexistent/client.pem\"\nclient_key_file = \"/nonexistent/client.key\"\n",
        ),
        &[],
    );
    let text = error_text(result);
    assert!(text.contains("invalid `kafka.client_cert_file`"), "{text}");
    assert!(
        text.contains("cannot read the client certificate /nonexistent/client.pem"),
        "{text}"
    );
}

#[test]
fn sasl_ssl_reads_the_password_from_env_or_file_and_never_shows_it() {
    let (result, _dir) = load_with(
        Some("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"alice\"\n"),
        &[],
    );
    let text = error_text(result);
    assert!(text.contains("invalid `kafka.sasl_password`"), "{text}");

    let (result, _dir) = load_with(
        Some("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"alice\"\n"),
        &[
            ("KIRC_KAFKA_SASL_PASSWORD", "hunter2"),
            ("KIRC_PUBLIC_USERNAME", "kirc-public"),
            ("KIRC_PUBLIC_PASSWORD", "shared-with-contacts"),
        ],
    );
    let config = result.unwrap();
    let KafkaSecurity::SaslSsl { password, .. } = &config.kafka.security else {
        panic!("expected sasl_ssl");
    };
    assert_eq!(password.expose_secret(), "hunter2");
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!format!("{config:?}").contains("shared-with-contacts"));
    assert!(
        config
            .values
            .iter()
            .all(|(_, shown, _)| !shown.contains("hunter2"))
    );

    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("password");
    std::fs::write(&secret_file, "from-file\n").unwrap();
    let (result, _dir) = load_with(
        Some(&format!(
            "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"alice\"\nsasl_password_file = \"{}\"\n[public]\nsecurity_protocol = \"plaintext\"\n",
            secret_file.display()
        )),
        &[],
    );
    let config = result.unwrap();
    let KafkaSecurity::SaslSsl { password, .. } = &config.kafka.security else {
        panic!("expected sasl_ssl");
    };
    assert_eq!(password.expose_secret(), "from-file");
}

#[test]
fn secrets_are_refused_in_the_file() {
    let (result, _dir) = load_with(Some("[kafka]\nsasl_password = \"hunter2\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("secrets are not read from the config file"),
        "{text}"
    );
    assert!(text.contains("KIRC_KAFKA_SASL_PASSWORD"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn plaintext_with_sasl_settings_is_a_mistake() {
    let (result, _dir) = load_with(Some("[kafka]\nsasl_username = \"alice\"\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("invalid `kafka.sasl_username`"), "{text}");
    assert!(text.contains("security_protocol is plaintext"), "{text}");
}

#[test]
fn topic_names_are_checked_and_distinct() {
    let (result, _dir) = load_with(Some("[kafka]\ntopic_prefix = \"a b\"\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("is not a valid topic name"), "{text}");

    let (result, _dir) = load_with(Some("[kafka]\ntopic_rpc_in = \"data-in\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("data-in and rpc-in would both be the topic `data-in`"),
        "{text}"
    );
}

#[test]
fn postgres_url_password_is_never_shown() {
    let (result, _dir) = load_with(
        None,
        &[(
            "KIRC_POSTGRES_URL",
            "postgres://kirc:s3cret@db.example:5432/alice",
        )],
    );
    let config = result.unwrap();
    assert_eq!(config.postgres.endpoint, "db.example:5432/alice");
    let shown: Vec<_> = config
        .values
        .iter()
        .map(|(_, shown, _)| shown.clone())
        .collect();
    assert!(
        shown.iter().all(|value| !value.contains("s3cret")),
        "{shown:?}"
    );
    assert!(!format!("{config:?}").contains("s3cret"));

    let (result, _dir) = load_with(
        None,
        &[(
            "KIRC_POSTGRES_URL",
            "postgres://kirc:s3cret@db.example:5432",
        )],
    );
    let text = error_text(result);
    assert!(text.contains("names no database"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn valkey_url_is_checked() {
    let (result, _dir) = load_with(None, &[("KIRC_VALKEY_URL", "http://nope")]);
    let text = error_text(result);
    assert!(text.contains("invalid `valkey.url`"), "{text}");
}

#[test]
fn log_level_is_checked() {
    let (result, _dir) = load_with(Some("[log]\nlevel = \"verbose=yes=no\"\n"), &[]);
    let text = error_text(result);
    assert!(text.contains("invalid `log.level`"), "{text}");
}

#[test]
fn socket_path_must_fit_sun_path() {
    let long = format!("/tmp/{}/kircd.sock", "x".repeat(120));
    let (result, _dir) = load_with(None, &[("KIRC_API_SOCKET", &long)]);
    let text = error_text(result);
    assert!(text.contains("longer than the 107 bytes"), "{text}");
}

#[test]
fn redact_url_strips_user_info() {
    assert_eq!(
        redact_url("postgres://u:p@h:1/db"),
        "postgres://[redacted]@h:1/db"
    );
    assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
    assert_eq!(
        redact_url("rediss://default:pw@h:1"),
        "rediss://[redacted]@h:1"
    );
    assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
}

#[test]
fn reference_lists_every_key_with_its_variable() {
    let table = keys::markdown_reference();
    for spec in KEYS {
        assert!(table.contains(&format!("`{}`", spec.key)));
        assert!(table.contains(&spec.env_var()));
    }
}

#[test]
fn readme_carries_the_current_reference() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(
        readme.contains(&keys::markdown_reference()),
        "README.md's configuration table is out of date: paste the output of `kircd config keys`"
    );
}

#[test]
fn env_example_is_current_and_usable_as_an_environment_file() {
    let example = keys::env_example();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example")).unwrap();
    assert!(
        committed == example,
        ".env.example is out of date: run `kircd config env > .env.example` (or dev/readme-keys)"
    );
    for spec in KEYS {
        assert!(
            example.contains(&format!("# {}=", spec.env_var())),
            "{} is missing",
            spec.env_var()
        );
    }
    // systemd's EnvironmentFile reads comments and KEY=value lines; every line
    // here is a comment or blank, so the file as shipped sets nothing.
    assert!(
        example
            .lines()
            .all(|line| line.is_empty() || line.starts_with('#'))
    );
}

#[test]
fn a_keep_warm_interval_of_a_day_or_more_is_refused() {
    let (result, _dir) = load_with(Some("[kafka]\nkeep_warm_interval = \"24h\"\n"), &[]);
    let text = error_text(result);
    assert!(
        text.contains("invalid `kafka.keep_warm_interval`"),
        "{text}"
    );
    assert!(
        text.contains("use a duration from 1s to 23h 59m 59s"),
        "{text}"
    );
    let (result, _dir) = load_with(Some("[kafka]\nkeep_warm_interval = \"23h\"\n"), &[]);
    assert_eq!(
        result.unwrap().messaging.keep_warm_interval,
        Duration::from_secs(23 * 3600)
    );
}

#[test]
fn direct_path_settings_are_checked() {
    let (config, _dir) = load_with(None, &[]);
    let rtc = config.unwrap().rtc;
    assert!(rtc.enabled);
    assert_eq!(rtc.stun_urls, ["stun:stun.l.google.com:19302"]);
    assert!(rtc.turn.is_none());
    assert_eq!(rtc.ice_policy, IcePolicy::All);
    assert_eq!(
        rtc.udp_bind,
        ["0.0.0.0:0".parse::<std::net::SocketAddr>().unwrap()]
    );
    assert_eq!(rtc.max_peers, 32);

    let cases = [
        (
            "[rtc]\nstun_urls = \"stun.example.org:3478\"\n",
            "invalid `rtc.stun_urls`",
        ),
        (
            "[rtc]\nturn_url = \"127.0.0.1:3478\"\n",
            "invalid `rtc.turn_url`",
        ),
        (
            "[rtc]\nturn_url = \"turn:127.0.0.1:3478\"\n",
            "invalid `rtc.turn_username`",
        ),
        (
            "[rtc]\nturn_url = \"turn:127.0.0.1:3478\"\nturn_username = \"u\"\n",
            "invalid `rtc.turn_credential`",
        ),
        (
            "[rtc]\nice_transport_policy = \"relay\"\n",
            "invalid `rtc.ice_transport_policy`",
        ),
        (
            "[rtc]\nudp_bind = \"localhost\"\n",
            "invalid `rtc.udp_bind`",
        ),
        ("[rtc]\nudp_bind = \" , \"\n", "invalid `rtc.udp_bind`"),
        ("[rtc]\nmax_peers = 0\n", "rtc.max_peers"),
    ];
    for (file, expected) in cases {
        let (result, _dir) = load_with(Some(file), &[]);
        let text = error_text(result);
        assert!(text.contains(expected), "{file}: {text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let credential = dir.path().join("turn");
    std::fs::write(&credential, "turn-secret\n").unwrap();
    let (result, _dir) = load_with(
        Some(&format!(
            "[rtc]\nstun_urls = \"\"\nturn_url = \"turn:127.0.0.1:3478\"\nturn_username = \"u\"\nturn_credential_file = \"{}\"\nice_transport_policy = \"relay\"\nudp_bind = \"127.0.0.1:0, 127.0.0.1:0\"\n",
            credential.display()
        )),
        &[],
    );
    let config = result.unwrap();
    let turn = config.rtc.turn.as_ref().unwrap();
    assert_eq!(turn.credential.expose_secret(), "turn-secret");
    assert!(config.rtc.stun_urls.is_empty());
    assert_eq!(config.rtc.ice_policy, IcePolicy::Relay);
    assert_eq!(config.rtc.udp_bind.len(), 2);
    assert!(!format!("{config:?}").contains("turn-secret"));
}
