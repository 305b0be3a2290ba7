//! Weights prepared once for the kernels, reused by every call until the parameters change.

use crate::desc::RnnDesc;
use crate::error::Result;
use crate::params::{LayerParams, Params};

/// The parameters in the layout the kernels stream.
///
/// Today this is PyTorch's own layout (the GEMMs read it through strided views) with the biases
/// zeroed when the descriptor has none; packed panel-major layouts replace it without changing
/// this API. Build once, call [`PackedWeights::update`] when the parameters change.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    desc: RnnDesc,
    layers: Vec<LayerParams<f32>>,
}

impl PackedWeights {
    /// Checks the parameters against their descriptor and prepares them.
    pub fn new(params: &Params<f32>) -> Result<Self> {
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
        *self = Self::new(params)?;
        Ok(())
    }

    pub fn desc(&self) -> &RnnDesc {
        &self.desc
    }

    pub(crate) fn layer(&self, layer: usize, dir: usize) -> &LayerParams<f32> {
        &self.layers[layer * self.desc.directions() + dir]
    }
}
