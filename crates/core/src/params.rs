//! Flat parameter arenas with PyTorch names and layouts.
//!
//! All parameters live in one contiguous `Vec`, gradients in a second of the same layout and each
//! optimizer moment in a third, so the optimizer is one fused loop and a checkpoint is one write.
//! The three are distinct newtypes so that same-shaped buffers cannot be swapped by mistake.

use crate::{Error, Float, Result};
use faer::Par;
use rayon::prelude::*;

/// A typed handle to one named tensor inside the arenas. Cheap to copy; stages keep these instead
/// of names so the hot path never looks anything up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParamId(usize);

impl ParamId {
    /// The position of this tensor in the layout (declaration order).
    pub fn index(self) -> usize {
        self.0
    }
}

/// One named tensor of the layout.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParamEntry {
    /// PyTorch's `state_dict` name, e.g. `lstm.weight_ih_l0`.
    pub name: String,
    /// PyTorch's shape, outermost first, e.g. `[4H, E]`; stored row-major.
    pub shape: Vec<usize>,
    /// Offset of the first element in the arena.
    pub offset: usize,
    /// Whether optimizers update this tensor (`false`: frozen, like a PyTorch parameter with
    /// `requires_grad = False`, which an optimizer skips entirely, weight decay included). A
    /// setting of the model that declared it, so not saved with the layout and not part of its
    /// equality: a checkpoint's layout matches a model whatever it freezes.
    #[serde(skip, default = "trainable_by_default")]
    pub trainable: bool,
}

fn trainable_by_default() -> bool {
    true
}

/// Equal names, shapes and offsets ([`ParamEntry::trainable`] is the model's setting).
impl PartialEq for ParamEntry {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.shape == other.shape && self.offset == other.offset
    }
}

impl Eq for ParamEntry {}

impl ParamEntry {
    /// Number of scalars.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// `true` for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The table of names, shapes and offsets shared by parameters, gradients and moments.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    total: usize,
}

impl ParamLayout {
    /// Every tensor in declaration order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Total number of scalars.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The entry of `id`.
    pub fn entry(&self, id: ParamId) -> &ParamEntry {
        &self.entries[id.0]
    }

    /// Finds a tensor by its PyTorch name.
    pub fn find(&self, name: &str) -> Option<ParamId> {
        self.entries.iter().position(|e| e.name == name).map(ParamId)
    }

    /// Whether optimizers update tensor `id` (see [`ParamEntry::trainable`]).
    pub fn trainable(&self, id: ParamId) -> bool {
        self.entries[id.0].trainable
    }

    /// Every handle, in declaration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.entries.len()).map(ParamId)
    }

    /// The arena ranges of consecutive tensors that share a key, skipping tensors whose key is
    /// `None`: with `|e| e.trainable.then_some(())` the contiguous runs of trainable tensors, so
    /// an optimizer updates them in as few passes as possible and never touches a frozen one.
    /// In arena order; allocates nothing.
    pub fn runs<'a, K: PartialEq + 'a>(
        &'a self,
        key: impl Fn(&ParamEntry) -> Option<K> + 'a,
    ) -> impl Iterator<Item = (K, std::ops::Range<usize>)> + 'a {
        let mut entries = self.entries.iter().peekable();
        std::iter::from_fn(move || {
            let (k, first) = loop {
                let e = entries.next()?;
                if let Some(k) = key(e) {
                    break (k, e);
                }
            };
            let mut end = first.offset + first.len();
            while let Some(next) = entries.peek() {
                if next.offset != end || key(next).as_ref() != Some(&k) {
                    break;
                }
                end += next.len();
                entries.next();
            }
            Some((k, first.offset..end))
        })
    }

    /// The arena ranges of the contiguous runs of trainable tensors (see [`ParamLayout::runs`]).
    pub fn trainable_runs(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        self.runs(|e| e.trainable.then_some(())).map(|((), r)| r)
    }

    fn range(&self, id: ParamId) -> std::ops::Range<usize> {
        let e = &self.entries[id.0];
        e.offset..e.offset + e.len()
    }

    fn declare(&mut self, name: &str, shape: &[usize]) -> Result<ParamId> {
        if self.find(name).is_some() {
            return Err(Error::config(name, "parameter declared twice"));
        }
        if shape.contains(&0) {
            return Err(Error::config(name, format!("parameter shape {shape:?} has a zero dimension")));
        }
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let total = len.and_then(|len| self.total.checked_add(len));
        let Some(total) = total else {
            return Err(Error::memory(format!("parameter {name} {shape:?}"), None, 4));
        };
        let entry =
            ParamEntry { name: name.to_owned(), shape: shape.to_vec(), offset: self.total, trainable: true };
        self.total = total;
        self.entries.push(entry);
        Ok(ParamId(self.entries.len() - 1))
    }
}

use stagewise_kernels::tuning::ZERO_BLOCK;

/// A version no arena has had yet (see `Params::version`).
fn next_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

macro_rules! arena {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<T> {
            layout: ParamLayout,
            data: Vec<T>,
            version: u64,
        }

        /// Equal layouts and values (the version is bookkeeping, not content).
        impl<T: PartialEq> PartialEq for $name<T> {
            fn eq(&self, other: &Self) -> bool {
                self.layout == other.layout && self.data == other.data
            }
        }

        impl<T: Float> $name<T> {
            /// A number that changes whenever the arena may have been written (every `&mut`
            /// access takes a fresh one) and that no other state of any arena of this process
            /// ever had, like the version counter of a PyTorch tensor. A value derived from the
            /// arena (e.g. `fc`'s transposed weight copy) is still valid while this is unchanged.
            pub fn version(&self) -> u64 {
                self.version
            }

            fn touch(&mut self) {
                self.version = next_version();
            }

            /// The shared layout.
            pub fn layout(&self) -> &ParamLayout {
                &self.layout
            }

            /// One tensor, row-major.
            pub fn get(&self, id: ParamId) -> &[T] {
                &self.data[self.layout.range(id)]
            }

            /// One tensor, row-major, writable.
            pub fn get_mut(&mut self, id: ParamId) -> &mut [T] {
                self.touch();
                let r = self.layout.range(id);
                &mut self.data[r]
            }

            /// The whole arena.
            pub fn as_slice(&self) -> &[T] {
                &self.data
            }

            /// The whole arena, writable.
            pub fn as_mut_slice(&mut self) -> &mut [T] {
                self.touch();
                &mut self.data
            }

            /// The layout and the whole arena, writable, borrowed together: an optimizer reads
            /// which tensors are trainable while it writes the values.
            pub fn layout_and_mut_slice(&mut self) -> (&ParamLayout, &mut [T]) {
                self.touch();
                (&self.layout, &mut self.data)
            }

            /// Sets every element to zero without reallocating.
            pub fn fill_zero(&mut self) {
                self.fill_zero_par(Par::Seq);
            }

            /// [`Self::fill_zero`] in blocks spread over rayon's threads under `par`: the
            /// backward pass zeroes the whole gradient arena every step (37 MB for the large
            /// configuration, 3.7 ms on one thread).
            pub fn fill_zero_par(&mut self, par: Par) {
                self.touch();
                let zero = T::from_f64(0.0);
                match par {
                    Par::Seq => self.data.fill(zero),
                    Par::Rayon(_) => self.data.par_chunks_mut(ZERO_BLOCK).for_each(|block| block.fill(zero)),
                }
            }

            /// A zero-filled arena with the same layout as `other`.
            pub fn zeros_with_layout(layout: &ParamLayout) -> Self {
                Self { layout: layout.clone(), data: stagewise_kernels::memory::zeroed(layout.total()), version: next_version() }
            }

            /// Like the zero-filled arena above, with an allocation the system refuses as an
            /// error naming the arena and its size.
            pub fn try_zeros_with_layout(layout: &ParamLayout) -> Result<Self> {
                let n = layout.total();
                let data = stagewise_kernels::memory::try_zeroed(n)
                    .map_err(|_| Error::memory(format!("{} arena", stringify!($name)), Some(n), std::mem::size_of::<T>()))?;
                Ok(Self { layout: layout.clone(), data, version: next_version() })
            }

            /// Rebuilds an arena from a layout and flat data (e.g. read from a checkpoint).
            pub fn from_parts(layout: ParamLayout, data: Vec<T>) -> Result<Self> {
                if data.len() != layout.total() {
                    return Err(Error::shape(stringify!($name), layout.total(), data.len()));
                }
                Ok(Self { layout, data, version: next_version() })
            }
        }
    };
}

arena!(
    /// Model parameters. Grown by [`Params::declare`] while stages are prepared, fixed afterwards.
    Params
);
arena!(
    /// Gradients of the loss with respect to [`Params`], same layout. Ops accumulate (`+=`) into
    /// these; they are zeroed once per step.
    Grads
);
arena!(
    /// One optimizer state buffer (e.g. Adam's first or second moment), same layout as [`Params`].
    Moments
);

impl<T: Float> Params<T> {
    /// An empty arena to declare tensors into.
    pub fn new() -> Self {
        Self { layout: ParamLayout::default(), data: Vec::new(), version: next_version() }
    }

    /// Adds a zero-initialised tensor named `name` (PyTorch's name) with `shape` (PyTorch's
    /// layout, outermost first). Fails on a duplicate name or a zero dimension.
    ///
    /// The size is checked before anything is allocated: an overflowing shape, or an arena the
    /// system will not grow to, is an error naming the tensor and its shape.
    pub fn declare(&mut self, name: &str, shape: &[usize]) -> Result<ParamId> {
        let len = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let fits = len.and_then(|len| len.checked_mul(std::mem::size_of::<T>())).is_some();
        if !fits || len.is_some_and(|len| self.data.try_reserve_exact(len).is_err()) {
            return Err(Error::memory(format!("parameter {name} {shape:?}"), len, std::mem::size_of::<T>()));
        }
        let id = self.layout.declare(name, shape)?;
        self.touch();
        self.data.resize(self.layout.total(), T::from_f64(0.0));
        Ok(id)
    }

    /// Freezes tensor `id` (`trainable = false`: optimizers leave it as it is) or unfreezes it.
    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) {
        self.layout.entries[id.0].trainable = trainable;
    }

    /// Converts every value to another float type (f32 weights into an f64 gradient check).
    pub fn cast<U: Float>(&self) -> Params<U> {
        Params {
            layout: self.layout.clone(),
            data: self.data.iter().map(|&x| U::from_f64(x.to_f64())).collect(),
            version: next_version(),
        }
    }
}

impl<T: Float> Default for Params<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezing_is_the_model_s_setting_not_the_layout_s() {
        let mut p = Params::<f32>::new();
        let id = p.declare("embedding.weight", &[4, 2]).unwrap();
        let before = p.layout().clone();
        assert!(p.layout().trainable(id));
        p.set_trainable(id, false);
        assert!(!p.layout().trainable(id));
        assert_eq!(p.layout(), &before, "equal layouts whatever they freeze");
    }

    #[test]
    fn runs_merge_neighbours_with_one_key_and_skip_the_rest() {
        let mut p = Params::<f32>::new();
        let ids: Vec<ParamId> = [("a", 2), ("b", 3), ("c", 1), ("d", 4), ("e", 2)]
            .iter()
            .map(|&(n, l)| p.declare(n, &[l]).unwrap())
            .collect();
        let all: Vec<_> = p.layout().trainable_runs().collect();
        assert_eq!((all.len(), all[0].clone()), (1, 0..12));
        p.set_trainable(ids[2], false);
        p.set_trainable(ids[4], false);
        assert_eq!(p.layout().trainable_runs().collect::<Vec<_>>(), [0..5, 6..10]);
        let by_len: Vec<_> = p.layout().runs(|e| e.trainable.then_some(e.len() > 2)).collect();
        assert_eq!(by_len, [(false, 0..2), (true, 2..5), (true, 6..10)]);
        p.set_trainable(ids[0], false);
        p.set_trainable(ids[1], false);
        p.set_trainable(ids[3], false);
        assert_eq!(p.layout().trainable_runs().count(), 0);
    }

    #[test]
    fn every_write_access_takes_a_new_version_and_reads_keep_it() {
        let mut p = Params::<f32>::new();
        let id = p.declare("w", &[2, 3]).unwrap();
        let v0 = p.version();
        let _ = p.get(id);
        let _ = p.as_slice();
        assert_eq!(p.version(), v0);
        let mut seen = vec![v0];
        p.get_mut(id)[0] = 1.0;
        seen.push(p.version());
        p.as_mut_slice()[1] = 2.0;
        seen.push(p.version());
        p.fill_zero();
        seen.push(p.version());
        let other = Params::<f32>::new();
        seen.push(other.version());
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted, seen, "versions must all differ: {seen:?}");
        let copy = p.clone();
        assert_eq!(copy, p);
        assert_eq!(copy.version(), p.version(), "a clone holds the same values, so the same version");
    }
}
