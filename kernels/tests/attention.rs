//! Causal self-attention against the scalar reference on every ISA path, bit-identical at any
//! thread count, causal, decoded step by step with a KV cache to the same bits, and refusing
//! bad input with an error.

use recur_kernels::reference::causal_attention;
use recur_kernels::{
    AttentionParams, AttentionWorkspace, CausalAttention, Error, Isa, KvCache, SplitMix64,
};

fn input(t: usize, b: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut x = vec![0.0f32; t * b * d];
    SplitMix64(seed).fill_uniform(&mut x, 1.0);
    x
}

fn run(att: &CausalAttention, d: usize, t: usize, b: usize, x: &[f32]) -> Vec<f32> {
    let mut ws = AttentionWorkspace::new(d, t, b).unwrap();
    let mut out = vec![f32::NAN; t * b * d];
    att.forward(&mut ws, x, &mut out).unwrap();
    out
}

/// Widths and heads whose head size is 1, under, at and past a panel of 16 or 32, and not a
/// multiple of the vector width; steps 1, primes and past a few query tiles.
const SHAPES: [(usize, usize, usize, usize); 9] = [
    (1, 1, 1, 1),
    (8, 8, 3, 2),
    (8, 2, 5, 3),
    (12, 3, 7, 2),
    (40, 2, 33, 2),
    (96, 2, 45, 1),
    (64, 1, 70, 2),
    (100, 4, 13, 5),
    (66, 1, 29, 3),
];

#[test]
fn matches_reference_every_isa() {
    for (n, &(d, heads, t, b)) in SHAPES.iter().enumerate() {
        let p = AttentionParams::<f32>::random(d, heads, 3 + n as u64).unwrap();
        let x = input(t, b, d, 100 + n as u64);
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let want = causal_attention(&p.cast::<f64>(), t, b, &x64).unwrap();
        for isa in Isa::available() {
            let got = run(&CausalAttention::with_isa(&p, isa).unwrap(), d, t, b, &x);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let err = (g as f64 - w).abs() / w.abs().max(1.0);
                assert!(
                    err <= 2e-5,
                    "{isa:?} D {d} heads {heads} T {t} B {b}: element {i} is {g}, expected {w}"
                );
            }
        }
    }
}

#[test]
fn bit_identical_at_1_2_3_threads() {
    let (d, heads, t, b) = (40, 4, 37, 3);
    let p = AttentionParams::<f32>::random(d, heads, 9).unwrap();
    let x = input(t, b, d, 10);
    for isa in Isa::available() {
        let att = CausalAttention::with_isa(&p, isa).unwrap();
        let at = |n: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            let out = pool.install(|| run(&att, d, t, b, &x));
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let one = at(1);
        for n in [2, 3] {
            assert!(at(n) == one, "{isa:?}: results differ at {n} threads");
        }
    }
}

/// Changing the input at steps after t, even to infinities and NaNs, leaves every output up to
/// t as it was, bit for bit, on every path (the cuts fall at the first, a middle and the last
/// row of a tile of query rows).
#[test]
fn later_steps_never_reach_earlier_outputs() {
    let (d, heads, t, b) = (24, 2, 30, 2);
    let p = AttentionParams::<f32>::random(d, heads, 5).unwrap();
    let x = input(t, b, d, 6);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    for isa in Isa::available() {
        let att = CausalAttention::with_isa(&p, isa).unwrap();
        let base = run(&att, d, t, b, &x);
        for (cut, poison) in [
            (0, None),
            (7, Some(f32::NAN)),
            (12, Some(f32::INFINITY)),
            (28, None),
        ] {
            let mut y = x.clone();
            for v in &mut y[(cut + 1) * b * d..] {
                *v = poison.unwrap_or(-*v * 3.0 + 0.5);
            }
            let out = run(&att, d, t, b, &y);
            let keep = (cut + 1) * b * d;
            assert_eq!(
                bits(&out[..keep]),
                bits(&base[..keep]),
                "{isa:?}: outputs to step {cut} changed"
            );
            assert_ne!(
                bits(&out[keep..]),
                bits(&base[keep..]),
                "{isa:?}: outputs after step {cut} did not change"
            );
        }
    }
}

#[test]
fn bad_input_is_an_error_naming_it() {
    let msg = |e: Error| e.to_string();
    assert!(msg(AttentionParams::<f32>::random(10, 3, 1).unwrap_err()).contains("10 with 3 heads"));
    assert!(AttentionParams::<f32>::random(0, 1, 1).is_err());
    assert!(AttentionParams::<f32>::random(8, 0, 1).is_err());
    let mut p = AttentionParams::<f32>::random(8, 2, 1).unwrap();
    p.out_proj_bias.pop();
    assert!(msg(CausalAttention::new(&p).unwrap_err()).contains("out_proj_bias"));
    p.out_proj_bias.push(0.0);
    p.in_proj_weight.push(0.0);
    assert!(msg(CausalAttention::new(&p).unwrap_err()).contains("in_proj_weight has 193"));
    p.in_proj_weight.pop();
    let att = CausalAttention::new(&p).unwrap();
    assert!(AttentionWorkspace::new(8, 0, 2).is_err());
    let mut ws = AttentionWorkspace::new(8, 3, 2).unwrap();
    let (x, mut out) = (vec![0.5f32; 48], vec![0.0f32; 48]);
    let e = att.forward(&mut ws, &x[..47], &mut out).unwrap_err();
    assert!(msg(e).contains("input has 47 elements, expected 48"));
    let e = att.forward(&mut ws, &x, &mut out[..40]).unwrap_err();
    assert!(msg(e).contains("output has 40 elements, expected 48"));
    let mut other = AttentionWorkspace::new(16, 3, 2).unwrap();
    let e = att.forward(&mut other, &x, &mut out).unwrap_err();
    assert!(msg(e).contains("width 16, expected the weights' width 8"));
    att.forward(&mut ws, &x, &mut out).unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}

/// Decoding step by step with a KV cache gives the forward's outputs over the whole sequence,
/// bit for bit, on every path; after a truncate, decoding again gives the same steps again.
#[test]
fn decoding_step_by_step_matches_the_forward() {
    for (n, &(d, heads, t, b)) in [(40, 2, 41, 3), (64, 1, 35, 2), (12, 3, 17, 1)]
        .iter()
        .enumerate()
    {
        let p = AttentionParams::<f32>::random(d, heads, 20 + n as u64).unwrap();
        let x = input(t, b, d, 30 + n as u64);
        for isa in Isa::available() {
            let att = CausalAttention::with_isa(&p, isa).unwrap();
            let whole = run(&att, d, t, b, &x);
            let mut cache = KvCache::new(&att, b, t).unwrap();
            let mut step = vec![0.0f32; b * d];
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            for i in 0..t {
                let rows = i * b * d..(i + 1) * b * d;
                att.decode(&mut cache, &x[rows.clone()], &mut step).unwrap();
                assert_eq!(
                    bits(&step),
                    bits(&whole[rows]),
                    "{isa:?} D {d} heads {heads}: step {i}"
                );
            }
            assert_eq!(cache.len(), t);
            let e = att.decode(&mut cache, &x[..b * d], &mut step).unwrap_err();
            assert!(e.to_string().contains(&format!("full at {t} steps")), "{e}");
            assert_eq!(cache.len(), t, "a refused step left the cache as it was");
            // A step of NaNs, cut off again: the stale keys and values it leaves past the
            // cache's length never reach a later step.
            let (half, nan) = (t / 2, vec![f32::NAN; b * d]);
            cache.truncate(half);
            att.decode(&mut cache, &nan, &mut step).unwrap();
            assert!(
                step.iter().all(|v| v.is_nan()),
                "{isa:?}: a NaN step's own output"
            );
            cache.truncate(half);
            let rows = half * b * d..(half + 1) * b * d;
            att.decode(&mut cache, &x[rows.clone()], &mut step).unwrap();
            assert_eq!(bits(&step), bits(&whole[rows]), "{isa:?}: after truncate");
        }
    }
}

#[test]
fn a_cache_of_other_attention_or_bad_sizes_is_an_error() {
    let p = AttentionParams::<f32>::random(8, 2, 1).unwrap();
    let att = CausalAttention::new(&p).unwrap();
    assert!(KvCache::new(&att, 0, 4).is_err());
    assert!(KvCache::new(&att, 2, 0).is_err());
    let other = CausalAttention::new(&AttentionParams::<f32>::random(8, 4, 1).unwrap()).unwrap();
    let mut cache = KvCache::new(&other, 2, 4).unwrap();
    let (x, mut out) = (vec![0.5f32; 16], vec![0.0f32; 16]);
    let e = att.decode(&mut cache, &x, &mut out).unwrap_err();
    assert!(e.to_string().contains("4 heads"), "{e}");
    let mut cache = KvCache::new(&att, 2, 4).unwrap();
    let e = att.decode(&mut cache, &x[..15], &mut out).unwrap_err();
    assert!(
        e.to_string().contains("input has 15 elements, expected 16"),
        "{e}"
    );
    assert!(cache.is_empty(), "a refused step left the cache as it was");
}
