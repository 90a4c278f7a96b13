//! Allocation of the large buffers: zeroed, and backed by 2 MiB pages where the kernel allows.
//!
//! A training step streams through buffers of tens to hundreds of megabytes (the `[B·T, V]`
//! logits and their gradient are 80 MB each at the seed size). Backed by 4 KiB pages, every 4 KiB
//! of such a pass costs a TLB miss; the GEMM that writes the logits spent a tenth of its time in
//! its store epilogue. Asking Linux for transparent huge pages on these buffers (`madvise`
//! `MADV_HUGEPAGE`, which PyTorch's CPU allocator does too) made seed inference 5 % faster on the
//! project's machine, whose kernel grants huge pages only on request (`enabled = madvise`).
//! The advice changes how memory is backed, never what it holds, so results are unaffected.

use crate::Float;

/// Buffers smaller than this are left alone: they gain nothing from 2 MiB pages.
const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// A 2 MiB huge page.
const HUGE_PAGE: usize = 2 << 20;

/// `len` zeros, with the whole 2 MiB pages of the allocation advised as huge pages (see the
/// module docs). The advice is given before any element is written, which is when the kernel
/// decides how to back a page.
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
    fn advice_keeps_the_contents() {
        let mut buf: Vec<f64> = zeroed(HUGE_PAGE);
        for (i, x) in buf.iter_mut().enumerate() {
            *x = i as f64;
        }
        advise_huge_pages(&buf);
        assert!(buf.iter().enumerate().all(|(i, x)| *x == i as f64));
    }
}
