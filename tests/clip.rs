//! Gradient clipping against PyTorch's clip_grad_norm_ / clip_grad_value_ (fixture made by
//! tests/fixtures/generate.py): the clipped gradients and the returned total norm.

use recur::kernels::{clip_grad_norm, clip_grad_value, Norm};
use recur::tensors::{Data, TensorFile};
use std::path::Path;

fn f32s(file: &TensorFile, key: &str) -> Vec<f32> {
    match &file
        .tensors
        .get(key)
        .unwrap_or_else(|| panic!("no {key}"))
        .data
    {
        Data::F32(v) => v.clone(),
        Data::I64(_) => panic!("{key} is not f32"),
    }
}

#[test]
fn clipping_matches_pytorch() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip/clip.safetensors");
    let file = TensorFile::read(&path).unwrap();
    let count = (0..)
        .take_while(|i| file.tensors.contains_key(&format!("g{i}")))
        .count();
    assert!(count >= 2 && file.metadata.len() >= 7);
    // Every norm case clips but the one that says it does not (else it tests nothing).
    for (case, spec) in &file.metadata {
        if spec.starts_with("norm") && case != "norm2_no_clip" {
            let before = f32s(&file, "g0");
            assert_ne!(f32s(&file, &format!("expect.{case}.g0")), before, "{case}");
        }
    }
    for (case, spec) in &file.metadata {
        let parts: Vec<&str> = spec.split(',').collect();
        let threshold: f64 = parts[1].parse().unwrap();
        let mut grads: Vec<Vec<f32>> = (0..count).map(|i| f32s(&file, &format!("g{i}"))).collect();
        let mut views: Vec<&mut [f32]> = grads.iter_mut().map(|g| &mut g[..]).collect();
        if parts[0] == "norm" {
            let norm = match parts[2] {
                "inf" => Norm::Inf,
                p => Norm::P(p.parse().unwrap()),
            };
            let total = clip_grad_norm(&mut views, threshold, norm).unwrap();
            let want = f32s(&file, &format!("expect.{case}.total"))[0] as f64;
            assert!(
                (total - want).abs() <= 1e-6 * want,
                "{case}: total {total} vs {want}"
            );
        } else {
            clip_grad_value(&mut views, threshold as f32).unwrap();
        }
        for (i, got) in grads.iter().enumerate() {
            let want = f32s(&file, &format!("expect.{case}.g{i}"));
            assert_eq!(got.len(), want.len(), "{case} g{i}");
            let scale = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-6 * scale, "{case} g{i}: {a} vs {b}");
            }
        }
    }
}
