//! Cancellation of a run, shared by signal handlers, timers and the capture points.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

type Hook = Box<dyn Fn() + Send>;

/// Ends a [`Diagnosis`](crate::Diagnosis) early, from any thread: a SIGINT/SIGTERM
/// handler thread, a timer, a UI. Cloning gives another handle to the same run.
///
/// A stopped live diagnosis still analyses what was captured, reads the counters after
/// and returns a report; a stopped offline one returns the report of the packets read.
/// Calling [`stop`](StopHandle::stop) before the run starts makes it stop at once.
#[derive(Clone, Default)]
pub struct StopHandle {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    stopped: bool,
    hooks: Vec<Hook>,
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl StopHandle {
    /// A handle that has not been stopped.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Stops the run: wakes every capture point and the waiting orchestrator.
    /// Safe to call from any thread, any number of times (not from a signal handler:
    /// use a signal thread, as signal-hook's iterator provides).
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        for hook in &state.hooks {
            hook();
        }
        drop(state);
        self.inner.changed.notify_all();
    }

    /// Whether [`stop`](StopHandle::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Runs `hook` when the run is stopped (at once if it already is).
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    pub(crate) fn on_stop(&self, hook: impl Fn() + Send + 'static) {
        let mut state = self.lock();
        if state.stopped {
            hook();
        }
        state.hooks.push(Box::new(hook));
    }

    /// Forgets the hooks of a finished run.
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    pub(crate) fn clear_hooks(&self) {
        self.lock().hooks.clear();
    }

    /// Waits until stopped or `timeout` passed; returns whether it is stopped.
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let state = self.lock();
        if state.stopped {
            return true;
        }
        match self.inner.changed.wait_timeout(state, timeout) {
            Ok((state, _)) => state.stopped,
            Err(poisoned) => poisoned.into_inner().0.stopped,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A hook that panicked leaves the flag as consistent as before: keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn hooks_run_once_registered_even_after_stop() {
        let stop = StopHandle::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        stop.on_stop(move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert!(!stop.wait(Duration::from_millis(1)));
        stop.clone().stop();
        assert!(stop.is_stopped());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let c = calls.clone();
        stop.on_stop(move || {
            c.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        assert!(stop.wait(Duration::from_secs(5)));
    }

    #[test]
    fn wait_wakes_when_stopped_from_another_thread() {
        let stop = StopHandle::new();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.stop();
        });
        assert!(stop.wait(Duration::from_secs(10)));
        t.join().unwrap();
    }
}
