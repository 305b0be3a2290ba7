//! Weights prepared once for the kernels, reused by every call until the parameters change.

use crate::desc::RnnDesc;
use crate::error::Result;
use crate::isa::Isa;
use crate::packed::PackedB;
use crate::params::Params;

/// What a set of packed weights serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// The forward and the backward: [`crate::forward_training`], [`crate::backward`] and
    /// [`crate::tbptt`] as well as [`crate::forward_inference`].
    Training,
    /// [`crate::forward_inference`] only: half the packed floats (no copies of `W_hh` and
    /// `W_ih` laid out for the backward, so none of the work of packing them either).
    Inference,
}

/// The parameters in the layout the kernels stream.
///
/// Per layer and direction: `W_ihᵀ` (with `b_ih` fused) and `W_hhᵀ` packed in panels for the
/// forward micro-kernels of one ISA, `b_hh` for the cells, and for training `W_hh` and `W_ih`
/// packed for the backward's recurrence and input gradient. No copy of the parameters in
/// PyTorch's layout: the weight gradients need only activations. Build once, call
/// [`PackedWeights::update`] when the parameters change.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    desc: RnnDesc,
    isa: Isa,
    packing: Packing,
    packed: Vec<PackedLayer>,
    /// Names these values: a new one from every packing (and [`PackedWeights::update`]), so a
    /// workspace can tell whether the backward was given the forward's weights.
    stamp: u64,
}

/// The next [`PackedWeights::stamp`]: unique within the process.
fn next_stamp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// One (layer, direction) packed for the forward.
#[derive(Debug, Clone)]
pub(crate) struct PackedLayer {
    /// `W_ihᵀ`, with `b_ih`, its columns placed as `w_hh`'s: a thread projects the input onto
    /// its own units' gate columns.
    pub w_ih: PackedB,
    /// `W_hhᵀ`, no bias (the cell adds `b_hh`: GRU needs it inside the reset product), each
    /// gate's whole panels, then one tail of every gate's last units (`packed::GateLayout`).
    pub w_hh: PackedB,
    /// `b_hh` (zeros without bias), which the cells add: GRU needs it inside the reset product.
    pub b_hh: Vec<f32>,
    /// With [`Packing::Training`]: what the backward streams.
    back: Option<BackLayer>,
}

/// One (layer, direction) packed for the backward.
#[derive(Debug, Clone)]
pub(crate) struct BackLayer {
    /// `W_hh` itself, for the per-step `dh_prev += dG · W_hh`.
    pub w_hh: PackedB,
    /// `W_ih` itself, for `dx = dG · W_ih` over all steps.
    pub w_ih: PackedB,
}

impl PackedLayer {
    /// The backward's operands. Only the training entry points call this, after
    /// [`PackedWeights::check_trains`].
    pub(crate) fn back(&self) -> &BackLayer {
        self.back
            .as_ref()
            .expect("training entry points check Packing::Training first")
    }
}

impl PackedWeights {
    /// Checks the parameters against their descriptor and prepares them for the best kernels
    /// this CPU has (or those `RECUR_ISA` names), for training ([`Packing::Training`]).
    pub fn new(params: &Params<f32>) -> Result<Self> {
        Self::with_isa(params, Isa::detect()?)
    }

    /// Like [`PackedWeights::new`], for [`crate::forward_inference`] only
    /// ([`Packing::Inference`]).
    pub fn for_inference(params: &Params<f32>) -> Result<Self> {
        Self::with_options(params, Isa::detect()?, Packing::Inference)
    }

    /// Like [`PackedWeights::new`], with the kernels of `isa`; an error if the CPU lacks it.
    pub fn with_isa(params: &Params<f32>, isa: Isa) -> Result<Self> {
        Self::with_options(params, isa, Packing::Training)
    }

    /// With the kernels of `isa` (an error if the CPU lacks it), for what `packing` names.
    pub fn with_options(params: &Params<f32>, isa: Isa, packing: Packing) -> Result<Self> {
        let isa = isa.checked()?;
        params.validate()?;
        let desc = params.desc;
        let g = desc.gates() * desc.hidden_size;
        let packed = params
            .layers
            .iter()
            .enumerate()
            .map(|(k, lp)| {
                let i_l = desc.layer_input_size(k / desc.directions());
                let bias = desc.bias.then_some(&lp.b_ih[..]);
                PackedLayer {
                    w_ih: PackedB::from_gate_weight(
                        isa,
                        &lp.w_ih,
                        desc.gates(),
                        desc.hidden_size,
                        i_l,
                        bias,
                    ),
                    w_hh: PackedB::from_gate_weight(
                        isa,
                        &lp.w_hh,
                        desc.gates(),
                        desc.hidden_size,
                        desc.hidden_size,
                        None,
                    ),
                    b_hh: match desc.bias {
                        true => lp.b_hh.clone(),
                        false => vec![0.0; g],
                    },
                    back: (packing == Packing::Training).then(|| BackLayer {
                        w_hh: PackedB::from_rows(isa, &lp.w_hh, g, desc.hidden_size),
                        w_ih: PackedB::from_rows(isa, &lp.w_ih, g, i_l),
                    }),
                }
            })
            .collect();
        Ok(PackedWeights {
            desc,
            isa,
            packing,
            packed,
            stamp: next_stamp(),
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
        *self = Self::with_options(params, self.isa, self.packing)?;
        Ok(())
    }

    /// What these are the weights of.
    pub fn desc(&self) -> &RnnDesc {
        &self.desc
    }

    /// The kernels these weights run with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// What these weights were packed for.
    pub fn packing(&self) -> Packing {
        self.packing
    }

    /// Which values these are (a clone keeps its original's, an update takes a new one).
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// An error naming `what` unless these weights were packed for training.
    pub(crate) fn check_trains(&self, what: &str) -> Result<()> {
        match self.packing {
            Packing::Training => Ok(()),
            Packing::Inference => Err(crate::Error::Mismatch(format!(
                "{what} needs weights packed for training (PackedWeights::new or \
                 Packing::Training), but these were packed for inference only"
            ))),
        }
    }

    pub(crate) fn packed(&self, layer: usize, dir: usize) -> &PackedLayer {
        &self.packed[layer * self.desc.directions() + dir]
    }
}
