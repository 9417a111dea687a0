//! Pacing a backfill: how many copies run at once (lowered when S3 answers `503 Slow Down`,
//! grown back slowly), and when to stop starting copies before the deadline.

use std::time::{Duration, Instant, SystemTime};

/// The longest safety margin kept before the deadline.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// After lowering its concurrency, a backfill waits this long before lowering it again, so that
/// one burst of `503 Slow Down` (the requests in flight, and their retries) counts once.
const SLOW_DOWN_COOLDOWN: Duration = Duration::from_secs(1);

/// How many copies a backfill runs at once: it starts at `BACKFILL_CONCURRENCY`, halves when S3
/// answers `503 Slow Down` (at most once per [`SLOW_DOWN_COOLDOWN`]), and grows back by one
/// copy for each window of copies finished without one (additive increase, multiplicative
/// decrease).
#[derive(Debug, Clone)]
pub(super) struct Concurrency {
    limit: usize,
    ceiling: usize,
    /// Copies finished without a `503` since the limit last changed.
    credit: usize,
    slow_downs_seen: u64,
    last_cut: Option<Instant>,
    pub(super) lowest: usize,
}

impl Concurrency {
    pub(super) fn new(ceiling: usize, slow_downs: u64) -> Self {
        let ceiling = ceiling.max(1);
        Self {
            limit: ceiling,
            ceiling,
            credit: 0,
            slow_downs_seen: slow_downs,
            last_cut: None,
            lowest: ceiling,
        }
    }

    /// The copies that may run at once now.
    pub(super) fn current(&self) -> usize {
        self.limit
    }

    /// Takes in the `503` count after a copy finished: halves the limit if it grew (and the
    /// last cut is older than the cooldown); else adds one to the limit once `limit` copies
    /// have finished since it last changed. Returns the new limit when it was halved.
    pub(super) fn finished(&mut self, slow_downs: u64, now: Instant) -> Option<usize> {
        if slow_downs > self.slow_downs_seen {
            self.slow_downs_seen = slow_downs;
            let cooled = self
                .last_cut
                .is_none_or(|at| now.duration_since(at) >= SLOW_DOWN_COOLDOWN);
            if !cooled {
                return None;
            }
            self.last_cut = Some(now);
            self.limit = (self.limit / 2).max(1);
            self.credit = 0;
            self.lowest = self.lowest.min(self.limit);
            return Some(self.limit);
        }
        if self.limit < self.ceiling {
            self.credit += 1;
            if self.credit >= self.limit {
                self.limit += 1;
                self.credit = 0;
            }
        }
        None
    }
}

/// When to stop starting copies: the deadline less a margin of a quarter of the time left, at
/// most 30 seconds.
pub(super) fn stop_time(deadline: Option<SystemTime>) -> Option<Instant> {
    let remaining = deadline?
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(Instant::now() + working_time(remaining))
}

/// Of the `remaining` time, how much may be spent starting copies.
fn working_time(remaining: Duration) -> Duration {
    remaining.saturating_sub((remaining / 4).min(MAX_DEADLINE_MARGIN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_halves_on_slow_down_once_per_cooldown() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(64, 7);
        assert_eq!(concurrency.current(), 64);
        // A finished copy with no new 503: the limit stays at the ceiling.
        assert_eq!(concurrency.finished(7, start), None);
        assert_eq!(concurrency.current(), 64);
        assert_eq!(concurrency.finished(8, start), Some(32));
        // More 503s within the cooldown (the same burst) do not cut again.
        assert_eq!(
            concurrency.finished(12, start + Duration::from_millis(500)),
            None
        );
        assert_eq!(concurrency.current(), 32);
        let later = start + SLOW_DOWN_COOLDOWN;
        assert_eq!(concurrency.finished(13, later), Some(16));
        for step in 2..=6 {
            let at = later + SLOW_DOWN_COOLDOWN * step;
            concurrency.finished(13 + u64::from(step), at);
        }
        // Never below one copy at a time.
        assert_eq!(concurrency.current(), 1);
        assert_eq!(concurrency.lowest, 1);
    }

    #[test]
    fn concurrency_grows_back_by_one_per_window() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(64, 0);
        concurrency.finished(1, start);
        concurrency.finished(2, start + SLOW_DOWN_COOLDOWN);
        assert_eq!(concurrency.current(), 16);
        // 16 copies finished without a 503 (one window) add one copy, not sixteen.
        for _ in 0..16 {
            assert_eq!(concurrency.finished(2, start), None);
        }
        assert_eq!(concurrency.current(), 17);
        // Back to the ceiling only after many windows, and never above it.
        let mut finished = 16;
        while concurrency.current() < 64 {
            concurrency.finished(2, start);
            finished += 1;
        }
        // 16 + 17 + ... + 63 copies.
        assert_eq!(finished, (16..64).sum::<usize>());
        for _ in 0..1000 {
            concurrency.finished(2, start);
        }
        assert_eq!(concurrency.current(), 64);
        assert_eq!(concurrency.lowest, 16);
    }

    #[test]
    fn keeps_a_margin_before_the_deadline() {
        assert_eq!(
            working_time(Duration::from_secs(400)),
            Duration::from_secs(370)
        );
        assert_eq!(working_time(Duration::from_secs(8)), Duration::from_secs(6));
        assert_eq!(working_time(Duration::ZERO), Duration::ZERO);
        assert!(stop_time(None).is_none());
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(stop_time(Some(past)).unwrap() <= Instant::now());
    }
}
