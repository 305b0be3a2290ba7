//! Which instruction set the hand-written kernels use, chosen once at run time.
//!
//! [`Isa::detect`] picks the best the CPU has; `RECUR_ISA=avx512|avx2|portable` in the
//! environment forces a path (an unavailable one is refused with an error), and
//! [`crate::PackedWeights::with_isa`] forces one per set of weights, which is how the tests run
//! every path the machine has against the reference.

use crate::error::{Error, Result};

/// A family of kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512 F: 16 lanes, 32 registers.
    Avx512,
    /// AVX2 with FMA: 8 lanes, 16 registers.
    Avx2,
    /// `wide::f32x8` (SSE2 on a baseline x86_64 build, NEON on aarch64), any CPU.
    Portable,
}

impl Isa {
    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
            Isa::Portable => true,
        }
    }

    /// Every path this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    /// The best available path, or the one `RECUR_ISA` names.
    pub fn detect() -> Result<Isa> {
        match std::env::var("RECUR_ISA") {
            Ok(name) => {
                let isa =
                    Isa::parse(&name).map_err(|e| Error::Mismatch(format!("RECUR_ISA={e}")))?;
                isa.checked()
            }
            Err(_) => Ok(Isa::available()[0]),
        }
    }

    /// The name [`Isa::parse`] takes: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// `avx512`, `avx2` or `portable`; an error names what it was given and those three.
    pub fn parse(name: &str) -> Result<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" => Ok(Isa::Avx512),
            "avx2" => Ok(Isa::Avx2),
            "portable" => Ok(Isa::Portable),
            other => Err(Error::Mismatch(format!(
                "{other}, expected avx512, avx2 or portable"
            ))),
        }
    }

    /// The path itself if this CPU has it, else an error naming what it has.
    pub fn checked(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(Error::Mismatch(format!(
                "this CPU cannot run the {self:?} kernels; it has {:?}",
                Isa::available()
            )))
        }
    }
}
