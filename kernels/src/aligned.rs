//! Workspace buffers that start on a cache line, and large ones on huge pages.
//!
//! Threads write neighbouring blocks of one buffer (the units of a step cut by blocks of 16 or
//! 32 floats, 64 or 128 bytes). A large `Vec` starts 16 bytes past a page, so every block
//! boundary would split a cache line between two cores, and that line would bounce between
//! them on every step. Starting each buffer on a line keeps the blocks on lines of their own.
//!
//! The saved activations and their gradients are read across rows: a run of a few hundred
//! bytes from each of many rows (the weight gradients' packing of dG, the backward's cells),
//! each run on a page of its own, so with 4 KiB pages nearly every run missed the TLB (packing
//! dG was 11% of dW_ih's GEMM, stalled on its prefetches). On Linux a buffer of
//! [`HUGE_MIN_BYTES`] or more starts on a 2 MiB boundary and asks for transparent huge pages
//! (`madvise`, where the system leaves them to the program); elsewhere, or if refused, it is
//! an ordinary buffer.

use std::ops::{Deref, DerefMut};

/// A cache line.
const LINE_BYTES: usize = 64;
/// A transparent huge page.
const HUGE_BYTES: usize = 2 << 20;
/// Buffers from this size on are put on huge pages (the 2 MiB of address space skipped to
/// align one is never touched, so it costs no memory).
const HUGE_MIN_BYTES: usize = 4 << 20;

/// `len` zeroed floats starting on a 64-byte boundary.
#[derive(Debug)]
pub(crate) struct Buf {
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl Buf {
    /// # Panics
    /// Aborts, as `vec!` does, if the allocator has no room; [`Buf::try_zeros`] says so
    /// instead.
    pub(crate) fn zeros(len: usize) -> Self {
        Self::try_zeros(len).unwrap_or_else(|| match std::alloc::Layout::array::<f32>(len) {
            Ok(l) => std::alloc::handle_alloc_error(l),
            Err(_) => panic!("a buffer of {len} floats overflows the address space"),
        })
    }

    /// [`Buf::zeros`], or `None` if the allocator has no room for it (or the size overflows).
    pub(crate) fn try_zeros(len: usize) -> Option<Self> {
        if len == 0 {
            return Some(Buf {
                data: Vec::new(),
                start: 0,
                len: 0,
            });
        }
        let bytes = len.checked_mul(std::mem::size_of::<f32>())?;
        let align = match bytes >= HUGE_MIN_BYTES && cfg!(target_os = "linux") {
            true => HUGE_BYTES,
            false => LINE_BYTES,
        };
        let pad = align / std::mem::size_of::<f32>() - 1;
        // Zeroed by the allocator: a large block comes fresh from the system, untouched, so
        // the advice below applies before any page of it is faulted in.
        let data = zeroed::<f32>(len.checked_add(pad)?)?;
        // At most `pad` floats to the boundary (f32s are 4-byte aligned); 0 if it cannot say.
        let (start, aligned) = match data.as_ptr().align_offset(align) {
            s if s <= pad => (s, true),
            _ => (0, false),
        };
        if align == HUGE_BYTES && aligned {
            advise_huge(&data[start..start + len]);
        }
        Some(Buf { data, start, len })
    }
}

/// `len` zeros, as `vec![T::ZERO; len]` (the allocator's zeroed memory: a large block is fresh
/// pages, none touched yet), or `None` where that would abort: no room, or past the address
/// space.
pub(crate) fn zeroed<T: crate::Float>(len: usize) -> Option<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(len).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the layout's size is not zero (above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `len` Ts, which is what
    // a Vec<T> of capacity `len` frees it with; its bytes are zero, and T is f32 or f64
    // (`Float` is sealed), whose all-zero bytes are 0.0: all `len` elements are initialized.
    Some(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// Asks Linux to back the whole 2 MiB pages of `v` with transparent huge pages. Only a hint:
/// the values are unchanged whatever the answer, so the answer is not checked.
#[cfg(target_os = "linux")]
fn advise_huge(v: &[f32]) {
    let whole = std::mem::size_of_val(v) / HUGE_BYTES * HUGE_BYTES;
    // SAFETY: the range is inside `v`'s allocation, which stays mapped (this only advises;
    // MADV_HUGEPAGE neither unmaps nor changes contents, and the pages stay readable and
    // writable); `v` starts on a 2 MiB boundary, as madvise requires a page boundary.
    unsafe {
        libc::madvise(v.as_ptr() as *mut libc::c_void, whole, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: &[f32]) {}

/// A copy on a line of its own (a derived `Clone` would keep `start`, which is no longer the
/// line's offset at the copy's address).
impl Clone for Buf {
    fn clone(&self) -> Self {
        let mut b = Buf::zeros(self.len);
        b.copy_from_slice(self);
        b
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_has_its_length() {
        for len in [0, 1, 15, 16, 17, 1000, 1 << 20] {
            let mut b = Buf::zeros(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0.0));
            if len > 0 {
                assert_eq!(b.as_ptr() as usize % 64, 0, "len {len}");
                b[len - 1] = 1.0;
                assert_eq!(b.iter().sum::<f32>(), 1.0);
                let c = b.clone();
                assert_eq!(c.as_ptr() as usize % 64, 0, "clone, len {len}");
                assert_eq!(&c[..], &b[..]);
            }
        }
    }

    #[test]
    fn large_buffers_start_on_a_huge_page_on_linux() {
        let len = HUGE_MIN_BYTES / 4 + 5;
        let mut b = Buf::zeros(len);
        assert_eq!(b.len(), len);
        if cfg!(target_os = "linux") {
            assert_eq!(b.as_ptr() as usize % HUGE_BYTES, 0);
        }
        assert!(b.iter().all(|&v| v == 0.0));
        b[len - 1] = 2.0;
        assert_eq!(b.clone()[len - 1], 2.0);
    }
}
