//! Copies of weights in the layout a GEMM reads fastest, refilled only when the weights change.

use std::sync::atomic::{AtomicU64, Ordering};

/// The [`Params::version`](stagewise_core::Params::version) a cached copy of some weights was last
/// filled from (`u64::MAX`: never), so a forward pass whose weights did not change since
/// (inference, evaluation, generation) skips the copy: `fc`'s `[W | b]ᵀ` is 5 MB at the seed size,
/// 3 % of an inference window. Atomic only because ops are shared (`&self`) between threads; it is
/// read and written outside any parallel section.
#[derive(Debug)]
pub(crate) struct FilledAt(AtomicU64);

impl FilledAt {
    /// Not filled yet.
    pub(crate) fn never() -> Self {
        FilledAt(AtomicU64::new(u64::MAX))
    }

    /// Whether the copy was filled from parameters at `version`.
    pub(crate) fn is(&self, version: u64) -> bool {
        self.0.load(Ordering::Relaxed) == version
    }

    /// Records a fill from parameters at `version`.
    pub(crate) fn set(&self, version: u64) {
        self.0.store(version, Ordering::Relaxed);
    }
}

impl Clone for FilledAt {
    fn clone(&self) -> Self {
        FilledAt(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}
