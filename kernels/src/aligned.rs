//! Workspace buffers that start on a cache line.
//!
//! Threads write neighbouring blocks of one buffer (the units of a step cut by blocks of 16 or
//! 32 floats, 64 or 128 bytes). A large `Vec` starts 16 bytes past a page, so every block
//! boundary would split a cache line between two cores, and that line would bounce between
//! them on every step. Starting each buffer on a line keeps the blocks on lines of their own.

use std::ops::{Deref, DerefMut};

const LINE_FLOATS: usize = 16;

/// `len` zeroed floats starting on a 64-byte boundary.
#[derive(Debug)]
pub(crate) struct Buf {
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl Buf {
    pub(crate) fn zeros(len: usize) -> Self {
        if len == 0 {
            return Buf {
                data: Vec::new(),
                start: 0,
                len: 0,
            };
        }
        let data = vec![0.0f32; len + LINE_FLOATS - 1];
        // At most 15 floats to the next line (f32s are 4-byte aligned); 0 if it cannot say.
        let start = match data.as_ptr().align_offset(64) {
            s if s < LINE_FLOATS => s,
            _ => 0,
        };
        Buf { data, start, len }
    }
}

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
}
