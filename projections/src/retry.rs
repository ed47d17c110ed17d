//! Calls to a projection's store that are retried until they succeed: a projection must outlast
//! an outage of its database or Redis, and the sale never waits for it.

use std::fmt::Display;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Run `call` until it succeeds, waiting longer after each failure (100 ms doubling, at most
/// 5 s); `None` if `stop` is cancelled meanwhile (at once, not at the end of a wait).
pub async fn with_retries<T, E, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut call: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match call().await {
            Ok(value) => return Some(value),
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projection cannot {what}; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        if stop.is_cancelled() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_call_is_retried_until_it_succeeds_or_the_stop() {
        let stop = CancellationToken::new();
        let mut failures = 2;
        let answer = with_retries(&stop, "test", || {
            let failing = failures > 0;
            failures -= 1;
            async move { if failing { Err("down") } else { Ok(7) } }
        })
        .await;
        assert_eq!(answer, Some(7));
        let cancel = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let never: Option<()> = with_retries(&stop, "test", || async { Err("down") }).await;
        assert_eq!(never, None);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
