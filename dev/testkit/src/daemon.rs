//! Real kircd processes: an actor's config, identity and database, the
//! daemon started under a notification socket, its READY and its stop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kirc_proto::DaemonClient;
use kirc_proto::v1 as pb;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

use crate::*;

/// A service manager's end of the sd_notify protocol: a datagram socket to
/// hand to a process as NOTIFY_SOCKET, and everything it received, with the
/// arrival times.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
    pub received: Vec<(Instant, String)>,
}

impl NotifySocket {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        NotifySocket {
            socket: UnixDatagram::bind(&path).unwrap(),
            path,
            _dir: dir,
            received: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives until a notification holds `line` (e.g. `READY=1`) and
    /// returns that notification; panics after `timeout`.
    pub async fn until(&mut self, line: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(text) = receive(&self.socket, remaining).await else {
                panic!("no `{line}` within {timeout:?}: {:?}", self.received);
            };
            self.received.push((Instant::now(), text.clone()));
            if text.lines().any(|sent| sent == line) {
                return text;
            }
        }
    }

    /// Keeps everything that arrives for `window`.
    pub async fn collect(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while let Some(text) = receive(
            &self.socket,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        {
            self.received.push((Instant::now(), text));
        }
    }
}

impl Default for NotifySocket {
    fn default() -> Self {
        Self::new()
    }
}

/// One actor's own slice of the stack and its config file.
#[derive(Debug)]
pub struct Actor {
    pub name: String,
    /// 32 hex digits, from `kircd init`.
    pub actor_id: String,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub database: String,
    pub topic_prefix: String,
    pub stack: Stack,
    overrides: toml::Table,
}

impl Actor {
    /// A fresh actor: creates its database, picks unique names.
    pub async fn new(name: &str) -> Actor {
        let stack = Stack::from_env();
        let suffix = unique_suffix();
        let database = create_database(&stack, name).await;

        let dir = tempfile::Builder::new()
            .prefix("kirc-test-")
            .tempdir()
            .unwrap();
        let mut actor = Actor {
            actor_id: String::new(),
            name: name.to_owned(),
            config_path: dir.path().join("kircd.toml"),
            socket: dir.path().join("run").join("kircd.sock"),
            dir,
            topic_prefix: format!("t.{name}.{suffix}."),
            database,
            stack,
            overrides: toml::Table::new(),
        };
        actor.write_config();
        let output = actor.kircd().arg("init").output().await.unwrap();
        assert!(
            output.status.success(),
            "kircd init failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        actor.actor_id = String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("actor id:"))
            .map(|id| id.trim().to_owned())
            .expect("kircd init prints the actor id");
        actor
    }

    /// Sets `section.key` in the config file (on top of the test defaults).
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        let (section, name) = key.split_once('.').unwrap();
        self.overrides
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap()
            .insert(name.to_owned(), value.into());
        self.write_config();
        self
    }

    /// kircd's own defaults for what the tests speed up or shrink or make
    /// louder (health probes every 300 ms instead of 10 s, two database
    /// connections, kircd's debug lines): a benchmark measures the daemon as
    /// users run it. Each value here is the default of the key table
    /// (`kircd config keys`).
    pub fn as_users_run_it(&mut self) -> &mut Self {
        self.set("log.level", "info")
            .set("health.probe_interval", "10s")
            .set("health.probe_timeout", "5s")
            .set("health.retry_initial", "500ms")
            .set("health.retry_max", "30s")
            .set("postgres.max_connections", 8)
    }

    /// Turns the direct path (WebRTC) on, on loopback host candidates only.
    pub fn direct_path(&mut self) -> &mut Self {
        self.set("rtc.enabled", true)
    }

    /// Turns the direct path on through the stack's TURN server only (ICE
    /// policy `relay`), its credential read from a file as a user would
    /// keep it.
    pub fn relay_only(&mut self) -> &mut Self {
        let credential = self.dir.path().join("turn-credential");
        std::fs::write(&credential, format!("{}\n", self.stack.turn_password)).unwrap();
        std::fs::set_permissions(
            &credential,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let (url, user) = (self.stack.turn_url.clone(), self.stack.turn_user.clone());
        self.direct_path()
            .set("rtc.turn_url", url)
            .set("rtc.turn_username", user)
            .set("rtc.turn_credential_file", credential.display().to_string())
            .set("rtc.ice_transport_policy", "relay")
    }

    fn write_config(&self) {
        let base = format!(
            r#"
[actor]
name = "{name}"
[kafka]
bootstrap_servers = "{kafka}"
topic_prefix = "{prefix}"
[postgres]
url = "{postgres}/{database}"
max_connections = 2
[valkey]
url = "{valkey}/0"
key_prefix = "{prefix}"
[api]
socket = "{socket}"
[identity]
file = "{identity}"
[log]
level = "info,kircd=debug"
directory = "{logs}"
[rtc]
# Off unless a test is about the direct path (`Actor::direct_path`): the
# other tests assert what crosses Kafka.
enabled = false
stun_urls = ""
udp_bind = "127.0.0.1:0"
[health]
probe_interval = "300ms"
probe_timeout = "2s"
retry_initial = "100ms"
retry_max = "1s"
"#,
            name = self.name,
            kafka = self.stack.kafka,
            prefix = self.topic_prefix,
            postgres = self.stack.postgres,
            database = self.database,
            valkey = self.stack.valkey,
            socket = self.socket.display(),
            identity = self.dir.path().join("identity.key").display(),
            logs = self.dir.path().join("logs").display(),
        );
        let mut table: toml::Table = base.parse().unwrap();
        for (section, values) in &self.overrides {
            let target = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
            for (key, value) in values.as_table().unwrap() {
                target.insert(key.clone(), value.clone());
            }
        }
        std::fs::write(&self.config_path, toml::to_string(&table).unwrap()).unwrap();
    }

    /// A `kircd` command with this actor's config and a clean environment.
    pub fn kircd(&self) -> Command {
        let mut command = Command::new(bin("kircd"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KIRC_CONFIG", &self.config_path)
            .kill_on_drop(true);
        command
    }
}

/// A running kircd.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    pub stderr_path: PathBuf,
    pub log_dir: PathBuf,
    /// The sd_notify message that carried `READY=1` (with its `STATUS=`).
    pub ready: String,
    notify: UnixDatagram,
    _notify_dir: tempfile::TempDir,
}

/// A test that fails while a daemon runs shows that daemon's last words:
/// its log goes with the actor's folder, and a failure that does not
/// reproduce leaves nothing else to read.
impl Drop for Daemon {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.stderr();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- kircd at {} (last {} lines of stderr) ----\n{}",
                self.socket.display(),
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Daemon {
    /// Starts `kircd run` for `actor` and waits for its READY notification.
    pub async fn start(actor: &Actor) -> Daemon {
        Self::start_command(actor, actor.kircd()).await
    }

    /// Starts `command` (a `kircd` from [`Actor::kircd`] with extra settings)
    /// and waits for READY.
    pub async fn start_command(actor: &Actor, mut command: Command) -> Daemon {
        let notify_dir = tempfile::tempdir().unwrap();
        let notify_path = notify_dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let stderr_path = actor
            .dir
            .path()
            .join(format!("kircd-{}.stderr", unique_suffix()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = command
            .arg("run")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            socket: actor.socket.clone(),
            stderr_path,
            log_dir: actor.dir.path().join("logs"),
            ready: String::new(),
            notify,
            _notify_dir: notify_dir,
        };
        daemon.ready = daemon.wait_ready().await;
        daemon
    }

    async fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let stderr = || std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
            tokio::select! {
                text = receive(&self.notify, remaining) => {
                    let Some(text) = text else {
                        panic!("kircd sent no READY within {START_TIMEOUT:?}:\n{}", stderr());
                    };
                    if text.lines().any(|line| line == "READY=1") {
                        return text;
                    }
                }
                status = self.child.wait() => {
                    panic!("kircd exited before READY ({:?}):\n{}", status, stderr());
                }
            }
        }
    }

    /// The next sd_notify message kircd sent (lines like `READY=1`), or
    /// None after `timeout`.
    pub async fn notification(&self, timeout: Duration) -> Option<String> {
        receive(&self.notify, timeout).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub async fn client(&self) -> DaemonClient {
        kirc_proto::connect(&self.socket).await.unwrap()
    }

    pub async fn status(&self) -> pb::Status {
        self.client()
            .await
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn watch(&self) -> Watcher {
        Watcher::subscribe(&self.socket, 0, 0).await
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn stop(mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "kircd did not stop within 30 s of SIGTERM:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self.child.id() {
            let pid = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap()).unwrap();
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    /// Waits for an exit without signalling.
    pub async fn wait(&mut self) -> ExitStatus {
        self.child.wait().await.unwrap()
    }
}

async fn receive(notify: &UnixDatagram, timeout: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let received = tokio::time::timeout(timeout, notify.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(String::from_utf8_lossy(&buf[..received]).into_owned())
}
