//! Weights prepared once for the kernels, reused by every call until the parameters change.

use crate::desc::RnnDesc;
use crate::error::Result;
use crate::isa::Isa;
use crate::params::{LayerParams, Params};

/// The parameters in the layout the kernels stream.
///
/// Today this is PyTorch's own layout (the GEMMs read it through strided views) with the biases
/// zeroed when the descriptor has none; packed panel-major layouts replace it without changing
/// this API. Build once, call [`PackedWeights::update`] when the parameters change.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    desc: RnnDesc,
    isa: Isa,
    layers: Vec<LayerParams<f32>>,
}

impl PackedWeights {
    /// Checks the parameters against their descriptor and prepares them for the best kernels
    /// this CPU has (or those `RECUR_ISA` names).
    pub fn new(params: &Params<f32>) -> Result<Self> {
        Self::with_isa(params, Isa::detect()?)
    }

    /// Like [`PackedWeights::new`], with the kernels of `isa`; an error if the CPU lacks it.
    pub fn with_isa(params: &Params<f32>, isa: Isa) -> Result<Self> {
        let isa = isa.checked()?;
        params.validate()?;
        let mut layers = params.layers.clone();
        if !params.desc.bias {
            for lp in &mut layers {
                lp.b_ih.fill(0.0);
                lp.b_hh.fill(0.0);
            }
        }
        Ok(PackedWeights {
            desc: params.desc,
            isa,
            layers,
        })
    }

    /// Re-prepares from new parameter values of the same descriptor.
    pub fn update(&mut self, params: &Params<f32>) -> Result<()> {
        if params.desc != self.desc {
            return Err(crate::Error::Mismatch(format!(
                "update with parameters of {:?}, expected {:?}",
                params.desc, self.desc
            )));
        }
        *self = Self::with_isa(params, self.isa)?;
        Ok(())
    }

    pub fn desc(&self) -> &RnnDesc {
        &self.desc
    }

    /// The kernels these weights run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub(crate) fn layer(&self, layer: usize, dir: usize) -> &LayerParams<f32> {
        &self.layers[layer * self.desc.directions() + dir]
    }
}
