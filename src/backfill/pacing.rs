//! Pacing a backfill: how many copies run at once (found by measuring the copies finished per
//! second, cut when S3 answers `503 Slow Down`), and when to stop starting copies before the
//! deadline.

use std::time::{Duration, Instant, SystemTime};

/// The longest safety margin kept before the deadline.
const MAX_DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// After lowering its concurrency, a backfill waits this long before lowering it again, so that
/// one burst of `503 Slow Down` (the requests in flight, and their retries) counts once.
const SLOW_DOWN_COOLDOWN: Duration = Duration::from_secs(1);

/// A hop starts at this many copies at once (or `BACKFILL_CONCURRENCY`, if lower).
const START_CONCURRENCY: usize = 128;

/// A measuring window lasts at least this long and at least as many copies as run at once, so
/// that one slow copy does not decide.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// A doubling goes on to the next only if the rate grew by this factor; one that grew less is
/// kept.
const GAIN: f64 = 1.05;

/// A doubling is undone if the rate fell by this factor: a server that slows when crowded loses
/// far more, and a smaller fall is within the noise of a few windows.
const LOSS: f64 = 1.10;

/// A probe a quarter up or down is kept only if the rate grew by this factor (over the rate held
/// before it, and for a step down over the best rate held): a step is taken when it measurably
/// pays, never because the noise of a few windows favoured it.
const STEP_GAIN: f64 = 1.01;

/// Windows at a steady concurrency between two probes (one up, the next down), after a change.
const WINDOWS_BETWEEN_PROBES: u32 = 10;

/// Each probe that does not pay doubles the windows before the next, up to this many: a probe
/// costs the rate while it runs, and one that did not pay is likely not to pay again soon.
const MOST_WINDOWS_BETWEEN_PROBES: u32 = 40;

/// Windows each doubling is measured over (after its discarded first).
const CLIMB_WINDOWS: u32 = 2;

/// Windows a probe is measured over (after its discarded first), so that one window's noise
/// does not decide it.
const PROBE_WINDOWS: u32 = 3;

/// The mean rate (copies per second) over some windows.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    windows: u32,
}

impl Mean {
    fn with(self, rate: f64) -> Self {
        Mean {
            sum: self.sum + rate,
            windows: self.windows + 1,
        }
    }

    fn rate(self) -> f64 {
        self.sum / f64::from(self.windows.max(1))
    }
}

/// What the pacing is doing.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Doubling the concurrency while each doubling raises the rate by [`GAIN`]; `rate` is the
    /// rate before the last doubling (none before the first), each measured over
    /// [`CLIMB_WINDOWS`].
    Climb { rate: Option<f64>, measured: Mean },
    /// Steady, at the mean rate measured over its windows; probes after
    /// [`WINDOWS_BETWEEN_PROBES`] or more. After a step down that paid, `undo` is where it
    /// came from: the step is kept only if these windows confirm it.
    Hold {
        measured: Mean,
        up_next: bool,
        undo: Option<usize>,
    },
    /// Trying one step up or down from `from`, where the rate was `held`, measured over
    /// [`PROBE_WINDOWS`].
    Probe {
        from: usize,
        held: f64,
        up: bool,
        measured: Mean,
    },
}

/// How many copies a backfill runs at once. It starts at [`START_CONCURRENCY`] and measures the
/// copies finished per second over windows: it doubles the concurrency while that raises the
/// rate by 5% (the server, or the latency, has room for more in flight), keeping the last
/// doubling unless it lowered the rate by 10%. Then it holds, probing a quarter up and a quarter
/// down now and then (never up from the ceiling), each probe measured over [`PROBE_WINDOWS`],
/// and keeps a step only when it pays 1%: a quarter up over the rate held (and then it climbs
/// again), a quarter down over the best rate held, both in its probe and in the hold after it
/// (or it goes back: a probe's few windows can pay on noise alone). The rate over a few windows
/// moves by more than a quarter step changes it, so a rule that kept a step down for costing
/// nothing would drift down on the noise; this one leans towards more in flight, which costs
/// little memory. A probe that does not pay, and a step down that the hold after it undoes,
/// double the wait before the next probe (up to [`MOST_WINDOWS_BETWEEN_PROBES`]).
/// `BACKFILL_CONCURRENCY` is its ceiling. When S3 answers `503 Slow Down` it halves (at most
/// once per [`SLOW_DOWN_COOLDOWN`]) and holds there until a probe pays.
#[derive(Debug, Clone)]
pub(super) struct Concurrency {
    limit: usize,
    ceiling: usize,
    phase: Phase,
    /// The window being measured: when it started and the copies finished in it. A window that
    /// starts with a change of concurrency is discarded (`settling`): its copies ran under the
    /// old one.
    window_start: Instant,
    window_done: usize,
    settling: bool,
    slow_downs_seen: u64,
    last_cut: Option<Instant>,
    /// The best rate held since the start or the last `503`: what a step down must beat.
    peak: f64,
    /// Windows held before the next probe.
    between_probes: u32,
    pub(super) lowest: usize,
    pub(super) highest: usize,
}

impl Concurrency {
    pub(super) fn new(ceiling: usize, slow_downs: u64, now: Instant) -> Self {
        let ceiling = ceiling.max(1);
        let limit = START_CONCURRENCY.min(ceiling);
        Self {
            limit,
            ceiling,
            phase: Phase::Climb {
                rate: None,
                measured: Mean::default(),
            },
            window_start: now,
            window_done: 0,
            settling: true,
            slow_downs_seen: slow_downs,
            last_cut: None,
            peak: 0.0,
            between_probes: WINDOWS_BETWEEN_PROBES,
            lowest: limit,
            highest: limit,
        }
    }

    /// The copies that may run at once now.
    pub(super) fn current(&self) -> usize {
        self.limit
    }

    /// Takes in a finished copy and the `503` count after it. Returns the new limit when a
    /// `503` halved it.
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
            self.peak = 0.0;
            self.between_probes = WINDOWS_BETWEEN_PROBES;
            self.phase = hold();
            self.set(self.limit / 2, now);
            return Some(self.limit);
        }
        self.window_done += 1;
        let elapsed = now.duration_since(self.window_start);
        if self.window_done >= self.limit && elapsed >= MIN_WINDOW {
            let rate = self.window_done as f64 / elapsed.as_secs_f64();
            if std::mem::take(&mut self.settling) {
                self.restart_window(now);
            } else {
                self.window_closed(rate, now);
            }
        }
        None
    }

    /// Decides on a measured window's rate (copies per second).
    fn window_closed(&mut self, rate: f64, now: Instant) {
        let (phase, limit) = match self.phase {
            Phase::Climb {
                rate: before,
                measured,
            } => {
                let measured = measured.with(rate);
                let rate = measured.rate();
                match before {
                    _ if measured.windows < CLIMB_WINDOWS => {
                        let phase = Phase::Climb {
                            rate: before,
                            measured,
                        };
                        (phase, self.limit)
                    }
                    Some(before) if rate * LOSS < before => (hold(), self.limit / 2),
                    Some(before) if rate < before * GAIN => (hold(), self.limit),
                    _ => self.climb_on(rate),
                }
            }
            Phase::Hold {
                measured,
                up_next,
                undo,
            } => {
                let measured = measured.with(rate);
                if measured.windows < self.between_probes {
                    let phase = Phase::Hold {
                        measured,
                        up_next,
                        undo,
                    };
                    (phase, self.limit)
                } else {
                    self.held(measured.rate(), up_next, undo)
                }
            }
            Phase::Probe {
                from,
                held,
                up,
                measured,
            } => {
                let measured = measured.with(rate);
                if measured.windows < PROBE_WINDOWS {
                    let phase = Phase::Probe {
                        from,
                        held,
                        up,
                        measured,
                    };
                    (phase, self.limit)
                } else {
                    self.probed(from, held, up, measured.rate())
                }
            }
        };
        self.phase = phase;
        self.set(limit, now);
    }

    /// Ends a hold at `rate`: undoes the step down it followed if the hold does not confirm that
    /// it pays, or else probes a step up or down.
    fn held(&mut self, rate: f64, up_next: bool, undo: Option<usize>) -> (Phase, usize) {
        if let Some(from) = undo.filter(|_| !self.down_pays(rate)) {
            self.back_off();
            return (hold(), from);
        }
        self.peak = self.peak.max(rate);
        let step = (self.limit / 4).max(1);
        // At the ceiling there is no step up to try.
        let up = up_next && self.limit < self.ceiling;
        let to = if up {
            self.limit + step
        } else {
            self.limit - step
        };
        let phase = Phase::Probe {
            from: self.limit,
            held: rate,
            up,
            measured: Mean::default(),
        };
        (phase, to)
    }

    /// Decides on a probe from `from` (where the rate was `held`) that ran at `rate`: the next
    /// phase and limit.
    fn probed(&mut self, from: usize, held: f64, up: bool, rate: f64) -> (Phase, usize) {
        // The best rate held includes `held`: each probe starts from a hold that raised it.
        let kept = if up {
            rate >= held * STEP_GAIN
        } else {
            self.down_pays(rate)
        };
        if kept {
            self.between_probes = WINDOWS_BETWEEN_PROBES;
        } else {
            self.back_off();
        }
        match (kept, up) {
            // More in flight paid: climb again from here.
            (true, true) => self.climb_on(rate),
            // Fewer in flight paid: hold there, and go back unless the hold confirms it.
            (true, false) => (on_trial(from), self.limit),
            (false, _) => (hold_then(!up), from),
        }
    }

    /// Whether fewer in flight, at `rate`, pay over the best rate held.
    fn down_pays(&self, rate: f64) -> bool {
        rate >= self.peak * STEP_GAIN
    }

    /// Doubles the wait before the next probe, after a step that did not pay.
    fn back_off(&mut self) {
        self.between_probes = (self.between_probes * 2).min(MOST_WINDOWS_BETWEEN_PROBES);
    }

    /// Doubles the concurrency from where it ran at `rate`, or holds at the ceiling.
    fn climb_on(&self, rate: f64) -> (Phase, usize) {
        if self.limit >= self.ceiling {
            (hold(), self.limit)
        } else {
            (climb(rate), self.limit * 2)
        }
    }

    /// Sets the limit (within 1 and the ceiling) and starts a new window, discarded first if the
    /// limit changed.
    fn set(&mut self, limit: usize, now: Instant) {
        let limit = limit.clamp(1, self.ceiling);
        self.settling = limit != self.limit;
        self.limit = limit;
        self.lowest = self.lowest.min(limit);
        self.highest = self.highest.max(limit);
        self.restart_window(now);
    }

    fn restart_window(&mut self, now: Instant) {
        self.window_start = now;
        self.window_done = 0;
    }
}

/// Climbing on from a concurrency that ran at `rate`.
fn climb(rate: f64) -> Phase {
    Phase::Climb {
        rate: Some(rate),
        measured: Mean::default(),
    }
}

/// Holding, probing up first.
fn hold() -> Phase {
    hold_then(true)
}

fn hold_then(up_next: bool) -> Phase {
    Phase::Hold {
        measured: Mean::default(),
        up_next,
        undo: None,
    }
}

/// Holding after a step down from `from`, which is undone unless the hold pays too; probing
/// down next.
fn on_trial(from: usize) -> Phase {
    Phase::Hold {
        measured: Mean::default(),
        up_next: false,
        undo: Some(from),
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

    /// Feeds `copies` finished copies to a pacing at `ceiling`, spaced as a server would finish
    /// them: `rate(copies done so far, copies in flight)` per second. Returns the pacing and the
    /// rates it ran at over the last quarter of the copies (the rate it settled on).
    fn simulate(
        ceiling: usize,
        copies: usize,
        rate: impl Fn(usize, usize) -> f64,
    ) -> (Concurrency, f64) {
        let start = Instant::now();
        let mut at = start;
        let mut concurrency = Concurrency::new(ceiling, 0, start);
        let mut settled = Duration::ZERO;
        for done in 0..copies {
            let step = Duration::from_secs_f64(1.0 / rate(done, concurrency.current()));
            at += step;
            if done >= copies * 3 / 4 {
                settled += step;
            }
            assert_eq!(concurrency.finished(0, at), None);
            assert!(concurrency.current() <= ceiling.max(1));
        }
        (concurrency, (copies / 4) as f64 / settled.as_secs_f64())
    }

    /// A server that finishes `in_flight / latency` copies a second, up to `ceiling` (its CPU).
    fn server(latency_ms: f64, ceiling: f64) -> impl Fn(usize, usize) -> f64 {
        move |_, in_flight| (in_flight as f64 * 1000.0 / latency_ms).min(ceiling)
    }

    /// A factor within `1 ± spread`, the same for every copy of a `block`, spread evenly over
    /// the blocks: the noise of a busy server, repeatable.
    fn jitter(block: usize, spread: f64) -> f64 {
        let hashed = (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        1.0 + ((hashed % 1001) as f64 / 1000.0 * 2.0 - 1.0) * spread
    }

    #[test]
    fn grows_until_more_in_flight_stops_paying() {
        // Copies take 40 ms and the server does at most 7,000 a second: 280 in flight are
        // needed, far above the start.
        let (concurrency, rate) = simulate(1000, 200_000, server(40.0, 7000.0));
        assert!(
            rate >= 0.95 * 7000.0,
            "settled at {rate:.0}/s: {concurrency:?}"
        );
        // No step down below what the rate needs is kept: none pays.
        assert!(concurrency.current() >= 280, "{concurrency:?}");
    }

    #[test]
    fn holds_one_doubling_past_what_pays_at_most() {
        // Copies take 5 ms: 35 in flight reach the server's 7,000 a second; the start (128) only
        // queues in the server.
        let (concurrency, rate) = simulate(1000, 100_000, server(5.0, 7000.0));
        assert!(
            rate >= 0.95 * 7000.0,
            "settled at {rate:.0}/s: {concurrency:?}"
        );
        assert!(
            concurrency.current() <= 2 * START_CONCURRENCY,
            "{concurrency:?}"
        );
        // One doubling, which did not pay but cost nothing, and one probe a quarter above it.
        assert!(
            concurrency.highest <= 2 * START_CONCURRENCY * 5 / 4,
            "{concurrency:?}"
        );
    }

    #[test]
    fn finds_the_peak_of_a_server_that_slows_when_crowded() {
        // Past 200 in flight the server gets slower (its queue costs it).
        let crowded = |_: usize, in_flight: usize| {
            let n = in_flight as f64;
            if n <= 200.0 {
                n * 30.0
            } else {
                6000.0 * 200.0 / n
            }
        };
        let (concurrency, rate) = simulate(1000, 200_000, crowded);
        assert!(
            rate >= 0.90 * 6000.0,
            "settled at {rate:.0}/s: {concurrency:?}"
        );
    }

    #[test]
    fn steps_down_do_not_add_up_to_a_loss() {
        // Past 128 in flight every doubling still pays 7%, so each quarter step down loses under
        // 3%: measured against the step before, one step after another would sink to 128 (89% of
        // the peak); measured against the best rate held, the pacing stops after one.
        let gentle = |_: usize, in_flight: usize| {
            let n = in_flight as f64;
            if n <= 128.0 {
                n * 25.0
            } else {
                3200.0 * (n / 128.0).powf(0.1)
            }
        };
        let peak = gentle(0, 512);
        let (concurrency, rate) = simulate(512, 300_000, gentle);
        assert!(
            rate >= 0.95 * peak,
            "settled at {rate:.0}/s of {peak:.0}: {concurrency:?}"
        );
        assert!(concurrency.current() >= 384, "{concurrency:?}");
    }

    #[test]
    fn follows_latency_that_rises_during_the_run() {
        // 5 ms for the first 50,000 copies, then 40 ms: what sufficed no longer does.
        let rising = |done: usize, in_flight: usize| {
            let latency = if done < 50_000 { 5.0 } else { 40.0 };
            server(latency, 7000.0)(done, in_flight)
        };
        let (concurrency, rate) = simulate(1000, 400_000, rising);
        assert!(
            rate >= 0.90 * 7000.0,
            "settled at {rate:.0}/s: {concurrency:?}"
        );
    }

    #[test]
    fn finds_a_gentle_rise_through_noisy_windows() {
        // Past 128 in flight each doubling pays only 4% (a server that serves more in flight a
        // little faster, as Garage does under latency), and every block of 300 copies runs up
        // to 5% faster or slower than that curve: one window's rate says little. Holding where a
        // doubling first paid less than 5% would settle at 92% of the peak.
        let noisy = |done: usize, in_flight: usize| {
            let n = in_flight as f64;
            let curve = if n <= 128.0 {
                n * 25.0
            } else {
                3200.0 * (n / 128.0).powf(0.06)
            };
            curve * jitter(done / 300, 0.05)
        };
        let peak = 3200.0 * 4f64.powf(0.06);
        let (concurrency, rate) = simulate(512, 300_000, noisy);
        assert!(
            rate >= 0.97 * peak,
            "settled at {rate:.0}/s of {peak:.0}: {concurrency:?}"
        );
    }

    #[test]
    fn holds_the_ceiling_through_noisy_windows() {
        // Shaped on Garage under 20-60 ms of added latency (docs/benchmarks.md): past 256 in
        // flight a doubling pays some 6%, a quarter step under 2%, while the rate over a few
        // hundred copies moves by up to 20% either way. Steps down kept on that noise add up.
        let noisy = |done: usize, in_flight: usize| {
            let n = in_flight as f64;
            let curve = if n <= 128.0 {
                n * 22.3
            } else if n <= 256.0 {
                2849.0 * (n / 128.0).powf(0.29)
            } else {
                3488.0 * (n / 256.0).powf(0.082)
            };
            curve * jitter(done / 500, 0.20)
        };
        let peak = 3488.0 * 2f64.powf(0.082);
        for copies in [70_000, 300_000] {
            let (concurrency, rate) = simulate(512, copies, noisy);
            assert!(
                rate >= 0.97 * peak,
                "{copies}: settled at {rate:.0}/s of {peak:.0}: {concurrency:?}"
            );
            assert!(concurrency.current() >= 384, "{copies}: {concurrency:?}");
        }
    }

    #[test]
    fn undoes_a_step_down_that_paid_only_while_it_was_probed() {
        // Flat past 250 in flight, but every probe down runs 10% faster (as the noise of a
        // probe's few windows can): each step down looks paid, and only the hold after it
        // shows that it was not.
        let start = Instant::now();
        let (mut at, mut concurrency) = (start, Concurrency::new(512, 0, start));
        let mut undone = 0;
        for _ in 0..200_000 {
            let boost = match concurrency.phase {
                Phase::Probe { up: false, .. } => 1.10,
                _ => 1.0,
            };
            let rate = (concurrency.current() as f64 * 14.0).min(3500.0) * boost;
            at += Duration::from_secs_f64(1.0 / rate);
            let before = concurrency.phase;
            assert_eq!(concurrency.finished(0, at), None);
            match (before, concurrency.phase) {
                (
                    Phase::Hold {
                        undo: Some(from), ..
                    },
                    Phase::Hold { undo: None, .. },
                ) => {
                    assert_eq!(concurrency.current(), from, "{concurrency:?}");
                    undone += 1;
                }
                // Holding (not on trial after a step down): only at the ceiling.
                (_, Phase::Hold { undo: None, .. }) => {
                    assert_eq!(concurrency.current(), 512, "{concurrency:?}");
                }
                _ => {}
            }
        }
        assert!(undone >= 2, "{undone} steps down undone: {concurrency:?}");
    }

    #[test]
    fn never_goes_above_the_ceiling() {
        let (concurrency, _) = simulate(16, 50_000, server(40.0, 7000.0));
        assert_eq!(concurrency.highest, 16);
        assert_eq!(concurrency.current(), 16);
        let (concurrency, _) = simulate(1, 1000, server(40.0, 7000.0));
        assert_eq!(concurrency.highest, 1);
    }

    #[test]
    fn concurrency_halves_on_slow_down_once_per_cooldown() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(64, 7, start);
        assert_eq!(concurrency.current(), 64);
        // A finished copy with no new 503: the limit stays.
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
    fn after_a_slow_down_it_holds_and_grows_only_when_that_pays() {
        let start = Instant::now();
        let mut concurrency = Concurrency::new(1000, 0, start);
        let halved = START_CONCURRENCY / 2;
        assert_eq!(concurrency.finished(1, start), Some(halved));
        // A server that gives nothing more for more in flight: it stays there, but for a probe
        // a quarter up.
        let mut at = start;
        for _ in 0..50_000 {
            at += Duration::from_secs_f64(1.0 / 3000.0);
            concurrency.finished(1, at);
            assert!(concurrency.current() <= halved * 5 / 4, "{concurrency:?}");
        }
        // One with room: probes up pay, and it climbs again.
        for _ in 0..200_000 {
            let rate = (concurrency.current() as f64 * 25.0).min(7000.0);
            at += Duration::from_secs_f64(1.0 / rate);
            concurrency.finished(1, at);
        }
        assert!(concurrency.current() >= 200, "{concurrency:?}");
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
