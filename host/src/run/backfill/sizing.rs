//! [`BatchSize`]: how big the next batch is. A batch that runs out of fuel or time is rolled
//! back and retried at half the size, down to the manifest's floor; after a run of successes
//! a halved size doubles again, up to the size the settings ask for. Pure decisions, so that
//! they can be tested without a database or a component.

use crate::core::limits::Limit;

/// Successful batches in a row after which a halved batch size doubles again.
pub(crate) const GROW_BACK_AFTER: u32 = 8;

/// What to do after a batch hit a limit that a smaller batch may stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterLimit {
    /// Retry the same cursor with `to` rows instead of `from`.
    Halved { from: u32, to: u32 },
    /// The batch was already at the floor: the backfill stops. `fuel_spent` is what the
    /// attempts at this cursor burnt without finishing.
    AtFloor { size: u32, fuel_spent: u64 },
}

/// One worker's batch size, carried from chunk to chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchSize {
    current: u32,
    /// The size the settings ask for, which a grown-back size never passes.
    ceiling: u32,
    floor: u32,
    /// Successful batches since the size last changed.
    streak: u32,
    /// Fuel burnt by attempts at the current cursor that ran out of fuel or time.
    fuel_spent: u64,
}

impl BatchSize {
    pub fn new(ceiling: u32, floor: u32) -> Self {
        BatchSize { current: ceiling, ceiling, floor: floor.min(ceiling), streak: 0, fuel_spent: 0 }
    }

    /// Rows the next batch asks for.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// A new chunk starts: the size carries over, the streak and the spent fuel do not.
    pub fn start_chunk(&mut self) {
        self.streak = 0;
        self.fuel_spent = 0;
    }

    /// The batch at the current size hit `limit` and was rolled back.
    pub fn after_limit(&mut self, limit: Limit) -> AfterLimit {
        if let Limit::Fuel(fuel) = limit {
            self.fuel_spent = self.fuel_spent.saturating_add(fuel);
        }
        if self.current <= self.floor {
            return AfterLimit::AtFloor { size: self.current, fuel_spent: self.fuel_spent };
        }
        let from = self.current;
        self.current = (from / 2).max(self.floor);
        self.streak = 0;
        AfterLimit::Halved { from, to: self.current }
    }

    /// The batch committed; after [`GROW_BACK_AFTER`] in a row, a halved size doubles.
    pub fn after_success(&mut self) {
        self.fuel_spent = 0;
        self.streak += 1;
        if self.streak >= GROW_BACK_AFTER && self.current < self.ceiling {
            self.current = self.current.saturating_mul(2).min(self.ceiling);
            self.streak = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DEADLINE: Limit = Limit::Deadline(Duration::from_secs(5));

    #[test]
    fn a_limit_halves_down_to_the_floor_then_stops() {
        let mut size = BatchSize::new(1000, 200);
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::Halved { from: 1000, to: 500 });
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::Halved { from: 500, to: 250 });
        // Halving never goes below the floor, and at the floor the backfill stops.
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::Halved { from: 250, to: 200 });
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::AtFloor { size: 200, fuel_spent: 0 });
        assert_eq!(size.current(), 200);
    }

    #[test]
    fn fuel_burnt_at_one_cursor_is_summed_until_a_batch_commits() {
        let mut size = BatchSize::new(4, 1);
        assert_eq!(size.after_limit(Limit::Fuel(10)), AfterLimit::Halved { from: 4, to: 2 });
        assert_eq!(size.after_limit(Limit::Fuel(5)), AfterLimit::Halved { from: 2, to: 1 });
        assert_eq!(size.after_limit(Limit::Fuel(3)), AfterLimit::AtFloor { size: 1, fuel_spent: 18 });
        size.after_success();
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::AtFloor { size: 1, fuel_spent: 0 });
    }

    #[test]
    fn a_halved_size_grows_back_after_a_run_of_successes_but_never_past_the_ceiling() {
        let mut size = BatchSize::new(1000, 10);
        size.after_limit(DEADLINE);
        size.after_limit(DEADLINE);
        assert_eq!(size.current(), 250);
        for _ in 0..GROW_BACK_AFTER - 1 {
            size.after_success();
        }
        assert_eq!(size.current(), 250, "grew before {GROW_BACK_AFTER} successes");
        size.after_success();
        assert_eq!(size.current(), 500);
        for _ in 0..GROW_BACK_AFTER * 3 {
            size.after_success();
        }
        assert_eq!(size.current(), 1000);
    }

    #[test]
    fn a_limit_or_a_new_chunk_restarts_the_streak() {
        let mut size = BatchSize::new(100, 10);
        size.after_limit(DEADLINE);
        for _ in 0..GROW_BACK_AFTER - 1 {
            size.after_success();
        }
        size.start_chunk();
        size.after_success();
        assert_eq!(size.current(), 50, "the streak survived a new chunk");
        for _ in 0..GROW_BACK_AFTER - 2 {
            size.after_success();
        }
        size.after_limit(DEADLINE);
        size.after_success();
        assert_eq!(size.current(), 25, "the streak survived a limit");
    }

    #[test]
    fn a_floor_above_the_size_is_the_size() {
        let mut size = BatchSize::new(10, 50);
        assert_eq!(size.after_limit(DEADLINE), AfterLimit::AtFloor { size: 10, fuel_spent: 0 });
    }
}
