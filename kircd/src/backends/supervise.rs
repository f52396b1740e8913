//! The supervisor every backend runs under: check it, report the result to the
//! hub, wait (the probe interval while up, a capped exponential backoff while
//! down), and check again, until cancelled. A backend that is down never stops
//! the daemon; it is reported and retried until it returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kirc_proto::v1::Backend;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;
use crate::hub::Hub;

/// One backend as the supervisor sees it.
pub trait Probe: Send + 'static {
    /// Checks the backend once (and does any catch-up work that needs it up,
    /// such as migrations or creating topics). The error is shown to the user
    /// and must hold no secret.
    fn probe(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// Capped exponential backoff: `initial`, doubling, never above `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial.min(max),
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

/// Spawns the supervisor of `backend`.
pub fn spawn<P: Probe>(
    backend: Backend,
    mut probe: P,
    hub: Arc<Hub>,
    health: HealthConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let name = backend_name(backend);
    tokio::spawn(async move {
        let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
        let mut was_up: Option<bool> = None;
        loop {
            // Each probe bounds its own requests by probe_timeout and says
            // why it failed; this outer bound only catches a probe that hangs.
            let bound = health.probe_timeout * 2;
            let outcome = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = tokio::time::timeout(bound, probe.probe()) => outcome
                    .unwrap_or_else(|_| Err(format!("no answer within {}", humantime::format_duration(bound)))),
            };
            let delay = match outcome {
                Ok(()) => {
                    if was_up != Some(true) {
                        tracing::info!(backend = name, "up");
                    }
                    was_up = Some(true);
                    hub.backend_up(backend);
                    backoff.reset();
                    health.probe_interval
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    if was_up != Some(false) {
                        tracing::warn!(backend = name, %error, "down; retrying with backoff");
                    } else {
                        tracing::debug!(backend = name, %error, retry_in = ?delay, "still down");
                    }
                    was_up = Some(false);
                    hub.backend_down(backend, error);
                    delay
                }
            };
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        tracing::debug!(backend = name, "supervisor stopped");
    })
}

/// Runs `tick` at once and then every `interval` until `cancel`; a tick that
/// runs long delays the next one instead of bunching them up.
pub async fn every<F, Fut>(interval: Duration, cancel: &CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tick().await;
    }
}

pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Kafka => "kafka",
        Backend::Postgres => "postgres",
        Backend::Valkey => "valkey",
        Backend::Unspecified => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay().as_millis(), 100);
    }
}
