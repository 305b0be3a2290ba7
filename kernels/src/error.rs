//! The one error type of the crate: every bad input is reported, never a panic.

use std::fmt;

/// What was wrong with a call, and what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The descriptor itself is invalid (a zero size, no layers...).
    InvalidDesc(String),
    /// A buffer has the wrong number of elements.
    Shape {
        /// The buffer's name (`input`, `h0`, `weight_hh`...).
        what: &'static str,
        /// The elements the call's shapes need.
        expected: usize,
        /// The elements it has.
        got: usize,
    },
    /// A sequence length is 0 or above the padded length.
    Length {
        /// The batch entry.
        index: usize,
        /// Its length.
        length: usize,
        /// The padded length, T.
        max: usize,
    },
    /// The call does not fit the state it was given (a workspace of another shape or mode...).
    Mismatch(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidDesc(msg) => write!(f, "invalid RNN descriptor: {msg}"),
            Error::Shape {
                what,
                expected,
                got,
            } => write!(f, "{what} has {got} elements, expected {expected}"),
            Error::Length { index, length, max } => write!(
                f,
                "lengths[{index}] = {length}, expected a length in 1..={max}"
            ),
            Error::Mismatch(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that a buffer has `expected` elements.
pub(crate) fn check_len<T>(what: &'static str, buf: &[T], expected: usize) -> Result<()> {
    if buf.len() == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected,
            got: buf.len(),
        })
    }
}

/// The product of `dims`, or an error naming `what` if that many elements of the widest type
/// (f64) would not fit in a Rust allocation (`isize::MAX` bytes): so that the buffers sized
/// from it, with a line's padding, neither overflow nor panic in `Vec`.
pub(crate) fn size(what: &str, dims: &[usize]) -> Result<usize> {
    const MAX: usize = (isize::MAX as usize) / 8 - 1024;
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX)
        .ok_or_else(|| {
            Error::Mismatch(format!(
                "{what} of {dims:?} elements overflows the largest buffer, expected at most \
                 {MAX} elements"
            ))
        })
}

/// Whether `len` floats hold `rows` rows of `cols` at stride `ld`: `(rows - 1) * ld + cols`
/// without overflow. The bounds check the GEMMs' unsafe code relies on.
pub(crate) fn holds(len: usize, rows: usize, ld: usize, cols: usize) -> bool {
    rows == 0
        || (rows - 1)
            .checked_mul(ld)
            .and_then(|v| v.checked_add(cols))
            .is_some_and(|need| need <= len)
}

/// `len` zeros from the allocator (untouched pages, as `vec!`'s), or an error naming `what`
/// where `vec!` would abort: no room.
pub(crate) fn zeros<T: crate::Float>(what: &str, len: usize) -> Result<Vec<T>> {
    crate::aligned::zeroed(len).ok_or_else(|| no_room::<T>(what, len))
}

/// The error of a buffer of `len` Ts named `what` that the allocator had no room for.
pub(crate) fn no_room<T>(what: &str, len: usize) -> Error {
    Error::Mismatch(format!(
        "{what} of {len} elements ({} MiB): out of memory, expected sizes that fit in memory",
        (len.saturating_mul(std::mem::size_of::<T>())) >> 20
    ))
}
