//! The admission rate actually observed, which `estimatedWaitSeconds` is
//! derived from: samples of the admission cursor over the last minute.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back admissions count towards the observed rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Samples of the admission cursor over time; their slope is the rate.
#[derive(Debug, Default)]
pub struct AdmissionRate {
    samples: VecDeque<(Instant, u64)>,
}

/// Samples closer together than this are merged, to bound memory.
const SAMPLE_SPACING: Duration = Duration::from_millis(250);

impl AdmissionRate {
    pub fn record(&mut self, at: Instant, cursor: u64) {
        match self.samples.back_mut() {
            Some((last_at, last_cursor)) if at.duration_since(*last_at) < SAMPLE_SPACING => {
                *last_cursor = (*last_cursor).max(cursor);
            }
            _ => self.samples.push_back((at, cursor)),
        }
        self.forget_before(at);
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.samples.front() {
            if now.duration_since(*at) > RATE_WINDOW && self.samples.len() > 1 {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    pub fn per_second(&mut self, now: Instant) -> f64 {
        self.forget_before(now);
        match (self.samples.front(), self.samples.back()) {
            (Some((first_at, first)), Some((last_at, last))) if last_at > first_at => {
                last.saturating_sub(*first) as f64 / last_at.duration_since(*first_at).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_the_slope_of_the_cursor() {
        let start = Instant::now();
        let mut rate = AdmissionRate::default();
        rate.record(start, 100);
        rate.record(start + Duration::from_secs(10), 150);
        let per_second = rate.per_second(start + Duration::from_secs(10));
        assert!((per_second - 5.0).abs() < 1e-9, "{per_second}");
    }

    #[test]
    fn old_samples_leave_the_window() {
        let start = Instant::now();
        let mut rate = AdmissionRate::default();
        rate.record(start, 0);
        rate.record(start + Duration::from_secs(30), 1_000);
        rate.record(start + Duration::from_secs(100), 1_000);
        let per_second = rate.per_second(start + Duration::from_secs(100));
        assert!(per_second < 1_000.0 / 30.0, "{per_second}");
    }
}
