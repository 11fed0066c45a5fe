//! SIGINT/SIGTERM end a capture cleanly; a second one ends the program at once.
//!
//! A signal thread (signal-hook's iterator, which uses a self-pipe internally) turns the
//! signal into ordinary code: it sets a flag and runs the registered stop hooks — e.g.
//! `netdiag_capture::StopHandle::stop`, which calls `pcap_breakloop` and must not run
//! inside a signal handler. The capture loop then returns, the writer flushes a complete
//! file and the report is printed.
//!
//! SIGPIPE stays ignored (Rust's default): a closed reader shows up as EPIPE on the next
//! write, which the capture loop treats as a quiet end (exit 0).

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn() + Send>;

/// Shared state between the signal thread and the command.
#[derive(Clone)]
pub(crate) struct Interrupt {
    /// 0 = no signal yet, else the signal number.
    signal: Arc<AtomicI32>,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Interrupt {
    /// Starts the signal thread for SIGINT and SIGTERM.
    pub(crate) fn install() -> anyhow::Result<Interrupt> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
            .map_err(|e| anyhow::anyhow!("installing SIGINT/SIGTERM handlers: {e}"))?;
        let interrupt = Interrupt {
            signal: Arc::new(AtomicI32::new(0)),
            hooks: Arc::new(Mutex::new(Vec::new())),
        };
        let shared = interrupt.clone();
        std::thread::Builder::new()
            .name("netdiag-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if shared.signal.swap(sig, Ordering::SeqCst) != 0 {
                        // Second signal: the user wants out now (128 + signal, as shells do).
                        eprintln!("\nkubectl-netdiag: second signal, exiting without cleanup");
                        std::process::exit(128 + sig);
                    }
                    shared.run_hooks();
                }
            })
            .map_err(|e| anyhow::anyhow!("starting the signal thread: {e}"))?;
        Ok(interrupt)
    }

    /// Registers something to run when a signal arrives (at once if one already came).
    pub(crate) fn on_interrupt(&self, hook: impl Fn() + Send + 'static) {
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push(Box::new(hook));
        }
        if self.is_interrupted() {
            self.run_hooks();
        }
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub(crate) fn is_interrupted(&self) -> bool {
        self.signal.load(Ordering::SeqCst) != 0
    }

    /// The name of the signal that arrived, if any.
    pub(crate) fn signal_name(&self) -> Option<&'static str> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            SIGINT => Some("SIGINT"),
            SIGTERM => Some("SIGTERM"),
            _ => Some("a signal"),
        }
    }

    fn run_hooks(&self) {
        if let Ok(hooks) = self.hooks.lock() {
            for hook in hooks.iter() {
                hook();
            }
        }
    }
}
