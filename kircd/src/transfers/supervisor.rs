//! The engine again after a panic. A transfer engine that died would leave
//! every offer and answer from the inbox unanswered (the inbox retries a
//! record until its handler answers), so a panic is logged and the engine
//! starts a new life from what PostgreSQL holds, after a capped backoff.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backends::supervise::Backoff;

const RESTART_FIRST: Duration = Duration::from_millis(500);
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A life this long was healthy: the next panic starts from the first
/// delay again.
const HEALTHY_LIFE: Duration = Duration::from_secs(60);

/// Runs `life` on `state` until one ends without a panic or `cancel`
/// fires; after a panic, waits and runs it again. Returns how many lives
/// ended in a panic.
pub async fn restart_on_panic<S>(
    what: &str,
    state: &mut S,
    cancel: &CancellationToken,
    mut life: impl for<'a> FnMut(&'a mut S) -> BoxFuture<'a, ()>,
) -> u32 {
    let mut backoff = Backoff::new(RESTART_FIRST, RESTART_MAX);
    let mut panics = 0;
    loop {
        let started = Instant::now();
        let Err(panic) = AssertUnwindSafe(life(state)).catch_unwind().await else {
            return panics;
        };
        panics += 1;
        if started.elapsed() >= HEALTHY_LIFE {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::error!(
            panic = panic_message(panic.as_ref()),
            restart_in = ?delay,
            "the {what} failed; it starts again from what is stored"
        );
        tokio::select! {
            () = cancel.cancelled() => return panics,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_life_that_panics_is_started_again_with_its_state() {
        let cancel = CancellationToken::new();
        let mut lives = Vec::new();
        let started = Instant::now();
        let panics = restart_on_panic("test engine", &mut lives, &cancel, |lives| {
            async move {
                lives.push(Instant::now());
                assert!(lives.len() >= 3, "life {} fails", lives.len());
            }
            .boxed()
        })
        .await;
        assert_eq!(panics, 2);
        assert_eq!(lives.len(), 3, "the third life ended normally");
        // 500 ms, then 1 s: the backoff doubles.
        assert_eq!(lives[1] - started, RESTART_FIRST);
        assert_eq!(lives[2] - lives[1], RESTART_FIRST * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_ends_the_wait_for_the_next_life() {
        let cancel = CancellationToken::new();
        let mut lives = 0;
        let stopping = cancel.clone();
        let panics = restart_on_panic("test engine", &mut lives, &cancel, |lives| {
            *lives += 1;
            stopping.cancel();
            async { panic!("always") }.boxed()
        })
        .await;
        assert_eq!((panics, lives), (1, 1));
    }
}
