//! `kircd init` against the local stack, with the broker's SASL_SSL listener
//! (SCRAM over TLS, certificate from the stack's own CA) standing in for
//! Aiven: from terraform/'s output document to a config on which the doctor
//! passes and kircd starts; and the specific error and fix for a wrong
//! password, a wrong CA and a missing topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use kirc_proto::v1::{Backend, BackendState};
use kirc_testkit::{NotifySocket, Stack, backend, bin, create_database, unique};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// A person's fresh home: config, data and runtime folders all inside.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("kirc-init-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config_dir(&self) -> PathBuf {
        self.path().join(".config/kirc")
    }

    fn kircd(&self) -> Command {
        let mut command = Command::new(bin("kircd"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("USER", "dana")
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (Output, String) {
        let mut child = self
            .kircd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .await
            .unwrap();
        drop(input);
        let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kircd init finishes")
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output, text)
    }
}

/// Four topics on the stack's broker, made the way terraform/ makes them.
async fn create_topics(stack: &Stack, prefix: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &stack.kafka)
        .create()
        .unwrap();
    let names: Vec<String> = ["data-in", "data-out", "rpc-in", "rpc-out"]
        .iter()
        .map(|role| format!("{prefix}{role}"))
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, 2, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
}

/// The document `terraform output -json kircd_init` prints, for the local
/// stack's SASL_SSL listener.
fn document(stack: &Stack, prefix: &str, database: &str) -> serde_json::Value {
    let ca = std::fs::read_to_string(&stack.ca_file).unwrap_or_else(|err| {
        panic!(
            "the stack's CA {} (made by dev/stack up): {err}",
            stack.ca_file.display()
        )
    });
    serde_json::json!({
        "format": kircd::cli::init::TERRAFORM_FORMAT,
        "kafka": {
            "bootstrap_servers": stack.kafka_sasl,
            "security_protocol": "sasl_ssl",
            "sasl_mechanism": "SCRAM-SHA-256",
            "username": stack.sasl_user,
            "password": stack.sasl_password,
            "access_cert": null,
            "access_key": null,
            "ca_pem": ca,
            "partitions": 2,
            "replication": 1,
            "topics": {
                "data_in": format!("{prefix}data-in"),
                "data_out": format!("{prefix}data-out"),
                "rpc_in": format!("{prefix}rpc-in"),
                "rpc_out": format!("{prefix}rpc-out"),
            }
        },
        "public": {
            "bootstrap_servers": stack.kafka_sasl,
            "sasl_mechanism": "SCRAM-SHA-256",
            "username": stack.sasl_user,
            "password": stack.sasl_password,
        },
        "postgres": {"url": format!("{}/{database}", stack.postgres)},
        "valkey": {"url": format!("{}/3", stack.valkey)},
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_from_terraform_output_gives_a_config_kircd_starts_with() {
    let stack = Stack::from_env();
    let prefix = format!("{}.", unique("init"));
    create_topics(&stack, &prefix).await;
    let database = create_database(&stack, "init").await;
    let home = Home::new();

    // The whole `terraform output -json` listing, piped in.
    let all_outputs = serde_json::json!({
        "kircd_init": {"sensitive": true, "type": "object", "value": document(&stack, &prefix, &database)},
        "public_username": {"sensitive": false, "type": "string", "value": stack.sasl_user},
    });
    let (output, text) = home
        .run(
            &["init", "--from-terraform", "-"],
            Some(&all_outputs.to_string()),
        )
        .await;
    assert!(output.status.success(), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    assert!(text.contains("ok    kafka       127.0.0.1:"), "{text}");

    // Owner-only files; no secret in the config itself.
    let config_path = home.config_dir().join("kircd.toml");
    assert_eq!(mode(&home.config_dir()), 0o700);
    assert_eq!(mode(&config_path), 0o600);
    assert_eq!(mode(&home.config_dir().join("secrets")), 0o700);
    for secret in ["kafka-password", "public-password", "postgres-password"] {
        let path = home.config_dir().join("secrets").join(secret);
        assert_eq!(mode(&path), 0o600, "{secret}");
    }
    assert_eq!(
        std::fs::read_to_string(home.config_dir().join("secrets/kafka-password")).unwrap(),
        stack.sasl_password
    );
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(!config.contains(&stack.sasl_password), "{config}");
    let (_, postgres_password) = stack
        .postgres
        .trim_start_matches("postgres://")
        .split_once('@')
        .unwrap()
        .0
        .split_once(':')
        .unwrap();
    assert!(
        !config.contains(&format!(":{postgres_password}@")),
        "{config}"
    );
    assert!(config.contains("create_topics = false"), "{config}");
    assert!(
        !text.contains(&stack.sasl_password),
        "init never prints a secret"
    );

    // The doctor agrees, on its own.
    let (output, text) = home.run(&["doctor"], None).await;
    assert!(output.status.success(), "{text}");

    // kircd starts on it, over SCRAM and TLS, and reports READY with every
    // backend up.
    let mut notify = NotifySocket::new();
    let mut daemon = home
        .kircd()
        .arg("run")
        .env("NOTIFY_SOCKET", notify.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = notify.until("READY=1", Duration::from_secs(30)).await;
    assert!(
        ready.contains("STATUS=kafka up, postgres up, valkey up"),
        "{ready}"
    );
    let socket = home.path().join("run/kirc/kircd.sock");
    let status = kirc_proto::connect(&socket)
        .await
        .unwrap()
        .get_status(kirc_proto::v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(backend(&status, Backend::Kafka).state(), BackendState::Up);
    assert_eq!(status.topics.len(), 4);
    assert!(
        status.topics.iter().all(|topic| topic.present),
        "{status:?}"
    );
    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
}

/// Runs init with `document` in a fresh home; returns its output. The config
/// is written even when a check fails, so that the user can fix it.
async fn init_with(document: &serde_json::Value) -> (Output, String, Home) {
    let home = Home::new();
    let path = home.path().join("kircd-init.json");
    std::fs::write(&path, document.to_string()).unwrap();
    let (output, text) = home
        .run(&["init", "--from-terraform", path.to_str().unwrap()], None)
        .await;
    assert!(
        home.config_dir().join("kircd.toml").exists(),
        "the config is kept for fixing:\n{text}"
    );
    (output, text, home)
}

fn fail_line<'a>(text: &'a str, check: &str) -> &'a str {
    let start = text
        .find(&format!("FAIL  {check:<11} "))
        .unwrap_or_else(|| panic!("no FAIL for {check}:\n{text}"));
    // The failure and its fix line.
    let rest = &text[start..];
    let end = rest
        .match_indices('\n')
        .nth(1)
        .map_or(rest.len(), |(at, _)| at);
    &rest[..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_wrong_ca_and_missing_topics_each_say_what_to_fix() {
    let stack = Stack::from_env();
    let prefix = format!("{}.", unique("initbad"));
    create_topics(&stack, &prefix).await;
    let database = create_database(&stack, "initbad").await;
    let good = document(&stack, &prefix, &database);

    let mut wrong_password = good.clone();
    wrong_password["kafka"]["password"] = "not-the-password".into();
    let (output, text, _home) = init_with(&wrong_password).await;
    assert_eq!(output.status.code(), Some(1), "{text}");
    let failure = fail_line(&text, "kafka");
    assert!(failure.contains("Authentication failed"), "{failure}");
    assert!(
        failure.contains(&format!("the broker refused user `{}`", stack.sasl_user))
            && failure.contains("kafka.sasl_password_file"),
        "{failure}"
    );
    assert!(!text.contains("not-the-password"));

    // A CA that did not sign the broker's certificate.
    let other_ca_dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=Some other CA"])
        .arg("-keyout")
        .arg(other_ca_dir.path().join("ca.key"))
        .arg("-out")
        .arg(other_ca_dir.path().join("ca.pem"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let mut wrong_ca = good.clone();
    wrong_ca["kafka"]["ca_pem"] = std::fs::read_to_string(other_ca_dir.path().join("ca.pem"))
        .unwrap()
        .into();
    let (output, text, home) = init_with(&wrong_ca).await;
    assert_eq!(output.status.code(), Some(1), "{text}");
    let failure = fail_line(&text, "kafka");
    assert!(failure.contains("certificate verify failed"), "{failure}");
    assert!(
        failure.contains(&format!(
            "is not signed by the CA in kafka.ca_file ({})",
            home.config_dir().join("kafka-ca.pem").display()
        )),
        "{failure}"
    );

    // Topics terraform has not made (yet).
    let mut missing = good.clone();
    missing["kafka"]["topics"]["rpc_in"] = format!("{prefix}never-made").into();
    let (output, text, _home) = init_with(&missing).await;
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("ok    kafka "), "{text}");
    let failure = fail_line(&text, "topics");
    assert!(
        failure.contains(&format!("{prefix}never-made MISSING"))
            && failure.contains("run `terraform apply` in terraform/"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_init_asks_with_defaults_and_a_rerun_keeps_everything() {
    let stack = Stack::from_env();
    let database = create_database(&stack, "initask").await;
    let prefix = format!("{}.", unique("initask"));
    let home = Home::new();
    // Name, bootstrap (default), authentication (default plaintext on
    // loopback), topic prefix, create topics (default yes), PostgreSQL,
    // Valkey.
    let answers = format!(
        "Dana\n\n\n{prefix}\n\n{}/{database}\n{}/4\n",
        stack.postgres, stack.valkey
    );
    let (output, text) = home.run(&["init", "--interactive"], Some(&answers)).await;
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("Kafka bootstrap servers (host:port; Aiven: the service's SASL or SSL endpoint) [127.0.0.1:19092]:"),
        "{text}"
    );
    assert!(
        text.contains("Kafka authentication (plaintext, sasl, certificate) [plaintext]:"),
        "{text}"
    );
    assert!(text.contains("all checks passed"), "{text}");
    let config_path = home.config_dir().join("kircd.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(config.contains("name = \"Dana\""), "{config}");
    assert!(
        config.contains(&format!("topic_prefix = \"{prefix}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!(
            "password_file = \"{}\"",
            home.config_dir()
                .join("secrets/postgres-password")
                .display()
        )),
        "the password moved out of the URI: {config}"
    );

    // Enter everywhere keeps every answer, and the identity too.
    let actor_id = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("actor id:"))
            .map(|id| id.trim().to_owned())
            .unwrap()
    };
    let (output, again) = home
        .run(&["init", "--interactive"], Some("\n\n\n\n\n\n\n"))
        .await;
    assert!(output.status.success(), "{again}");
    assert!(again.contains("[Dana]"), "{again}");
    assert_eq!(actor_id(&text), actor_id(&again));
    assert!(again.contains("identity:    kept"), "{again}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_make_no_valid_config_name_the_key_and_write_nothing() {
    let home = Home::new();
    let (output, text) = home
        .run(
            &[
                "init",
                "--non-interactive",
                "--kafka-bootstrap",
                "kafka.example:12345",
                "--kafka-auth",
                "sasl",
            ],
            None,
        )
        .await;
    assert_eq!(output.status.code(), Some(78), "{text}");
    assert!(text.contains("kafka.sasl_username"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    assert!(!home.config_dir().join("kircd.toml").exists());
}
