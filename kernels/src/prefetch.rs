//! A software prefetch hint, for reads the hardware prefetchers do not see coming.

/// Asks for every cache line of `v` to be brought towards L1; does nothing where no prefetch
/// instruction is available. Never faults and changes no value.
#[inline]
pub(crate) fn lines(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for chunk in v.chunks(16) {
        // SAFETY: a prefetch is a hint: it reads nothing architecturally and cannot fault; the
        // address is inside `v` anyway. SSE is part of the x86_64 baseline.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(chunk.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
