//! The wall clock against the monotonic clock, for the labs that judge time from captures.
//!
//! Capture timestamps (tcpdump's, `watch`'s) are `CLOCK_REALTIME`; the lab's own waits
//! (`timeout 8`, a resolver's 5 s, the 3-minute `--for`) are monotonic. The two advance
//! together unless the wall clock is stepped: an NTP step, or this VM snapshotted and
//! restored (the kernel logs "crng reseeded due to virtual machine fork"; the guest's
//! monotonic clock stands still while it is paused, and its wall clock is set forward on
//! resume). A capture that spans such a step shows time that never passed for the
//! traffic: an 8-s hang measured as 34 s. [`ClockWatch`] tells the lab that this happened,
//! so that it records again instead of judging a capture the step falsified.

use std::time::{Duration, Instant, SystemTime};

/// More than this between the two clocks is a step, not NTP's slewing (at most 500 ppm:
/// 0.1 s over the longest lab run, 200 s).
pub const STEP: Duration = Duration::from_millis(500);

/// Both clocks read at one instant; [`ClockWatch::stepped`] compares them later.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    wall: SystemTime,
    mono: Instant,
}

impl ClockWatch {
    /// Reads both clocks now.
    pub fn start() -> ClockWatch {
        ClockWatch {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// How far the wall clock moved against the monotonic clock since [`ClockWatch::start`],
    /// in seconds (positive: forward).
    pub fn moved_s(&self) -> f64 {
        let mono = self.mono.elapsed().as_secs_f64();
        let wall = match SystemTime::now().duration_since(self.wall) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        wall - mono
    }

    /// `Some(seconds)` when the wall clock was stepped since [`ClockWatch::start`] (moved
    /// more than [`STEP`] either way), else `None`.
    pub fn stepped(&self) -> Option<f64> {
        let moved = self.moved_s();
        (moved.abs() > STEP.as_secs_f64()).then_some(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clocks_agree_when_nothing_steps_the_wall_clock() {
        let c = ClockWatch::start();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.moved_s().abs() < 0.1, "{}", c.moved_s());
        assert_eq!(c.stepped(), None);
    }

    #[test]
    fn a_wall_clock_ahead_of_the_monotonic_one_is_a_step() {
        // As if the wall clock had been set 26.3 s forward after the start (the CI run of
        // 2026-12-03 06:21, a VM restored from a snapshot).
        let c = ClockWatch {
            wall: SystemTime::now() - Duration::from_millis(26_300),
            mono: Instant::now(),
        };
        let s = c.stepped().expect("a step");
        assert!((26.2..26.5).contains(&s), "{s}");
        let back = ClockWatch {
            wall: SystemTime::now() + Duration::from_secs(2),
            mono: Instant::now(),
        };
        assert!(back.stepped().is_some_and(|s| s < -1.9));
    }
}
