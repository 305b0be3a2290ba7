//! Weights and biases in PyTorch's layout, one set per (layer, direction).

use crate::desc::RnnDesc;
use crate::error::{check_len, zeros, Error, Result};
use crate::float::Float;

/// The parameters of one layer in one direction, exactly as PyTorch's state_dict holds them:
/// `w_ih` is `(G*H, I_l)` row-major, `w_hh` is `(G*H, H)`, the biases `(G*H)`, gate blocks in
/// PyTorch's order (LSTM i, f, g, o; GRU r, z, n).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams<T> {
    /// `weight_ih_l{k}`: `(G*H, I_l)`.
    pub w_ih: Vec<T>,
    /// `weight_hh_l{k}`: `(G*H, H)`.
    pub w_hh: Vec<T>,
    /// `bias_ih_l{k}`: always `G*H` long; zero (and ignored) when the descriptor has no bias.
    pub b_ih: Vec<T>,
    /// `bias_hh_l{k}`: as `b_ih`.
    pub b_hh: Vec<T>,
}

/// All parameters of a stack, indexed by `layer * D + direction` (direction 1 is `_reverse`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    /// What they are the parameters of.
    pub desc: RnnDesc,
    /// `L * D` sets, layer after layer, the forward direction first.
    pub layers: Vec<LayerParams<T>>,
}

impl<T: Float> Params<T> {
    /// All zeros, with every buffer at its size.
    ///
    /// # Panics
    /// If a size is too large or memory runs out (as `vec!` would); [`Params::try_zeros`]
    /// returns an error instead.
    pub fn zeros(desc: &RnnDesc) -> Self {
        Self::try_zeros(desc).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Params::zeros`], or an error naming the size that is too large (or has no room).
    pub fn try_zeros(desc: &RnnDesc) -> crate::Result<Self> {
        let gh = crate::error::size("gate rows", &[desc.gates(), desc.hidden_size])?;
        let w_hh = crate::error::size("w_hh", &[gh, desc.hidden_size])?;
        let layers = (0..desc.num_layers)
            .flat_map(|l| (0..desc.directions()).map(move |_| l))
            .map(|l| {
                let w_ih = crate::error::size("w_ih", &[gh, desc.layer_input_size(l)])?;
                Ok(LayerParams {
                    w_ih: zeros("w_ih", w_ih)?,
                    w_hh: zeros("w_hh", w_hh)?,
                    b_ih: zeros("b_ih", gh)?,
                    b_hh: zeros("b_hh", gh)?,
                })
            })
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Params {
            desc: *desc,
            layers,
        })
    }

    /// PyTorch's default initialisation, U(-1/sqrt(H), 1/sqrt(H)), from a seeded generator
    /// (not PyTorch's stream). Biases stay zero when the descriptor has none.
    ///
    /// # Panics
    /// As [`Params::zeros`]; [`Params::try_random`] returns an error instead.
    pub fn random(desc: &RnnDesc, seed: u64) -> Self {
        Self::try_random(desc, seed).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Params::random`], or an error naming the size that is too large.
    pub fn try_random(desc: &RnnDesc, seed: u64) -> crate::Result<Self> {
        let mut p = Self::try_zeros(desc)?;
        let bound = 1.0 / (desc.hidden_size as f64).sqrt();
        let mut rng = SplitMix64(seed);
        for lp in &mut p.layers {
            for w in [&mut lp.w_ih, &mut lp.w_hh] {
                rng.fill_uniform(w, bound);
            }
            if desc.bias {
                rng.fill_uniform(&mut lp.b_ih, bound);
                rng.fill_uniform(&mut lp.b_hh, bound);
            }
        }
        Ok(p)
    }

    /// The parameters of `layer` in direction `dir` (0 forward, 1 reverse).
    pub fn get(&self, layer: usize, dir: usize) -> Result<&LayerParams<T>> {
        let at = self.index(layer, dir)?;
        Ok(&self.layers[at])
    }

    /// [`Params::get`], to change them.
    pub fn get_mut(&mut self, layer: usize, dir: usize) -> Result<&mut LayerParams<T>> {
        let at = self.index(layer, dir)?;
        Ok(&mut self.layers[at])
    }

    /// Where (layer, dir) is in `layers`, or an error naming the ranges expected.
    fn index(&self, layer: usize, dir: usize) -> Result<usize> {
        let (l, d) = (self.desc.num_layers, self.desc.directions());
        match layer < l && dir < d && layer * d + dir < self.layers.len() {
            true => Ok(layer * d + dir),
            false => Err(Error::Mismatch(format!(
                "parameters of layer {layer}, direction {dir}, expected a layer in 0..{l} and a \
                 direction in 0..{d} (of {} sets)",
                self.layers.len()
            ))),
        }
    }

    /// Checks every buffer against the descriptor.
    pub fn validate(&self) -> Result<()> {
        self.desc.validate()?;
        if self.layers.len() != self.desc.stacks() {
            return Err(Error::Shape {
                what: "params.layers",
                expected: self.desc.stacks(),
                got: self.layers.len(),
            });
        }
        let gh = self.desc.gates() * self.desc.hidden_size;
        for (k, lp) in self.layers.iter().enumerate() {
            let l = k / self.desc.directions();
            check_len("weight_ih", &lp.w_ih, gh * self.desc.layer_input_size(l))?;
            check_len("weight_hh", &lp.w_hh, gh * self.desc.hidden_size)?;
            check_len("bias_ih", &lp.b_ih, gh)?;
            check_len("bias_hh", &lp.b_hh, gh)?;
        }
        Ok(())
    }

    /// Every parameter value in a fixed order (layer, direction, w_ih, w_hh, b_ih, b_hh).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.layers.iter().flat_map(|lp| {
            lp.w_ih
                .iter()
                .chain(&lp.w_hh)
                .chain(&lp.b_ih)
                .chain(&lp.b_hh)
        })
    }

    /// Mutable access in the same order as [`Params::iter`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.layers.iter_mut().flat_map(|lp| {
            lp.w_ih
                .iter_mut()
                .chain(lp.w_hh.iter_mut())
                .chain(lp.b_ih.iter_mut())
                .chain(lp.b_hh.iter_mut())
        })
    }

    /// Converts every value to another float type (f64 -> f32 for the optimized path...).
    pub fn cast<U: Float>(&self) -> Params<U> {
        let conv = |v: &Vec<T>| v.iter().map(|x| U::from_f64(x.to_f64())).collect();
        Params {
            desc: self.desc,
            layers: self
                .layers
                .iter()
                .map(|lp| LayerParams {
                    w_ih: conv(&lp.w_ih),
                    w_hh: conv(&lp.w_hh),
                    b_ih: conv(&lp.b_ih),
                    b_hh: conv(&lp.b_hh),
                })
                .collect(),
        }
    }
}

/// A tiny deterministic generator for weights and test data (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-bound, bound).
    pub fn uniform(&mut self, bound: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * unit - 1.0) * bound
    }

    /// Every value of `buf` uniform in [-bound, bound).
    pub fn fill_uniform<T: Float>(&mut self, buf: &mut [T], bound: f64) {
        for v in buf {
            *v = T::from_f64(self.uniform(bound));
        }
    }
}
