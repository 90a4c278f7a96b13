//! Stagewise's numeric kernels, kept apart from the contract in `stagewise-core`.
//!
//! Everything here is a function over plain row-major slices; nothing knows about stages, ops or
//! the tape. This crate also holds every `unsafe` block of the workspace, each with its `SAFETY`
//! comment: the AVX-512 kernel, the `vzeroupper` after faer's products, the huge-page advice,
//! the Hogwild matrix of word2vec and the counting allocator of the allocation tests.
//!
//! # Brief overview
//! - [`Float`]: `f32` to train, `f64` to check gradients.
//! - [`matrix`]: faer views over our slices and the one GEMM entry point (split across threads
//!   without changing a bit).
//! - [`packed`]: the head's forward product from a right-hand side packed once (AVX-512).
//! - [`rows`]: bias add, bias-gradient column sums and transposing copies, split across threads.
//! - [`hogwild`]: a matrix threads update without locks (word2vec's shared weights).
//! - [`memory`]: zeroed, 64-byte-aligned buffers on huge pages.
//! - [`tuning`]: every performance constant, each with its reason.
//! - [`counting_alloc`]: a counting global allocator for "a warm step allocates nothing" tests.

pub mod counting_alloc;
mod float;
pub mod hogwild;
pub mod matrix;
pub mod memory;
pub mod packed;
pub mod rows;
pub mod tuning;

pub use faer::Par;
pub use float::Float;

/// `Par` for `threads` threads: sequential for 1, rayon-backed parallelism otherwise.
pub fn par_for_threads(threads: usize) -> Par {
    if threads <= 1 { Par::Seq } else { Par::rayon(threads) }
}

/// The number of threads `par` runs on.
pub fn threads_of(par: Par) -> usize {
    match par {
        Par::Seq => 1,
        Par::Rayon(n) => n.get(),
    }
}

/// A small seeded generator for this crate's tests (the project's `Rng` lives in
/// `stagewise-core`, which depends on this crate).
#[cfg(test)]
pub(crate) mod test_rng {
    /// SplitMix64, with a Box–Muller normal.
    pub struct TestRng(u64);

    impl TestRng {
        pub fn new(seed: u64) -> Self {
            TestRng(seed)
        }

        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        }

        pub fn normal(&mut self) -> f64 {
            let u1 = 1.0 - self.uniform();
            let u2 = self.uniform();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }
}
