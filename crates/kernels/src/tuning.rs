//! Every performance knob of Stagewise, in one place, each with the reason for its value.
//!
//! None of these changes a result: each decides only how work is cut into pieces or handed to
//! threads, and every cut is chosen so that each output element is computed by the same
//! arithmetic in the same order (the tests that pin that down are named in each kernel's docs).
//! The measurements behind the values are in `docs/results.md` ("Tuning constants"); re-measure
//! there before changing one.

/// Products below this many multiply-adds (`m·n·k`) run on one thread: 8 Mi sits between the
/// seed's per-step recurrence product (2 Mi, faster whole) and the large one's (64 Mi, faster split).
pub const SEQUENTIAL_BELOW_MACS: usize = 8 << 20;

/// Output columns per block of `matrix::gemm_in_column_blocks`: a block of a weight gradient
/// stays in cache across faer's slices of `k` (5–8 % faster on every weight-gradient shape).
pub const COLUMN_BLOCK: usize = 256;

/// Output blocks of a split product are cut at multiples of this (one AVX-512 `f32` vector).
pub const SPLIT_ALIGN: usize = 16;

/// Bytes of packed right-hand side one pass of `packed::gemm_packed` works on: a block of panels
/// that stays in a 2 MB L2 cache while every tile of rows streams past it.
pub const PACKED_BLOCK_BYTES: usize = 512 << 10;

/// Packings of fewer scalars than this run on one thread: a task costs more than it saves.
pub const PARALLEL_PACK_BELOW: usize = 1 << 16;

/// Rows per parallel task of `rows::add_to_rows`: large enough to amortise a task.
pub const ADD_ROWS_PER_TASK: usize = 32;

/// Columns per parallel task of `rows::add_column_sums`: 1 KiB of every `f32` row, a whole number
/// of cache lines, and 40 tasks for a 10,000-word vocabulary.
pub const SUM_COLS_PER_TASK: usize = 256;

/// Rows per parallel task of the transposing copies, and the edge of their cache blocks.
pub const TRANSPOSE_BLOCK: usize = 32;

/// Buffers smaller than this are not advised onto 2 MiB pages: they gain nothing from them.
pub const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// Elements per parallel task when an arena is zeroed (256 KiB of `f32`): the gradient arena is
/// zeroed every step (37 MB for the large configuration, 3.7 ms on one thread).
pub const ZERO_BLOCK: usize = 1 << 16;

/// Elements per parallel task of an optimizer's fused pass over the arena: bounds scheduling
/// overhead; each element's update is independent.
pub const OPTIMIZER_CHUNK: usize = 1 << 14;

/// Rows per parallel task of the fused softmax cross-entropy.
pub const LOSS_ROWS_PER_TASK: usize = 16;

/// Rows per parallel task when a Linear layer copies its input next to a column of ones.
pub const FILL_ROWS_PER_TASK: usize = 256;

/// Inputs narrower than this fold a Linear layer's bias into its forward product
/// (`[X | 1]·[W | b]ᵀ`): faster at the seed's width 128, slower at the large one's 512.
pub const FOLD_BIAS_BELOW: usize = 256;

/// A recurrence step is split across threads by hidden units only if its product has at least
/// this many multiply-adds (`B·H·4H`): the seed's steps (2 Mi) gained nothing, the large (64 Mi) 9 %.
pub const SPLIT_STEP_MACS: usize = 4 << 20;

/// Hidden units of a step's parts are cut at multiples of this (one AVX-512 `f32` vector), so
/// every part's element-wise loops run on whole vectors.
pub const UNIT_ALIGN: usize = 16;

/// How much longer a recurrence step takes than its multiply-adds alone at a large product's
/// rate (the cell pass, the small product's lower efficiency): sizes the overlapped schedule.
pub const RECURRENCE_COST_FACTOR: f64 = 2.0;

/// Blocks a row-wise op's share of an overlapped phase is cut into, so that the thread that
/// finishes its own share first takes some over (rayon's work stealing).
pub const STEALABLE_BLOCKS: usize = 16;
