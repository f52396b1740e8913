//! Pacing of outgoing traffic: one token bucket per cluster (the actor's own
//! and each contact's), refilled at the cluster's byte budget per second. A
//! send waits until its bytes fit. Control traffic (receipts, presence,
//! typing, keep-warm) goes before chat when both wait, so the live feel
//! stays while a burst of messages is paced. Figures per cluster — bytes in
//! the last whole second, total, sends that waited — are kept for the
//! status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::{ClusterTraffic, Hub};

/// What a send is, for ordering when both kinds wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Control,
    Chat,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Control sends waiting: chat sends let them go first.
    control_waiting: usize,
    /// The whole second being counted, and its bytes.
    second: u64,
    second_bytes: u64,
    last_second_bytes: u64,
    total_bytes: u64,
    paced: u64,
}

/// One cluster's budget.
#[derive(Debug)]
pub struct Pacer {
    rate: f64,
    /// Tokens the bucket holds at most: a quarter second of budget, so that
    /// no second carries much more than the budget.
    capacity: f64,
    epoch: Instant,
    bucket: Mutex<Bucket>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let capacity = (rate / 4.0).max(1.0);
        Pacer {
            rate,
            capacity,
            epoch: Instant::now(),
            bucket: Mutex::new(Bucket {
                tokens: capacity,
                refilled: Instant::now(),
                control_waiting: 0,
                second: 0,
                second_bytes: 0,
                last_second_bytes: 0,
                total_bytes: 0,
                paced: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, bucket: &mut Bucket, bytes: u64, now: Instant) {
        let second = now.duration_since(self.epoch).as_secs();
        if second != bucket.second {
            bucket.last_second_bytes = if second == bucket.second + 1 {
                bucket.second_bytes
            } else {
                0
            };
            bucket.second = second;
            bucket.second_bytes = 0;
        }
        bucket.second_bytes += bytes;
        bucket.total_bytes += bytes;
    }

    /// Waits until `bytes` fit in the budget, then takes them. A record
    /// larger than the bucket waits for a full bucket and may overdraw it.
    /// Cancel-safe: a send dropped while it waits takes nothing and leaves
    /// no trace in the queue (its place among waiting control sends goes
    /// with it).
    pub async fn acquire(&self, bytes: usize, priority: Priority) {
        let wanted = bytes as f64;
        let mut waited = false;
        let mut place = ControlPlace {
            pacer: self,
            held: false,
        };
        loop {
            let wait = {
                let mut bucket = self.lock();
                let now = Instant::now();
                let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.capacity);
                bucket.refilled = now;
                let behind_control = priority == Priority::Chat && bucket.control_waiting > 0;
                let fits = bucket.tokens >= wanted.min(self.capacity);
                if fits && !behind_control {
                    bucket.tokens -= wanted;
                    if place.held {
                        bucket.control_waiting -= 1;
                        place.held = false;
                    }
                    if waited {
                        bucket.paced += 1;
                    }
                    self.count(&mut bucket, bytes as u64, now);
                    return;
                }
                if priority == Priority::Control && !place.held {
                    bucket.control_waiting += 1;
                    place.held = true;
                }
                let missing = (wanted.min(self.capacity) - bucket.tokens).max(0.0);
                // Chat behind control waits a little and looks again.
                Duration::from_secs_f64((missing / self.rate).max(0.001))
            };
            waited = true;
            tokio::time::sleep(wait).await;
        }
    }

    /// (bytes in the last whole second, total bytes, sends that waited).
    pub fn figures(&self) -> (u64, u64, u64) {
        let mut bucket = self.lock();
        // Rolls the second over if it ended without traffic.
        self.count(&mut bucket, 0, Instant::now());
        (bucket.last_second_bytes, bucket.total_bytes, bucket.paced)
    }

    pub fn budget(&self) -> u64 {
        self.rate as u64
    }
}

/// A waiting control send's place in `control_waiting`, which holds chat
/// back. Released when the send takes its tokens, or when its future is
/// dropped while it waits (a client that hung up, a timeout around it): a
/// count left behind would hold every chat send to the cluster forever.
struct ControlPlace<'a> {
    pacer: &'a Pacer,
    held: bool,
}

impl Drop for ControlPlace<'_> {
    fn drop(&mut self) {
        if self.held {
            self.pacer.lock().control_waiting -= 1;
        }
    }
}

/// The pacers of all clusters, made on first use; `activity` wakes the
/// status reporter when traffic flows.
#[derive(Debug, Clone)]
pub struct Budgets {
    bytes_per_second: u64,
    pacers: Arc<Mutex<HashMap<String, Arc<Pacer>>>>,
    pub activity: Arc<Notify>,
}

impl Budgets {
    pub fn new(bytes_per_second: u64) -> Self {
        Budgets {
            bytes_per_second,
            pacers: Arc::new(Mutex::new(HashMap::new())),
            activity: Arc::new(Notify::new()),
        }
    }

    pub fn pacer(&self, cluster: &str) -> Arc<Pacer> {
        let mut pacers = self
            .pacers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            pacers
                .entry(cluster.to_owned())
                .or_insert_with(|| Arc::new(Pacer::new(self.bytes_per_second))),
        )
    }

    /// Paces a send of `bytes` to `cluster`.
    pub async fn acquire(&self, cluster: &str, bytes: usize, priority: Priority) {
        self.pacer(cluster).acquire(bytes, priority).await;
        self.activity.notify_one();
    }

    /// Each cluster's figures, sorted by cluster.
    pub fn snapshot(&self) -> Vec<ClusterTraffic> {
        let pacers = self
            .pacers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut traffic: Vec<ClusterTraffic> = pacers
            .iter()
            .map(|(cluster, pacer)| {
                let (last_second_bytes, total_bytes, paced) = pacer.figures();
                ClusterTraffic {
                    cluster: cluster.clone(),
                    budget_bytes_per_second: pacer.budget(),
                    last_second_bytes,
                    total_bytes,
                    paced,
                }
            })
            .collect();
        traffic.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        traffic
    }
}

/// Publishes the traffic figures once a second while traffic flows, and not
/// at all while it does not.
pub async fn report(budgets: Budgets, hub: Arc<Hub>, cancel: CancellationToken) {
    let activity = Arc::clone(&budgets.activity);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = activity.notified() => {}
        }
        loop {
            let traffic = budgets.snapshot();
            let quiet = traffic.iter().all(|cluster| cluster.last_second_bytes == 0);
            hub.update_status(|status| status.traffic = traffic);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if quiet
                && budgets
                    .snapshot()
                    .iter()
                    .all(|cluster| cluster.last_second_bytes == 0)
            {
                hub.update_status(|status| status.traffic = budgets.snapshot());
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_paced_to_the_budget() {
        let pacer = Pacer::new(10_000);
        let start = Instant::now();
        // 50 KB at 10 KB/s: about 5 s, less the first quarter-second bucket.
        for _ in 0..100 {
            pacer.acquire(500, Priority::Chat).await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!((4.6..=5.1).contains(&elapsed), "{elapsed}");
        let (_, total, paced) = pacer.figures();
        assert_eq!(total, 50_000);
        assert!(paced > 90);
    }

    #[tokio::test(start_paused = true)]
    async fn control_goes_before_waiting_chat() {
        let pacer = Arc::new(Pacer::new(1_000));
        // Drain the bucket.
        pacer.acquire(250, Priority::Chat).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("chat1", Priority::Chat),
            ("chat2", Priority::Chat),
            ("control", Priority::Control),
        ] {
            let pacer = Arc::clone(&pacer);
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                pacer.acquire(200, priority).await;
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(order.lock().unwrap()[0], "control");
    }

    #[tokio::test(start_paused = true)]
    async fn a_control_send_given_up_while_waiting_does_not_hold_chat_back() {
        let pacer = Pacer::new(1_000);
        // Drain the bucket, so that the control send has to wait.
        pacer.acquire(250, Priority::Chat).await;
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            pacer.acquire(200, Priority::Control),
        )
        .await;
        assert!(gave_up.is_err(), "the control send should have waited");
        // A chat send that fits once the bucket refills goes at once then,
        // instead of waiting behind a control send that no longer exists.
        let start = Instant::now();
        let chat =
            tokio::time::timeout(Duration::from_secs(5), pacer.acquire(200, Priority::Chat)).await;
        assert!(chat.is_ok(), "chat waited behind a dropped control send");
        assert!(
            start.elapsed() <= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
    }
}
