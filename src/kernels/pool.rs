//! The crate's own rayon thread pool: sized by `CROSSENT_NUM_THREADS` or `set_num_threads`,
//! and safe across `fork()`.
//!
//! Rayon's global pool is never touched (even `rayon::current_num_threads()` would build it).
//! Threads do not survive `fork()`: a child that used the parent's pool would wait forever for
//! workers that do not exist. The pool is therefore tagged with the id of the process that
//! built it; a child sees a different id, leaks the parent's (unusable) pool without touching
//! it and builds a fresh one.
//!
//! The lock around the pool must not be held across a `fork()` either: a child would inherit
//! it locked by a thread that does not exist there, and hang on its first parallel call
//! (another thread of the parent only has to be looking up the pool at that moment). So the
//! lock is a spin lock ([`ForkLock`]) that `pthread_atfork` handlers take before the fork and
//! release on both sides of it: the child gets the pool state whole and the lock free. The same
//! handlers take the lock of [`super::memory`]'s claims and clear the claims in the child (the
//! threads that held them are gone), and advance a fork generation that tells state left by
//! an ancestor's threads ([`thread_token`], [`token_is_stale`]).

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use rayon::{ThreadPool, ThreadPoolBuilder};

/// The most threads crossent runs: larger requests are capped. Beyond a few per CPU, threads
/// only add start-up and wake-up cost (1000 threads on 2 CPUs: 4 s to start the pool, 0.3 s per
/// call), and tens of thousands exhaust the process's thread limit or memory.
pub const MAX_THREADS: usize = 1024;

/// Requested thread count; 0 means "not set yet" (resolved from the environment on first use).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

struct Owned {
    pid: u32,
    threads: usize,
    /// `None`: building a pool of this size failed (e.g. no more threads could be started);
    /// calls then run on their own thread instead of retrying on every call.
    pool: Option<Arc<ThreadPool>>,
}

/// A value behind a spin lock that `fork()` cannot leave held in the child (module doc): the
/// `pthread_atfork` handlers take every such lock of the crate before the fork and release
/// them on both sides of it. For state that is looked up or changed briefly (the pool, the
/// claims of running calls on memory), never held across a long computation.
pub(crate) struct ForkLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only read or written through a `ForkLockGuard`, i.e. with `locked` held.
unsafe impl<T: Send> Sync for ForkLock<T> {}

static POOL: ForkLock<Option<Owned>> = ForkLock::new(None);

impl<T> ForkLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        ForkLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, registering the fork handlers first on Unix.
    pub(crate) fn lock(&self) -> ForkLockGuard<'_, T> {
        register_fork_handlers();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        ForkLockGuard(self)
    }

    /// Runs `f` on the value, then releases the lock: for the fork handlers, on a lock that
    /// the prepare handler took and whose guard it leaked.
    ///
    /// # Safety
    /// The calling thread must hold the lock through a leaked guard.
    #[cfg(unix)]
    pub(crate) unsafe fn release_held<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the caller holds the lock.
        let r = f(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        r
    }
}

/// The value while the lock is held; dropping it releases the lock.
pub(crate) struct ForkLockGuard<'a, T>(&'a ForkLock<T>);

impl<T> Deref for ForkLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's lifetime.
        unsafe { &*self.0.value.get() }
    }
}

impl<T> DerefMut for ForkLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the lock is held for the guard's lifetime, by this guard only.
        unsafe { &mut *self.0.value.get() }
    }
}

impl<T> Drop for ForkLockGuard<'_, T> {
    fn drop(&mut self) {
        self.0.locked.store(false, Ordering::Release);
    }
}

/// Counts the `fork()`s between the first process that loaded crossent and this one: the
/// `pthread_atfork` child handler increments it. State tagged with another value (a lock
/// holder, see [`thread_token`]) belongs to a thread of an ancestor process, which does not
/// exist here.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

/// A token unique to the calling thread of this process: the thread's number (from a
/// process-wide counter) in the low 32 bits, the fork generation in the high ones. Never 0.
pub fn thread_token() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static NUMBER: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let number = NUMBER.with(|n| *n);
    (u64::from(FORK_GENERATION.load(Ordering::Acquire)) << 32) | u64::from(number)
}

/// True if `token` (from [`thread_token`]) names a thread of an ancestor process: a thread
/// that does not exist in this one.
pub fn token_is_stale(token: u64) -> bool {
    (token >> 32) as u32 != FORK_GENERATION.load(Ordering::Acquire)
}

/// Registers the `pthread_atfork` handlers, once per process (a child inherits them); called
/// at import and before any lock of the crate is taken. A no-op off Unix.
pub fn register_fork_handlers() {
    #[cfg(unix)]
    fork::register();
}

#[cfg(unix)]
mod fork {
    use std::ffi::c_int;
    use std::sync::atomic::Ordering;
    use std::sync::Once;

    use super::{FORK_GENERATION, POOL};
    use crate::memory;

    extern "C" {
        fn pthread_atfork(
            prepare: Option<extern "C" fn()>,
            parent: Option<extern "C" fn()>,
            child: Option<extern "C" fn()>,
        ) -> c_int;
    }

    /// Before `fork()`: wait until no thread is inside the locks, and keep them (always in
    /// this order).
    extern "C" fn prepare() {
        std::mem::forget(POOL.lock());
        memory::before_fork();
    }

    /// After `fork()`, in the parent: release them.
    extern "C" fn parent() {
        memory::after_fork(false);
        // SAFETY: `prepare` took the lock on this thread and leaked its guard.
        unsafe { POOL.release_held(|_| ()) };
    }

    /// After `fork()`, in the child: every thread but this one is gone, so are the claims they
    /// held on memory, and the locks they might have waited for are free.
    extern "C" fn child() {
        FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
        memory::after_fork(true);
        // SAFETY: as in `parent`.
        unsafe { POOL.release_held(|_| ()) };
    }

    /// Registers the handlers, once per process (a child inherits them).
    pub fn register() {
        static ONCE: Once = Once::new();
        // SAFETY: the handlers only take and release spin locks and clear a vector. Registration
        // fails only for lack of memory, and then a fork may race as it would without the
        // handlers.
        ONCE.call_once(|| unsafe {
            pthread_atfork(Some(prepare), Some(parent), Some(child));
        });
    }
}

/// The thread count used when neither `set_num_threads` nor `CROSSENT_NUM_THREADS` says
/// otherwise: the CPUs this process may run on.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses a `CROSSENT_NUM_THREADS` value: a positive integer, or `None` if absent/invalid.
pub fn parse_env(value: Option<&str>) -> Option<usize> {
    value?
        .trim()
        .parse::<u128>()
        .ok()
        .filter(|&n| n > 0)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(MAX_THREADS))
}

/// The number of threads crossent computes with.
pub fn num_threads() -> usize {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => {
            let n = parse_env(std::env::var("CROSSENT_NUM_THREADS").ok().as_deref())
                .unwrap_or_else(default_threads);
            // Another thread may have set a value meanwhile: keep theirs.
            match REQUESTED.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(current) => current,
            }
        }
        n => n,
    }
}

/// Sets the thread count for later calls, capped at [`MAX_THREADS`]; 0 is taken as 1. Calls
/// already running keep the pool they started with.
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n.clamp(1, MAX_THREADS), Ordering::Relaxed);
}

/// The pool to run `work_items` of parallel work on, or `None` when the work should stay on
/// the calling thread (one thread configured, or too little work to repay waking the pool).
pub fn pool_for(work_items: usize, threshold: usize) -> Option<Arc<ThreadPool>> {
    let threads = num_threads();
    if threads <= 1 || work_items < threshold {
        return None;
    }
    let pid = std::process::id();
    let mut guard = POOL.lock();
    match guard.as_ref() {
        Some(owned) if owned.pid == pid && owned.threads == threads => return owned.pool.clone(),
        _ => {}
    }
    if let Some(stale) = guard.take() {
        if stale.pid != pid {
            // Forked child: the parent's worker threads do not exist here, and dropping the
            // pool would try to talk to them. Leak it.
            std::mem::forget(stale);
        }
        // Same process, other size: dropping our handle is fine; calls still running hold
        // their own `Arc` and the pool winds down when the last one finishes.
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("crossent-{i}"))
        .build()
        .ok()
        .map(Arc::new);
    *guard = Some(Owned {
        pid,
        threads,
        pool: pool.clone(),
    });
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_parsing() {
        assert_eq!(parse_env(Some("4")), Some(4));
        assert_eq!(parse_env(Some(" 2 ")), Some(2));
        assert_eq!(parse_env(Some("0")), None);
        assert_eq!(parse_env(Some("-1")), None);
        assert_eq!(parse_env(Some("many")), None);
        assert_eq!(parse_env(None), None);
        assert_eq!(parse_env(Some("100000")), Some(MAX_THREADS));
        assert_eq!(
            parse_env(Some("99999999999999999999999")),
            Some(MAX_THREADS)
        );
    }

    #[test]
    fn thread_count_is_clamped() {
        let before = num_threads();
        set_num_threads(1 << 40);
        assert_eq!(num_threads(), MAX_THREADS);
        set_num_threads(0);
        assert_eq!(num_threads(), 1);
        set_num_threads(before);
    }
}
