//! The test harness: real kircd processes against the local stack started by
//! `dev/stack up` (Kafka, PostgreSQL, Valkey on loopback). Each [`Actor`] gets
//! its own database, topic prefix, Valkey key prefix and socket, so tests run
//! side by side on one stack. Readiness comes from kircd's own READY
//! notification and event stream, never from sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod aiven;
pub mod kafka;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kirc_proto::v1::{self as pb, Backend, BackendState};
use kirc_proto::{DaemonClient, DaemonView};
use sqlx::Connection;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

/// How long kircd may take to report READY.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the local stack listens (`dev/stack env`).
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    /// postgres://user:password@host:port (no database).
    pub postgres: String,
    pub valkey: String,
    /// The SASL_SSL (SCRAM over TLS) listener standing in for Aiven's.
    pub kafka_sasl: String,
    pub sasl_user: String,
    pub sasl_password: String,
    /// The CA that signed the SASL_SSL listener's certificate.
    pub ca_file: PathBuf,
}

impl Stack {
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Stack {
            kafka: var("KIRC_STACK_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            postgres: var(
                "KIRC_STACK_POSTGRES_URL",
                "postgres://kirc:kirc@127.0.0.1:15432",
            ),
            valkey: var("KIRC_STACK_VALKEY_URL", "redis://127.0.0.1:16379"),
            kafka_sasl: var("KIRC_STACK_KAFKA_SASL_BOOTSTRAP", "127.0.0.1:19094"),
            sasl_user: var("KIRC_STACK_KAFKA_SASL_USER", "kirc-admin"),
            sasl_password: var("KIRC_STACK_KAFKA_SASL_PASSWORD", "kirc-admin-secret"),
            ca_file: std::env::var_os("KIRC_STACK_KAFKA_CA_FILE").map_or_else(
                || repo_root().join(".stack/kafka/tls/ca.pem"),
                PathBuf::from,
            ),
        }
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `dev/stack` with `args` (e.g. `["down", "postgres"]`) and checks it
/// succeeded.
pub fn stack_ctl(args: &[&str]) {
    let output = std::process::Command::new(repo_root().join("dev/stack"))
        .args(args)
        .output()
        .expect("run dev/stack");
    assert!(
        output.status.success(),
        "dev/stack {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A binary of this workspace, built next to the running test.
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap();
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap()
    } else {
        dir
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// Creates a database of its own for a test, named after `name`; returns its
/// name.
pub async fn create_database(stack: &Stack, name: &str) -> String {
    let database = format!("kirc_test_{name}_{}", unique_suffix()).replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", stack.postgres))
        .await
        .unwrap_or_else(|err| {
            panic!("cannot reach the stack's PostgreSQL (run dev/stack up): {err}")
        });
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{database}\""
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    database
}

/// A unique string for names of topics, databases and prefixes.
pub fn unique(name: &str) -> String {
    format!("{name}_{}", unique_suffix())
}

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

/// A subscriber that keeps its own copy of the daemon's state, as every
/// client does.
#[derive(Debug)]
pub struct Watcher {
    stream: tonic::Streaming<pb::Event>,
    pub view: DaemonView,
    pub seq: u64,
    pub epoch: u64,
    /// Every event received, in order.
    pub events: Vec<pb::Event>,
}

impl Watcher {
    pub async fn subscribe(socket: &Path, since: u64, epoch: u64) -> Watcher {
        Self::subscribe_as(socket, since, epoch, false).await
    }

    /// Subscribes as an interactive client (as kirc-tui does): while one is
    /// attached the actor is not "away: no client attached".
    pub async fn interactive(socket: &Path) -> Watcher {
        Self::subscribe_as(socket, 0, 0, true).await
    }

    async fn subscribe_as(socket: &Path, since: u64, epoch: u64, interactive: bool) -> Watcher {
        let mut client = kirc_proto::connect(socket).await.unwrap();
        let stream = client
            .subscribe(pb::SubscribeRequest {
                since,
                epoch,
                interactive,
            })
            .await
            .unwrap()
            .into_inner();
        Watcher {
            stream,
            view: DaemonView::default(),
            seq: since,
            epoch,
            events: Vec::new(),
        }
    }

    /// The next event, checked to follow the previous one.
    pub async fn next(&mut self, timeout: Duration) -> Option<pb::Event> {
        let event = tokio::time::timeout(timeout, self.stream.message())
            .await
            .ok()?
            .unwrap_or_else(|status| panic!("event stream failed: {status}"))?;
        if let Some(pb::event::Kind::Snapshot(snapshot)) = &event.kind {
            self.epoch = snapshot.epoch;
        } else {
            assert_eq!(event.seq, self.seq + 1, "event out of sequence");
        }
        self.seq = event.seq;
        self.view.apply(&event);
        self.events.push(event.clone());
        Some(event)
    }

    /// Applies events until `condition` holds for the status, or panics after
    /// `timeout` naming `what` and the last status.
    pub async fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&pb::Status) -> bool,
    ) -> pb::Status {
        self.wait_for(what, timeout, |view| {
            view.status.as_ref().is_some_and(&condition)
        })
        .await
        .status
        .unwrap_or_default()
    }

    /// Applies events until `condition` holds for the whole view (contacts,
    /// conversations, status), or panics after `timeout`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&DaemonView) -> bool,
    ) -> DaemonView {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(&self.view) {
                return self.view.clone();
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.next(remaining).await.is_none() {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last view: {:#?}",
                    self.view
                );
            }
        }
    }

    /// Reads the stream to its end (the daemon stopped), returning what came.
    pub async fn drain(&mut self, timeout: Duration) -> Vec<pb::Event> {
        let mut events = Vec::new();
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.stream.message()).await {
                Ok(Ok(Some(event))) => events.push(event),
                Ok(Ok(None) | Err(_)) => return events,
                Err(_) => panic!("the event stream did not end within {timeout:?}"),
            }
        }
    }
}

pub fn backend(status: &pb::Status, backend: Backend) -> &pb::BackendStatus {
    status
        .backends
        .iter()
        .find(|entry| entry.backend == backend as i32)
        .unwrap()
}

pub fn is(status: &pb::Status, which: Backend, state: BackendState) -> bool {
    backend(status, which).state == state as i32
}

pub fn all_up(status: &pb::Status) -> bool {
    [Backend::Kafka, Backend::Postgres, Backend::Valkey]
        .into_iter()
        .all(|which| is(status, which, BackendState::Up))
        && status.topics.len() == 4
        && status.topics.iter().all(|topic| topic.present)
}

/// A program running in a real pseudo-terminal: a detached tmux session on a
/// server of its own.
#[derive(Debug)]
pub struct Tmux {
    server: String,
    pid_file: tempfile::NamedTempFile,
}

impl Tmux {
    /// Starts `command` (a shell command line without single quotes) in a
    /// `width`×`height` pane, after a marker line, `before the TUI`, that must
    /// be on screen again once a full-screen program has restored the
    /// terminal. When the program exits, the pane's shell prints
    /// `exited with <status>` and stays, so that the final screen can be read
    /// (tmux clears a pane whose process has ended).
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        assert!(!command.contains('\''), "no single quotes in the command");
        let tmux = Tmux {
            server: format!("kirc-test-{}", unique_suffix()),
            pid_file: tempfile::NamedTempFile::new().unwrap(),
        };
        let shell = format!(
            "printf 'before the TUI\\n'; sh -c 'echo $$ > {pid_file}; exec {command}'; printf 'exited with %s\\n' $?; exec sleep 3600",
            pid_file = tmux.pid_file.path().display()
        );
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "test",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &shell,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pane's visible text.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "test"])
    }

    /// Sends keys as tmux names them (`"q"`, `"C-c"`, `"Enter"`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "test"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The program's exit status, once it has exited.
    pub fn exit_status(&self) -> Option<i32> {
        Self::exit_status_on(&self.screen())
    }

    /// The exit status shown on `screen`, once the program has exited.
    pub fn exit_status_on(screen: &str) -> Option<i32> {
        screen
            .lines()
            .find_map(|line| line.strip_prefix("exited with ")?.trim().parse().ok())
    }

    /// Sends `signal` to the program in the pane.
    pub fn signal_program(&self, signal: rustix::process::Signal) {
        let pid: i32 = std::fs::read_to_string(self.pid_file.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), signal)
            .unwrap();
    }

    /// Waits until the screen satisfies `condition`. A terminal has no
    /// readiness signal of its own, so the screen is read every 50 ms until
    /// `timeout`; the panic shows the last screen.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

/// Makes `inviter` and `adder` contacts: `inviter` creates an invite, `adder`
/// adds it, and both wait until each side shows the other as accepted.
pub async fn befriend(inviter: (&Actor, &Daemon), adder: (&Actor, &Daemon)) {
    let wait = Duration::from_secs(60);
    let mut inviter_watch = inviter.1.watch().await;
    let mut adder_watch = adder.1.watch().await;
    let token = inviter
        .1
        .client()
        .await
        .create_invite(pb::CreateInviteRequest::default())
        .await
        .unwrap()
        .into_inner()
        .token;
    adder
        .1
        .client()
        .await
        .add_contact(pb::AddContactRequest { token })
        .await
        .unwrap();
    let accepted = |id: &str| {
        let id = id.to_owned();
        move |view: &DaemonView| {
            view.contact(&id).is_some_and(|contact| {
                contact.state == pb::ContactState::Accepted as i32 && contact.peer_accepted
            })
        }
    };
    inviter_watch
        .wait_for(
            "the adder accepted at the inviter",
            wait,
            accepted(&adder.0.actor_id),
        )
        .await;
    adder_watch
        .wait_for(
            "the inviter confirmed at the adder",
            wait,
            accepted(&inviter.0.actor_id),
        )
        .await;
}

/// Sends a text message and returns it as stored (QUEUED).
pub async fn send(daemon: &Daemon, to: &str, text: &str) -> pb::ChatMessage {
    try_send(daemon, to, text).await.unwrap()
}

pub async fn try_send(
    daemon: &Daemon,
    to: &str,
    text: &str,
) -> Result<pb::ChatMessage, tonic::Status> {
    send_with_key(daemon, to, text, "").await
}

/// `SendMessage` with an idempotency key (empty: none), on a connection of
/// its own; a daemon that cannot be reached is `UNAVAILABLE`.
pub async fn send_with_key(
    daemon: &Daemon,
    to: &str,
    text: &str,
    key: &str,
) -> Result<pb::ChatMessage, tonic::Status> {
    kirc_proto::connect(&daemon.socket)
        .await
        .map_err(|err| tonic::Status::unavailable(err.to_string()))?
        .send_message(pb::SendMessageRequest {
            to: to.to_owned(),
            text: text.to_owned(),
            action: false,
            idempotency_key: key.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `count` records of 1 to 4,096 random bytes, the same for the same seed
/// (xorshift): junk as anyone with an inbox credential could write it.
pub fn random_records(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut state = seed.max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % 4096).unwrap() + 1;
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        })
        .collect()
}

/// Waits until `daemon`'s history of `conversation` satisfies `done`, reading
/// it again after each event (events say when something changed; a quiet
/// second makes it look again too), or panics after `timeout`.
pub async fn wait_history(
    daemon: &Daemon,
    conversation: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[pb::ChatMessage]) -> bool,
) -> Vec<pb::ChatMessage> {
    let mut watch = daemon.watch().await;
    let deadline = Instant::now() + timeout;
    loop {
        let history = history_all(daemon, conversation).await;
        if done(&history) {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; {} messages",
            history.len()
        );
        watch.next(Duration::from_secs(1)).await;
    }
}

/// The texts of the received messages of `history`, in order.
pub fn incoming(history: &[pb::ChatMessage]) -> Vec<String> {
    history
        .iter()
        .filter(|message| !message.outgoing)
        .map(|message| message.body.clone())
        .collect()
}

/// The whole history of a conversation, oldest first, read page by page.
pub async fn history_all(daemon: &Daemon, conversation: &str) -> Vec<pb::ChatMessage> {
    let mut client = daemon.client().await;
    let mut messages = Vec::new();
    let mut anchor = None;
    loop {
        let page = client
            .get_history(pb::GetHistoryRequest {
                conversation_id: conversation.to_owned(),
                anchor: anchor.clone(),
                limit: 500,
            })
            .await
            .unwrap()
            .into_inner();
        let first = page.messages.first().map(|message| message.id.clone());
        let mut page_messages = page.messages;
        page_messages.append(&mut messages);
        messages = page_messages;
        match (page.more_before, first) {
            (true, Some(first)) => anchor = Some(pb::get_history_request::Anchor::Before(first)),
            _ => return messages,
        }
    }
}

/// How many records `status` counts as rejected for `reason`.
pub fn rejected(status: &pb::Status, reason: &str) -> u64 {
    status
        .rejected
        .iter()
        .find(|count| count.reason == reason)
        .map_or(0, |count| count.count)
}
