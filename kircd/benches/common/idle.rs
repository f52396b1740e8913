//! What an idle daemon costs: CPU, RSS, open files and each thread's
//! wake-ups over an idle phase, optionally profiled with `perf`.

use std::time::Duration;

use super::proc::{cpu_ticks, proc_field, thread_activity};

/// What an idle daemon costs.
pub struct Idle {
    /// Percent of a core, from the process's clock ticks (it counts the
    /// threads that ended too, but only to [`Idle::tick`]).
    pub cpu: f64,
    /// What one clock tick is over the idle phase, in percent of a core: at
    /// 30 s, 0.033 %, a third of the 0.1 % goal.
    pub tick: f64,
    pub rss_mib: f64,
    pub fds: usize,
    /// Per thread name, busiest first: what wakes the daemon when nothing
    /// happens.
    pub threads: Vec<ThreadIdle>,
}

/// What the threads of one name did over an idle phase.
pub struct ThreadIdle {
    pub name: String,
    pub threads: usize,
    pub wakes_per_second: f64,
    /// Percent of a core.
    pub cpu: f64,
}

impl Idle {
    /// Percent of a core used by the threads whose names start with one of
    /// `prefixes`.
    pub fn cpu_of(&self, prefixes: &[&str]) -> f64 {
        self.threads
            .iter()
            .filter(|thread| {
                prefixes
                    .iter()
                    .any(|prefix| thread.name.starts_with(prefix))
            })
            .map(|thread| thread.cpu)
            .sum()
    }

    /// Percent of a core used by all threads alive at the end (ns-precise,
    /// unlike [`Idle::cpu`], which also counts threads that ended).
    pub fn threads_cpu(&self) -> f64 {
        self.threads.iter().map(|thread| thread.cpu).sum()
    }
}

impl std::fmt::Display for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CPU {:.3} % of a core, RSS {:.1} MiB, {} fds; wake-ups/s by thread:",
            self.cpu, self.rss_mib, self.fds
        )?;
        for thread in &self.threads {
            write!(
                f,
                " {}×{} {:.1} ({:.3} %),",
                thread.name, thread.threads, thread.wakes_per_second, thread.cpu
            )?;
        }
        Ok(())
    }
}

/// CPU, RSS and open files of `pid` over `secs` of idling. With
/// `KIRC_BENCH_PERF` naming a folder, the idling is also profiled there
/// (`perf record -g`, one file per `label`), to see what wakes the daemon.
pub async fn idle(pid: u32, secs: u64, label: &str) -> Idle {
    let threads_before = thread_activity(pid);
    let before = cpu_ticks(pid);
    match std::env::var_os("KIRC_BENCH_PERF") {
        Some(folder) => {
            let output = std::path::Path::new(&folder).join(format!("idle-{label}.data"));
            let status = tokio::process::Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-g",
                    "-F",
                    "499",
                    "-p",
                    &pid.to_string(),
                    "-o",
                ])
                .arg(&output)
                .args(["--", "sleep", &secs.to_string()])
                .status()
                .await
                .expect("perf runs");
            assert!(status.success(), "perf record failed: {status}");
        }
        None => tokio::time::sleep(Duration::from_secs(secs)).await,
    }
    let ticks = cpu_ticks(pid) - before;
    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    let mut threads: Vec<ThreadIdle> = thread_activity(pid)
        .into_iter()
        .map(|(name, after)| {
            let before = threads_before.get(&name).copied().unwrap_or_default();
            ThreadIdle {
                name,
                threads: after.threads,
                wakes_per_second: after.switches.saturating_sub(before.switches) as f64
                    / secs as f64,
                cpu: after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e9 / secs as f64 * 100.0,
            }
        })
        .collect();
    threads.sort_by(|a, b| b.wakes_per_second.total_cmp(&a.wakes_per_second));
    Idle {
        threads,
        cpu: ticks as f64 / ticks_per_second / secs as f64 * 100.0,
        tick: 100.0 / ticks_per_second / secs as f64,
        rss_mib: proc_field(pid, "status", "VmRSS:") as f64 / 1024.0,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
    }
}

/// A whole-machine profile (`perf record -a -g`) running while the
/// benchmark works, when `KIRC_BENCH_PERF` names a folder: on a machine
/// that also runs the stack, it shows how the CPU divides between kircd,
/// PostgreSQL, Kafka and the benchmark itself, and where kircd's part goes.
pub struct Profile(Option<tokio::process::Child>);

impl Profile {
    /// Starts recording into `<folder>/<label>.data`.
    pub fn start(label: &str) -> Profile {
        let Some(folder) = std::env::var_os("KIRC_BENCH_PERF") else {
            return Profile(None);
        };
        let output = std::path::Path::new(&folder).join(format!("{label}.data"));
        let child = tokio::process::Command::new("perf")
            .args(["record", "-q", "-a", "-g", "-F", "499", "-o"])
            .arg(&output)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("perf runs");
        Profile(Some(child))
    }

    /// Stops recording (perf writes its file on SIGINT).
    pub async fn stop(self) {
        let Some(mut child) = self.0 else {
            return;
        };
        let pid = child.id().expect("perf is running");
        let status = tokio::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "could not stop perf");
        // perf ends by the signal it was sent once its file is written.
        let status = child.wait().await.expect("perf ends");
        assert!(
            status.success() || std::os::unix::process::ExitStatusExt::signal(&status) == Some(2),
            "perf record failed: {status}"
        );
    }
}

/// The threads of kircd's own Kafka clients: librdkafka's (`rdk:main`, one
/// per broker connection) and the outbox producer's delivery thread.
pub const KAFKA_THREADS: &[&str] = &["rdk:", "kafka-acks"];

/// The floor under an idle daemon's CPU that its Kafka clients set: the
/// outbox producer and the own topics' consumer, made by kircd's own
/// constructors, so with its settings, for `actor`'s topics, here in this
/// process and with nothing else around them. Measured like [`idle`] on
/// this process once the consumer is assigned; [`Idle::cpu_of`] with
/// [`KAFKA_THREADS`] reads their part.
pub async fn kafka_clients_alone(actor: &kirc_testkit::Actor, secs: u64) -> Idle {
    let config = kircd::config::load(&kircd::config::Sources {
        explicit_file: Some(actor.config_path.clone()),
        env: Vec::new(),
        flags: Vec::new(),
    })
    .expect("the actor's config loads");
    let me: kircd::crypto::identity::ActorId = actor.actor_id.parse().expect("an actor id");
    let kafka = config.kafka.clone();
    let (consumer, queues) =
        tokio::task::spawn_blocking(move || kircd::backends::kafka::consumer::open(&kafka, me))
            .await
            .unwrap()
            .expect("the own topics' consumer");
    let _outbox = kircd::transport::kafka::Outbox::new(
        &config.kafka,
        me,
        kircd::backends::traffic::Budgets::new(config.messaging.budget_bytes_per_second),
        kircd::transport::kafka::handoff::channel().0,
    )
    .expect("the outbox producer");
    // kircd polls the consumer all the time, which serves its events; its
    // partitions' queues stay empty.
    let polling = tokio::spawn(async move {
        loop {
            let _ = consumer.recv().await;
        }
    });
    let label = "kafka-clients-alone";
    let measured = idle(std::process::id(), secs, label).await;
    polling.abort();
    drop(queues);
    measured
}
