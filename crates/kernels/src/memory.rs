//! Allocation of the large buffers: zeroed, and backed by 2 MiB pages where the kernel allows.
//!
//! A training step streams through buffers of tens to hundreds of megabytes (the `[B·T, V]`
//! logits and their gradient are 80 MB each at the seed size). Backed by 4 KiB pages, every 4 KiB
//! of such a pass costs a TLB miss; the GEMM that writes the logits spent a tenth of its time in
//! its store epilogue. Asking Linux for transparent huge pages on these buffers (`madvise`
//! `MADV_HUGEPAGE`, which PyTorch's CPU allocator does too) made seed inference 5 % faster on the
//! project's machine, whose kernel grants huge pages only on request (`enabled = madvise`).
//! The advice changes how memory is backed, never what it holds, so results are unaffected.
//!
//! The activation buffers are also [`AlignedVec`]s, which start on a 64-byte boundary: the
//! allocator hands out large blocks 16 bytes past a page boundary, so every 64-byte vector store
//! of a GEMM into them straddled two cache lines. Measured on the project's machine, faer's
//! product into the seed's logits (`[2016, 129]×[129, 9984]`, one thread) ran at 139 GFLOP/s
//! into such a buffer and 144 into an aligned one (huge pages in both), the project's own
//! kernel (`matrix::packed`) at 146 and 158.

use std::ops::{Deref, DerefMut};

use crate::Float;
use crate::tuning::HUGE_PAGE_MIN_BYTES;

/// Bytes an [`AlignedVec`] starts on: one cache line, one AVX-512 vector.
pub const ALIGN_BYTES: usize = 64;

/// A fixed-length, zero-initialised buffer whose first element sits on an [`ALIGN_BYTES`]
/// boundary (see the module docs for why), with huge-page advice like [`zeroed`].
///
/// It derefs to a slice, so it reads like a `Vec` that never grows. Safe code only: it keeps a
/// `Vec` one alignment longer than asked and starts its slice at the first aligned element (a
/// `Vec` never moves its buffer while it is not resized).
#[derive(Debug)]
pub struct AlignedVec<T> {
    raw: Vec<T>,
    start: usize,
    len: usize,
}

/// An empty buffer; allocates nothing (what `std::mem::take` leaves behind).
impl<T> Default for AlignedVec<T> {
    fn default() -> Self {
        Self { raw: Vec::new(), start: 0, len: 0 }
    }
}

impl<T: Float> AlignedVec<T> {
    /// `len` zeros starting on an [`ALIGN_BYTES`] boundary. Allocates (at most
    /// [`ALIGN_BYTES`] more than `len` elements); an empty buffer allocates nothing.
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            return Self { raw: Vec::new(), start: 0, len: 0 };
        }
        let size = std::mem::size_of::<T>();
        let raw = vec![T::from_f64(0.0); len + ALIGN_BYTES / size];
        let start = aligned_start(&raw);
        advise_huge_pages(&raw[start..start + len]);
        Self { raw, start, len }
    }

    /// Like [`AlignedVec::zeroed`], but an allocation the system refuses is an error instead of
    /// an abort (see [`try_zeroed`]).
    pub fn try_zeroed(len: usize) -> Result<Self, AllocRefused> {
        if len > 0 {
            can_allocate::<T>(len.saturating_add(ALIGN_BYTES / std::mem::size_of::<T>()))?;
        }
        Ok(Self::zeroed(len))
    }

    /// An aligned copy of `values`.
    pub fn from_slice(values: &[T]) -> Self {
        let mut buf = Self::zeroed(values.len());
        buf.copy_from_slice(values);
        buf
    }
}

/// Elements from the start of `raw` to its first element on an [`ALIGN_BYTES`] boundary (the
/// allocation is aligned to `T`, so the gap is whole elements).
fn aligned_start<T>(raw: &[T]) -> usize {
    let addr = raw.as_ptr() as usize;
    (addr.next_multiple_of(ALIGN_BYTES) - addr) / std::mem::size_of::<T>().max(1)
}

impl<T> Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl<T> DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

impl<'a, T> IntoIterator for &'a AlignedVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut AlignedVec<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T: PartialEq> PartialEq for AlignedVec<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: PartialEq> PartialEq<Vec<T>> for AlignedVec<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self[..] == other[..]
    }
}

impl<T: PartialEq> PartialEq<[T]> for AlignedVec<T> {
    fn eq(&self, other: &[T]) -> bool {
        self[..] == *other
    }
}

impl<T: Clone> Clone for AlignedVec<T> {
    /// A new aligned buffer with the same contents: `raw` is copied to a new address, where the
    /// aligned element may sit elsewhere, so the contents are rotated there (both positions leave
    /// room for `len` elements, so nothing wraps around).
    fn clone(&self) -> Self {
        let mut raw = self.raw.clone();
        let start = aligned_start(&raw);
        if start < self.start {
            raw.rotate_left(self.start - start);
        } else {
            raw.rotate_right(start - self.start);
        }
        Self { raw, start, len: self.len }
    }
}

/// A 2 MiB huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Like [`zeroed`], but an allocation the system refuses is an error instead of an abort: the
/// size is probed first (see [`can_allocate`]). A size past the address space, or one the kernel
/// will not grant, becomes an [`AllocRefused`] the caller can name.
pub fn try_zeroed<T: Float>(len: usize) -> Result<Vec<T>, AllocRefused> {
    can_allocate::<T>(len)?;
    Ok(zeroed(len))
}

/// A buffer the system will not provide: its size overflows the address space, or the kernel
/// refuses to map that much memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRefused;

impl std::fmt::Display for AllocRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system refused the allocation")
    }
}

impl std::error::Error for AllocRefused {}

/// Whether `len` elements of `T` can be allocated now (see [`try_zeroed`]).
///
/// On Linux the probe maps that many bytes of anonymous memory and unmaps them at once, which is
/// the kernel's own answer and touches no page. Probing through the allocator instead (a
/// `try_reserve` that is freed again) moved glibc's dynamic mmap threshold up to the probed
/// size, so the model's later buffers came from the heap, where `calloc` clears them by hand:
/// untouched buffers (an inference run's gradients and optimizer state) then cost resident
/// memory, 30–50 MiB more at the seed size.
pub fn can_allocate<T>(len: usize) -> Result<(), AllocRefused> {
    let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or(AllocRefused)?;
    if bytes > isize::MAX as usize {
        return Err(AllocRefused);
    }
    if bytes == 0 { Ok(()) } else { probe_mapping(bytes) }
}

#[cfg(target_os = "linux")]
fn probe_mapping(bytes: usize) -> Result<(), AllocRefused> {
    #[allow(unsafe_code)]
    // SAFETY: a fresh private anonymous mapping chosen by the kernel (address null), never
    // dereferenced, and unmapped with the length it was mapped with; no Rust value refers to it.
    // `MAP_NORESERVE` is not passed, so the kernel applies the same overcommit check as for the
    // allocation that follows.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if addr == libc::MAP_FAILED {
            return Err(AllocRefused);
        }
        libc::munmap(addr, bytes);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn probe_mapping(bytes: usize) -> Result<(), AllocRefused> {
    Vec::<u8>::new().try_reserve_exact(bytes).map_err(|_| AllocRefused)
}

/// `len` zeros, with the whole 2 MiB pages of the allocation advised as huge pages (see the
/// module docs). The advice is given before any element is written, which is when the kernel
/// decides how to back a page. Aborts if the system refuses the allocation, like `vec!`: use
/// [`try_zeroed`] where the size comes from the user.
pub fn zeroed<T: Float>(len: usize) -> Vec<T> {
    let buf = vec![T::from_f64(0.0); len];
    advise_huge_pages(&buf);
    buf
}

/// Advises the kernel to back the whole 2 MiB pages inside `buf` with huge pages. A no-op for
/// small buffers, off Linux, and wherever the kernel declines (it is advice: failure is ignored).
pub fn advise_huge_pages<T>(buf: &[T]) {
    let bytes = std::mem::size_of_val(buf);
    if bytes < HUGE_PAGE_MIN_BYTES {
        return;
    }
    let start = buf.as_ptr() as usize;
    let (first, last) = (start.next_multiple_of(HUGE_PAGE), (start + bytes) / HUGE_PAGE * HUGE_PAGE);
    if last > first {
        advise(first, last - first);
    }
}

#[cfg(target_os = "linux")]
fn advise(addr: usize, len: usize) {
    #[allow(unsafe_code)]
    // SAFETY: `addr..addr + len` is page-aligned and lies inside one live allocation that the
    // caller borrows. `MADV_HUGEPAGE` only sets how the kernel backs those pages; it never
    // changes their contents or validity, so no Rust invariant depends on it. The return value
    // is ignored on purpose: a kernel without transparent huge pages refuses, which is fine.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_at_every_size() {
        for len in [0, 1, 1000, (HUGE_PAGE_MIN_BYTES / 4) + 3, 3 * HUGE_PAGE] {
            let buf: Vec<f32> = zeroed(len);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|x| x.to_bits() == 0), "len {len}");
        }
    }

    #[test]
    fn aligned_buffers_start_on_the_boundary_and_hold_zeros() {
        for len in [0, 1, 15, 1000, (HUGE_PAGE_MIN_BYTES / 4) + 3] {
            let buf: AlignedVec<f32> = AlignedVec::zeroed(len);
            assert_eq!(buf.len(), len);
            assert!(len == 0 || (buf.as_ptr() as usize).is_multiple_of(ALIGN_BYTES), "len {len}");
            assert!(buf.iter().all(|x| x.to_bits() == 0), "len {len}");
            let wide: AlignedVec<f64> = AlignedVec::zeroed(len);
            assert!(len == 0 || (wide.as_ptr() as usize).is_multiple_of(ALIGN_BYTES), "f64 len {len}");
        }
    }

    #[test]
    fn aligned_clones_are_aligned_copies() {
        let mut buf: AlignedVec<f32> = AlignedVec::zeroed(333);
        for (i, x) in buf.iter_mut().enumerate() {
            *x = i as f32;
        }
        let copy = buf.clone();
        assert_eq!(&copy[..], &buf[..]);
        assert_eq!(copy.as_ptr() as usize % ALIGN_BYTES, 0);
        assert_ne!(copy.as_ptr(), buf.as_ptr());
    }

    #[test]
    fn sizes_past_the_address_space_or_the_machine_are_refused() {
        assert_eq!(can_allocate::<f32>(usize::MAX), Err(AllocRefused));
        assert_eq!(can_allocate::<f64>(isize::MAX as usize / 4), Err(AllocRefused));
        // 2^46 bytes (64 TiB): more than any machine this runs on has, which the kernel refuses
        // to map unless it is set to grant every request (`vm.overcommit_memory = 1`).
        let grants_all =
            std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1");
        if cfg!(target_os = "linux") && !grants_all {
            assert_eq!(try_zeroed::<f32>(1 << 44).map(|v| v.len()), Err(AllocRefused));
            assert!(AlignedVec::<f32>::try_zeroed(1 << 44).is_err());
        }
        assert_eq!(can_allocate::<f32>(0), Ok(()));
        assert_eq!(try_zeroed::<f32>(1 << 20).map(|v| v.len()), Ok(1 << 20));
    }

    #[test]
    fn advice_keeps_the_contents() {
        let mut buf: Vec<f64> = zeroed(HUGE_PAGE);
        for (i, x) in buf.iter_mut().enumerate() {
            *x = i as f64;
        }
        advise_huge_pages(&buf);
        assert!(buf.iter().enumerate().all(|(i, x)| *x == i as f64));
    }
}
