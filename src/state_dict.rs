//! PyTorch state_dict keys and shapes <-> the kernels' descriptor and parameters.
//!
//! `weight_ih_l{k}[_reverse]` `(G*H, I_k)`, `weight_hh_l{k}[_reverse]` `(G*H, H)`,
//! `bias_ih_l{k}[_reverse]` and `bias_hh_l{k}[_reverse]` `(G*H)`, as `nn.RNN`, `nn.LSTM` and
//! `nn.GRU` name them. Layers, directions, sizes and bias are read from the keys and shapes.

use crate::bail;
use crate::error::Result;
use crate::tensors::TensorFile;
use recur_kernels::{CellKind, Params, RnnDesc};
use std::collections::BTreeSet;

/// The cell family a user names with `--cell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellFamily {
    /// `nn.RNN` (tanh or relu).
    Rnn,
    /// `nn.LSTM`.
    Lstm,
    /// `nn.GRU`.
    Gru,
}

impl CellFamily {
    /// Gate blocks of its weights: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            CellFamily::Rnn => 1,
            CellFamily::Lstm => 4,
            CellFamily::Gru => 3,
        }
    }

    /// `rnn`, `lstm` or `gru`, as `--cell` takes it.
    pub fn name(self) -> &'static str {
        match self {
            CellFamily::Rnn => "rnn",
            CellFamily::Lstm => "lstm",
            CellFamily::Gru => "gru",
        }
    }
}

/// One parameter's key: `weight_ih_l0_reverse` -> ("weight_ih", 0, 1).
fn parse_key(key: &str) -> Option<(&'static str, usize, usize)> {
    const KINDS: [&str; 4] = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];
    let kind = KINDS
        .into_iter()
        .find(|k| key.starts_with(&format!("{k}_l")))?;
    let rest = &key[kind.len() + 2..];
    let (num, dir) = match rest.strip_suffix("_reverse") {
        Some(n) => (n, 1),
        None => (rest, 0),
    };
    // PyTorch's keys: no leading zero (weight_ih_l00 would alias weight_ih_l0).
    let leading_zero = num.len() > 1 && num.starts_with('0');
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) || num.len() > 4 || leading_zero {
        return None;
    }
    Some((kind, num.parse().ok()?, dir))
}

/// The state_dict key of a parameter.
pub fn key(kind: &str, layer: usize, dir: usize) -> String {
    format!("{kind}_l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

/// Builds the descriptor and parameters from a state_dict file.
///
/// `cell` (from `--cell`) must agree with the gate count of the weights when given;
/// `relu` (from `--nonlinearity`, an RNN's only) picks `nonlinearity="relu"` when `Some(true)`,
/// tanh when `Some(false)` or `None`.
pub fn load(
    file: &mut TensorFile,
    cell: Option<CellFamily>,
    relu: Option<bool>,
) -> Result<Params<f32>> {
    let (nonlinearity, relu) = (relu.is_some(), relu == Some(true));
    let path = file.path.clone();
    let mut present = BTreeSet::new();
    for name in file.tensors.keys() {
        match parse_key(name) {
            Some(k) => {
                present.insert(k);
            }
            None => bail!(
                "{path}: unexpected key '{name}', expected PyTorch RNN parameter names such as \
                 weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 (with _reverse)"
            ),
        }
    }
    let layers = match present.iter().map(|k| k.1).max() {
        Some(l) => l + 1,
        None => bail!("{path}: no weights, expected weight_ih_l0 and weight_hh_l0"),
    };
    let bidirectional = present.iter().any(|k| k.2 == 1);
    let dirs = if bidirectional { 2 } else { 1 };
    let bias = present.iter().any(|k| k.0.starts_with("bias"));
    for l in 0..layers {
        for d in 0..dirs {
            for kind in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
                if (bias || kind.starts_with("weight")) && !present.contains(&(kind, l, d)) {
                    bail!(
                        "{path}: missing '{}', expected a full stack of {layers} layer(s) and \
                         {dirs} direction(s){}",
                        key(kind, l, d),
                        if bias { " with biases" } else { "" }
                    );
                }
            }
        }
    }

    // Sizes from layer 0: weight_hh is (G*H, H), weight_ih is (G*H, I).
    let whh = file.shape("weight_hh_l0").unwrap_or_default().to_vec();
    let wih = file.shape("weight_ih_l0").unwrap_or_default().to_vec();
    if whh.len() != 2 || whh[1] == 0 || !whh[0].is_multiple_of(whh[1]) {
        bail!("{path}: weight_hh_l0 has shape {whh:?}, expected (G*H, H) with G = 1, 3 or 4");
    }
    let hidden = whh[1];
    let gates = whh[0] / hidden;
    let family = match gates {
        1 => CellFamily::Rnn,
        3 => CellFamily::Gru,
        4 => CellFamily::Lstm,
        g => {
            bail!("{path}: weight_hh_l0 has {g}*H rows, expected 4*H (lstm), 3*H (gru) or H (rnn)")
        }
    };
    if let Some(c) = cell {
        if c != family {
            bail!(
                "{path}: --cell {} needs {}*H rows in weight_hh_l0, but it has {}*H ({})",
                c.name(),
                c.gates(),
                gates,
                family.name()
            );
        }
    }
    if nonlinearity && family != CellFamily::Rnn {
        bail!(
            "--nonlinearity applies to rnn only, but the weights are a {}",
            family.name()
        );
    }
    if wih.len() != 2 || wih[0] != gates * hidden || wih[1] == 0 {
        bail!(
            "{path}: weight_ih_l0 has shape {wih:?}, expected ({}, input_size)",
            gates * hidden
        );
    }
    let kind = match family {
        CellFamily::Rnn if relu => CellKind::RnnRelu,
        CellFamily::Rnn => CellKind::RnnTanh,
        CellFamily::Lstm => CellKind::Lstm,
        CellFamily::Gru => CellKind::Gru,
    };
    let desc = RnnDesc::new(kind, wih[1], hidden)
        .layers(layers)
        .bidirectional(bidirectional)
        .bias(bias);
    let mut params = Params::try_zeros(&desc)?;
    let gh = gates * hidden;
    for l in 0..layers {
        for d in 0..dirs {
            let i_l = desc.layer_input_size(l);
            let lp = params.get_mut(l, d)?;
            lp.w_ih = file.require_f32(&key("weight_ih", l, d), &[gh, i_l])?;
            lp.w_hh = file.require_f32(&key("weight_hh", l, d), &[gh, hidden])?;
            if bias {
                lp.b_ih = file.require_f32(&key("bias_ih", l, d), &[gh])?;
                lp.b_hh = file.require_f32(&key("bias_hh", l, d), &[gh])?;
            }
        }
    }
    file.expect_empty("the stack's weight_ih, weight_hh, bias_ih and bias_hh")?;
    Ok(params)
}

/// Every parameter as (state_dict key, shape, values), in PyTorch's order; biases only when
/// the descriptor has them.
pub fn named(params: &Params<f32>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let desc = params.desc;
    let gh = desc.gates() * desc.hidden_size;
    let mut out = Vec::new();
    for (k, lp) in params.layers.iter().enumerate() {
        let (l, d) = (k / desc.directions(), k % desc.directions());
        out.push((
            key("weight_ih", l, d),
            vec![gh, desc.layer_input_size(l)],
            lp.w_ih.clone(),
        ));
        out.push((
            key("weight_hh", l, d),
            vec![gh, desc.hidden_size],
            lp.w_hh.clone(),
        ));
        if desc.bias {
            out.push((key("bias_ih", l, d), vec![gh], lp.b_ih.clone()));
            out.push((key("bias_hh", l, d), vec![gh], lp.b_hh.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(parse_key("weight_ih_l0"), Some(("weight_ih", 0, 0)));
        assert_eq!(parse_key("bias_hh_l12_reverse"), Some(("bias_hh", 12, 1)));
        assert_eq!(parse_key("weight_ih_l"), None);
        assert_eq!(parse_key("weight_ih_lx"), None);
        assert_eq!(parse_key("weight_ih_l00"), None);
        assert_eq!(parse_key("weight_ih_l01_reverse"), None);
        assert_eq!(parse_key("weight_ih_l10"), Some(("weight_ih", 10, 0)));
        assert_eq!(parse_key("weight_hr_l0"), None);
        assert_eq!(key("bias_ih", 2, 1), "bias_ih_l2_reverse");
    }
}
