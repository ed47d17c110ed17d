//! A run second by second: how many answers each second of the run brought and how long they
//! took, what `--report` draws.
//!
//! Each connection keeps one [`Answered`] per request (8 bytes: a million requests are 8 MB);
//! [`seconds`] buckets them by the second they were answered in.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Latency;

/// One answer: when it came (ms since the run started) and how long it took (µs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Answered {
    pub at_ms: u32,
    pub took_us: u32,
}

/// One second of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Second {
    /// Seconds since the run started (this second's start).
    pub second: u32,
    /// Answers that came in this second.
    pub answered: u64,
    /// Of those answers' latencies, ms.
    pub latency_ms: Latency,
}

/// Every second from the first to the last answer's, in order; a second without an answer is
/// there with 0 (a stall is what a reader looks for).
pub(super) fn seconds(answers: impl IntoIterator<Item = Answered>) -> Vec<Second> {
    let mut buckets: Vec<Option<Histogram<u64>>> = Vec::new();
    for answer in answers {
        let second = (answer.at_ms / 1000) as usize;
        if buckets.len() <= second {
            buckets.resize_with(second + 1, || None);
        }
        let bucket = buckets[second].get_or_insert_with(|| {
            Histogram::new_with_bounds(1, 60_000_000, 2).expect("histogram bounds")
        });
        bucket.saturating_record(u64::from(answer.took_us.max(1)));
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(second, bucket)| Second {
            second: second as u32,
            answered: bucket.as_ref().map_or(0, Histogram::len),
            latency_ms: bucket
                .as_ref()
                .map_or_else(Latency::default, |h| Latency::of(h, 1000.0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(at_ms: u32, took_us: u32) -> Answered {
        Answered { at_ms, took_us }
    }

    /// Within the histogram's 1 % resolution.
    fn about(ms: f64, expected: f64) -> bool {
        (ms - expected).abs() <= expected * 0.01
    }

    #[test]
    fn answers_are_counted_in_the_second_they_came_and_a_quiet_second_shows() {
        let timeline = seconds([
            answered(10, 1_000),
            answered(999, 3_000),
            answered(2_500, 20_000),
        ]);
        assert_eq!(
            timeline.iter().map(|s| s.answered).collect::<Vec<_>>(),
            [2, 0, 1]
        );
        assert!(about(timeline[0].latency_ms.max, 3.0), "{timeline:?}");
        assert_eq!(timeline[1].latency_ms, Latency::default());
        assert_eq!(timeline[2].second, 2);
        assert!(about(timeline[2].latency_ms.p50, 20.0), "{timeline:?}");
    }

    #[test]
    fn percentiles_are_of_their_own_second() {
        // Second 0: 99 fast answers and one slow; second 1: all slow.
        let mut answers: Vec<Answered> = (0..99).map(|i| answered(i, 500)).collect();
        answers.push(answered(500, 90_000));
        answers.extend((0..100).map(|i| answered(1_000 + i, 40_000)));
        let timeline = seconds(answers);
        assert!(about(timeline[0].latency_ms.p50, 0.5), "{timeline:?}");
        assert!(about(timeline[0].latency_ms.max, 90.0), "{timeline:?}");
        assert!(about(timeline[1].latency_ms.p50, 40.0), "{timeline:?}");
    }
}
