//! Cooperative cancellation of long calls: a hook the engines poll between blocks.
//!
//! A call over billions of (broadcast) elements runs for seconds or hours, and must stop soon
//! after its caller asks (Ctrl-C). The kernels know nothing of who asks: the code that runs a
//! kernel installs a *hook* on its own thread with [`with_hook`], a function that says whether
//! to stop (the Python bindings re-attach to the interpreter briefly and run its signal
//! handlers). The engines ([`super::reduce`], [`super::rows`]) call [`poll`] on the calling
//! thread after each block it reduces; `poll` calls the hook at most once per [`INTERVAL`] of
//! the call, never in a call shorter than that.
//!
//! Once the hook has said stop, the call is cancelled for good: the engines stop claiming
//! blocks (the pool's threads see a shared flag and finish only the block they hold, within
//! the engine call, so no thread touches the operands after it returns), skip what was not
//! computed, and return a state flagged [`flags::CANCELLED`](super::reduce::flags::CANCELLED);
//! any later engine run of the same call stops before its first block. What a cancelled call
//! wrote to its outputs is partial, and the state it returns means nothing.
//!
//! Without a hook (the default; also on the pool's own threads) [`poll`] is one thread-local
//! read.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The least time between two calls of a hook: often enough that a call stops well within a
/// tenth of a second, rarely enough that the hook (about a microsecond to check Python's
/// signals) costs nothing measurable.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// The hook of the call running on this thread.
struct Hook {
    /// True: stop the call.
    check: Box<dyn Fn() -> bool>,
    /// When the hook may be called next.
    next: Instant,
    /// The hook has said stop.
    cancelled: bool,
}

thread_local! {
    /// Taken out while it is polled, so that a hook that runs a nested call on this thread
    /// (a Python signal handler may) sees no hook of its own caller.
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Runs `work` with `check` as this thread's cancellation hook (see the module doc), first
/// called [`INTERVAL`] after the start. The previous hook, if any, is restored afterwards,
/// also when `work` panics.
pub fn with_hook<R>(check: Box<dyn Fn() -> bool>, work: impl FnOnce() -> R) -> R {
    struct Restore(Option<Hook>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            HOOK.with(|slot| slot.set(previous));
        }
    }
    let hook = Hook {
        check,
        next: Instant::now() + INTERVAL,
        cancelled: false,
    };
    let _restore = Restore(HOOK.with(|slot| slot.replace(Some(hook))));
    work()
}

/// True if the call running on this thread is cancelled: calls the hook when [`INTERVAL`] has
/// passed since its last call. False where no hook is installed.
#[inline]
pub fn poll() -> bool {
    HOOK.with(|slot| {
        let Some(mut hook) = slot.take() else {
            return false;
        };
        if !hook.cancelled && Instant::now() >= hook.next {
            hook.cancelled = (hook.check)();
            // From the end of the check: a slow check (waiting for the interpreter) does not
            // make the next one come sooner.
            hook.next = Instant::now() + INTERVAL;
        }
        let cancelled = hook.cancelled;
        slot.set(Some(hook));
        cancelled
    })
}

/// True if the call running on this thread has been cancelled (without calling the hook).
#[inline]
pub fn cancelled() -> bool {
    HOOK.with(|slot| {
        let hook = slot.take();
        let cancelled = hook.as_ref().is_some_and(|h| h.cancelled);
        slot.set(hook);
        cancelled
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn no_hook_never_stops() {
        assert!(!poll());
        assert!(!cancelled());
    }

    #[test]
    fn hook_is_called_at_most_once_per_interval_and_sticks() {
        let calls = Rc::new(Cell::new(0));
        let seen = calls.clone();
        let stop_after = 2;
        with_hook(
            Box::new(move || {
                seen.set(seen.get() + 1);
                seen.get() >= stop_after
            }),
            || {
                // Not before the first interval has passed.
                assert!(!poll());
                assert_eq!(calls.get(), 0);
                std::thread::sleep(INTERVAL);
                assert!(!poll());
                assert_eq!(calls.get(), 1);
                // Not again within the interval.
                assert!(!poll());
                assert_eq!(calls.get(), 1);
                std::thread::sleep(INTERVAL);
                assert!(poll());
                assert!(cancelled());
                // Cancelled for good, without calling the hook again.
                std::thread::sleep(INTERVAL);
                assert!(poll());
                assert_eq!(calls.get(), 2);
            },
        );
        // The hook is gone with its call.
        assert!(!poll());
        assert!(!cancelled());
    }

    #[test]
    fn nested_calls_have_their_own_hook() {
        with_hook(Box::new(|| true), || {
            std::thread::sleep(INTERVAL);
            with_hook(Box::new(|| false), || {
                std::thread::sleep(INTERVAL);
                assert!(!poll());
            });
            assert!(poll());
        });
    }
}
