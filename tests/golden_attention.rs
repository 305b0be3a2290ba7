//! Golden fixtures of causal self-attention from PyTorch's `nn.MultiheadAttention`
//! (tests/fixtures/attention/generate.py): the kernels' output within 1e-5 of PyTorch's
//! (float64) on every ISA path, element by element relative to max(|expected|, 1).

use recur::kernels::{AttentionParams, AttentionWorkspace, CausalAttention, Isa};
use recur::tensors::TensorFile;

mod common;

#[test]
fn matches_pytorch_multihead_attention() {
    let (dir, paths) = common::safetensors_in("attention");
    assert_eq!(paths.len(), 3, "the three fixtures of {dir:?}");
    for path in paths {
        let mut f = TensorFile::read(&path).unwrap();
        let meta = |k: &str| -> usize { f.metadata[k].parse().unwrap() };
        let (d, heads, t, b) = (
            meta("d_model"),
            meta("heads"),
            meta("seq_len"),
            meta("batch"),
        );
        let params = AttentionParams {
            d_model: d,
            heads,
            in_proj_weight: f.require_f32("in_proj_weight", &[3 * d, d]).unwrap(),
            in_proj_bias: f.require_f32("in_proj_bias", &[3 * d]).unwrap(),
            out_proj_weight: f.require_f32("out_proj.weight", &[d, d]).unwrap(),
            out_proj_bias: f.require_f32("out_proj.bias", &[d]).unwrap(),
        };
        let x = f.require_f32("input", &[t, b, d]).unwrap();
        let want = f.require_f32("expect.output", &[t, b, d]).unwrap();
        f.expect_empty("attention fixture").unwrap();
        for isa in Isa::available() {
            let att = CausalAttention::with_isa(&params, isa).unwrap();
            let mut ws = AttentionWorkspace::new(d, t, b).unwrap();
            let mut out = vec![0.0f32; t * b * d];
            att.forward(&mut ws, &x, &mut out).unwrap();
            for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
                let err = (g - w).abs() / w.abs().max(1.0);
                assert!(
                    err <= 1e-5,
                    "{path:?} {isa:?}: element {i} is {g}, PyTorch's {w}"
                );
            }
        }
    }
}
