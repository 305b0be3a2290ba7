//! Shared helpers of the kernels' integration tests: random cases and comparisons.
#![allow(dead_code)]

use recur_kernels::*;

/// One random problem: a descriptor, its parameters (f64, cast to f32 for the kernels) and data.
#[derive(Debug, Clone)]
pub struct Case {
    pub desc: RnnDesc,
    pub seq_len: usize,
    pub batch: usize,
    pub params: Params<f64>,
    pub x: Vec<f64>,
    pub lengths: Option<Vec<usize>>,
    pub h0: Option<Vec<f64>>,
    pub c0: Option<Vec<f64>>,
    pub grad_output: Vec<f64>,
    pub grad_h_n: Option<Vec<f64>>,
    pub grad_c_n: Option<Vec<f64>>,
    /// What drew the data and the weights: a failure names it, to be run again.
    pub seed: u64,
}

pub fn random_vec(rng: &mut SplitMix64, n: usize, bound: f64) -> Vec<f64> {
    (0..n).map(|_| rng.uniform(bound)).collect()
}

/// Rounds through f32 so the f32 kernels and the f64 reference see the same values.
pub fn round_f32(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        desc: RnnDesc,
        seq_len: usize,
        batch: usize,
        seed: u64,
        varlen: bool,
        with_h0: bool,
        with_grad_state: bool,
    ) -> Case {
        let mut rng = SplitMix64(seed);
        let p = Params::<f64>::random(&desc, seed ^ 0x5eed);
        let params = p.cast::<f32>().cast::<f64>();
        let state = desc.stacks() * batch * desc.hidden_size;
        let lstm = desc.cell.has_cell_state();
        let lengths = varlen.then(|| {
            (0..batch)
                .map(|_| 1 + (rng.next_u64() as usize) % seq_len)
                .collect()
        });
        let mut v = |n: usize| round_f32(&random_vec(&mut rng, n, 1.0));
        let x = v(seq_len * batch * desc.input_size);
        let h0 = with_h0.then(|| v(state));
        let c0 = (with_h0 && lstm).then(|| v(state));
        let grad_output = v(seq_len * batch * desc.output_size());
        let grad_h_n = with_grad_state.then(|| v(state));
        let grad_c_n = (with_grad_state && lstm).then(|| v(state));
        Case {
            desc,
            seq_len,
            batch,
            params,
            x,
            lengths,
            h0,
            c0,
            grad_output,
            grad_h_n,
            grad_c_n,
            seed,
        }
    }

    pub fn reference(&self) -> (Outputs<f64>, Gradients<f64>) {
        let mut input = SeqBatch::new(self.seq_len, self.batch, &self.x[..]);
        input.lengths = self.lengths.as_deref();
        input.h0 = self.h0.as_deref();
        input.c0 = self.c0.as_deref();
        let mut g = OutputGrads::new(&self.grad_output[..]);
        g.h_n = self.grad_h_n.as_deref();
        g.c_n = self.grad_c_n.as_deref();
        reference::backward(&self.params, &input, &g).expect("reference backward")
    }

    /// The smallest |pre-activation| of a relu network's forward in f64 (infinite for other
    /// cells): one within f32 rounding of 0 may take the other branch in the kernels than in the
    /// reference and change every gradient it gates by a whole term (seen: 7.45e-9, a unit of
    /// RnnRelu T 31, B 7, H 64 on, and 6e-2 off, in grad_input's row), a tie rather than an
    /// error, which the property test draws again.
    pub fn relu_margin(&self) -> f64 {
        let d = self.desc;
        if d.cell != CellKind::RnnRelu {
            return f64::INFINITY;
        }
        let (t_len, bsz, h, dirs) = (self.seq_len, self.batch, d.hidden_size, d.directions());
        let dot = |w: &[f64], v: &[f64]| -> f64 { w.iter().zip(v).map(|(a, b)| a * b).sum() };
        let mut margin = f64::INFINITY;
        // One layer's input, (T, B, width), time-major; the first is x.
        let mut input = self.x.clone();
        let mut width = d.input_size;
        for l in 0..d.num_layers {
            let mut out = vec![0.0; t_len * bsz * dirs * h];
            for dir in 0..dirs {
                let k = l * dirs + dir;
                let p = &self.params.layers[k];
                for b in 0..bsz {
                    let len = self.lengths.as_ref().map_or(t_len, |v| v[b]);
                    let mut state: Vec<f64> = match &self.h0 {
                        Some(h0) => h0[(k * bsz + b) * h..][..h].to_vec(),
                        None => vec![0.0; h],
                    };
                    for s in 0..len {
                        let t = if dir == 0 { s } else { len - 1 - s };
                        let x = &input[(t * bsz + b) * width..][..width];
                        let next: Vec<f64> = (0..h)
                            .map(|j| {
                                let mut pre = dot(&p.w_ih[j * width..][..width], x)
                                    + dot(&p.w_hh[j * h..][..h], &state);
                                if d.bias {
                                    pre += p.b_ih[j] + p.b_hh[j];
                                }
                                margin = margin.min(pre.abs());
                                pre.max(0.0)
                            })
                            .collect();
                        out[(t * bsz + b) * dirs * h + dir * h..][..h].copy_from_slice(&next);
                        state = next;
                    }
                }
            }
            input = out;
            width = dirs * h;
        }
        margin
    }

    /// The optimized f32 path with the best kernels: inference, training forward, backward.
    pub fn optimized(&self) -> (Outputs<f32>, Outputs<f32>, Gradients<f32>) {
        self.optimized_with(Isa::available()[0])
    }

    /// The optimized f32 path with the kernels of `isa`.
    pub fn optimized_with(&self, isa: Isa) -> (Outputs<f32>, Outputs<f32>, Gradients<f32>) {
        let data = self.to_f32();
        let input = data.input(self);
        let weights = PackedWeights::with_isa(&self.params.cast::<f32>(), isa).unwrap();
        let (t, b) = (self.seq_len, self.batch);

        let mut ws = Workspace::new(&self.desc, t, b, Mode::Inference).unwrap();
        let mut infer = Outputs::zeros(&self.desc, t, b);
        forward_inference(&weights, &mut ws, &input, &mut infer).unwrap();

        let mut ws = Workspace::new(&self.desc, t, b, Mode::Training).unwrap();
        let mut train = Outputs::zeros(&self.desc, t, b);
        forward_training(&weights, &mut ws, &input, &mut train).unwrap();
        let mut grads = Gradients::zeros(&self.desc, t, b);
        backward(&weights, &mut ws, &input, &data.output_grads(), &mut grads).unwrap();
        (infer, train, grads)
    }

    /// The inference forward with the kernels of `isa`, weights packed for `packing`, in a
    /// workspace of `mode`.
    pub fn inference_in(&self, isa: Isa, packing: Packing, mode: Mode) -> Outputs<f32> {
        let data = self.to_f32();
        let params = self.params.cast::<f32>();
        let weights = PackedWeights::with_options(&params, isa, packing).unwrap();
        let (t, b) = (self.seq_len, self.batch);
        let mut ws = Workspace::new(&self.desc, t, b, mode).unwrap();
        let mut out = Outputs::zeros(&self.desc, t, b);
        forward_inference(&weights, &mut ws, &data.input(self), &mut out).unwrap();
        out
    }

    /// Training with [`Mode::TrainingRecompute`] and the kernels of `isa`: forward, backward.
    pub fn recompute_with(&self, isa: Isa) -> (Outputs<f32>, Gradients<f32>) {
        let data = self.to_f32();
        let input = data.input(self);
        let weights = PackedWeights::with_isa(&self.params.cast::<f32>(), isa).unwrap();
        let (t, b) = (self.seq_len, self.batch);
        let mut ws = Workspace::new(&self.desc, t, b, Mode::TrainingRecompute).unwrap();
        let mut out = Outputs::zeros(&self.desc, t, b);
        forward_training(&weights, &mut ws, &input, &mut out).unwrap();
        let mut grads = Gradients::zeros(&self.desc, t, b);
        backward(&weights, &mut ws, &input, &data.output_grads(), &mut grads).unwrap();
        (out, grads)
    }

    /// The case's data rounded to f32, for the optimized path.
    pub fn to_f32(&self) -> F32Data {
        let opt = |v: &Option<Vec<f64>>| v.as_deref().map(to_f32);
        F32Data {
            x: to_f32(&self.x),
            h0: opt(&self.h0),
            c0: opt(&self.c0),
            go: to_f32(&self.grad_output),
            gh: opt(&self.grad_h_n),
            gc: opt(&self.grad_c_n),
        }
    }
}

/// A [`Case`]'s inputs and output gradients in f32.
pub struct F32Data {
    pub x: Vec<f32>,
    pub h0: Option<Vec<f32>>,
    pub c0: Option<Vec<f32>>,
    pub go: Vec<f32>,
    pub gh: Option<Vec<f32>>,
    pub gc: Option<Vec<f32>>,
}

impl F32Data {
    /// The batch of `case` (its lengths too) over this data.
    pub fn input<'a>(&'a self, case: &'a Case) -> SeqBatch<'a, f32> {
        let mut input = SeqBatch::new(case.seq_len, case.batch, &self.x[..]);
        input.lengths = case.lengths.as_deref();
        input.h0 = self.h0.as_deref();
        input.c0 = self.c0.as_deref();
        input
    }

    pub fn output_grads(&self) -> OutputGrads<'_, f32> {
        let mut og = OutputGrads::new(&self.go[..]);
        og.h_n = self.gh.as_deref();
        og.c_n = self.gc.as_deref();
        og
    }
}

/// The tests' error measure: the largest |a - b| over max(|b|, 1), element by element, so that
/// a wrong block of small values fails however large the tensor's other values are (relative to
/// the tensor's largest value, 1e-3 in a tensor whose largest is 50 passed a 1e-4 tolerance
/// with any value in [-4e-3, 6e-3]); infinite if anything is not finite.
pub fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    if !a.iter().all(|v| v.is_finite()) || !b.iter().all(|v| v.is_finite()) {
        return f64::INFINITY;
    }
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| {
        m.max((*x as f64 - y).abs() / y.abs().max(1.0))
    })
}

/// Every output and gradient of the optimized path, named, beside the reference's; and the
/// recomputing training mode: the same bits as the saving one but for the weight gradients
/// (summed chunk by chunk), which are held to the reference.
pub fn compare_all(case: &Case, isa: Isa, tol: f64) -> std::result::Result<(), String> {
    compare_with(case, &case.reference(), isa, tol)
}

/// [`compare_all`] against a reference computed once (for every ISA of a case); also the
/// inference forward run in both training modes' workspaces (the ring of T + 1 state slots,
/// the gate rows of a whole sequence) and with weights packed for inference only: the same
/// bits as in an inference workspace with training weights.
pub fn compare_with(
    case: &Case,
    (r_out, r_grad): &(Outputs<f64>, Gradients<f64>),
    isa: Isa,
    tol: f64,
) -> std::result::Result<(), String> {
    let (infer, train, grads) = case.optimized_with(isa);
    for mode in [Mode::Training, Mode::TrainingRecompute] {
        if case.inference_in(isa, Packing::Training, mode) != infer {
            return Err(format!(
                "inference in a {mode:?} workspace differs from an inference workspace's"
            ));
        }
    }
    if case.inference_in(isa, Packing::Inference, Mode::Inference) != infer {
        return Err("inference with Packing::Inference differs from Packing::Training's".into());
    }
    let (re_out, re_grads) = case.recompute_with(isa);
    if re_out != train {
        return Err("recompute: outputs differ from Mode::Training's".into());
    }
    for (name, a, b) in [
        ("input", &re_grads.input, &grads.input),
        ("h0", &re_grads.h0, &grads.h0),
        ("c0", &re_grads.c0, &grads.c0),
    ] {
        if a != b {
            return Err(format!(
                "recompute: grad {name} differs from Mode::Training's"
            ));
        }
    }
    let pairs: Vec<(String, &[f32], &[f64], f64)> = vec![
        (
            "output (inference)".into(),
            &infer.output,
            &r_out.output,
            tol,
        ),
        ("h_n (inference)".into(), &infer.h_n, &r_out.h_n, tol),
        ("c_n (inference)".into(), &infer.c_n, &r_out.c_n, tol),
        (
            "output (training)".into(),
            &train.output,
            &r_out.output,
            tol,
        ),
        ("h_n (training)".into(), &train.h_n, &r_out.h_n, tol),
        ("c_n (training)".into(), &train.c_n, &r_out.c_n, tol),
        ("grad input".into(), &grads.input, &r_grad.input, tol),
        ("grad h0".into(), &grads.h0, &r_grad.h0, tol),
        ("grad c0".into(), &grads.c0, &r_grad.c0, tol),
    ];
    for (name, a, b, tol) in pairs {
        if a.len() != b.len() {
            return Err(format!("{name}: {} values, reference {}", a.len(), b.len()));
        }
        let e = rel_err(a, b);
        if e > tol {
            return Err(format!("{name}: relative error {e:.3e} > {tol:.2e}"));
        }
    }
    // A weight gradient is a sum over all T*B rows, one f32 chain per element: its rounding
    // error grows as the square root of the rows (Higham, 4.2), so its bound does beyond 1024
    // rows, and it is relative to the sum's terms, not to the sum: an element whose terms
    // cancel is held to the scale of the tensor's largest (`rel_err_of_largest`). Seen: 9.3e-5
    // at 4,900 rows (RnnTanh T 70, B 70, the worst of 1,500 cases, element by element); a ReLU
    // RNN that grows (T 70, B 7, I 16, H 3, 3 layers, two directions: outputs up to 972,
    // gradients up to 4,860) had an element of 87.31 off by 0.026, 3.0e-4 of it but 5.4e-6 of
    // the largest, and failed 2 draws in about 100 runs of 256 element by element. A dropped
    // or doubled row is about 1 / rows of the largest or more: 2e-4 at the 4,900 rows.
    let rows = (case.seq_len * case.batch) as f64;
    let tol_w = tol * (rows / 1024.0).sqrt().max(1.0);
    for (name, _, a, b) in weight_grad_pairs(&grads, &re_grads, r_grad) {
        if a.len() != b.len() {
            return Err(format!("{name}: {} values, reference {}", a.len(), b.len()));
        }
        let e = rel_err_of_largest(a, b);
        if e > tol_w {
            return Err(format!(
                "{name}: error relative to the largest {e:.3e} > {tol_w:.2e}"
            ));
        }
    }
    Ok(())
}

/// The largest difference relative to the largest of `b` (or 1): a norm-wise error, for sums
/// whose terms may be far larger than the sum. Infinite where either holds a non-finite value.
pub fn rel_err_of_largest(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    if !a.iter().all(|v| v.is_finite()) || !b.iter().all(|v| v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = b.iter().fold(1.0f64, |m, y| m.max(y.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs() / scale))
}

/// The weight gradients of both training modes (saving, then recomputing) beside the
/// reference's, each named as a failure reports it and marked when it is a bias.
pub fn weight_grad_pairs<'a>(
    grads: &'a Gradients<f32>,
    re_grads: &'a Gradients<f32>,
    want: &'a Gradients<f64>,
) -> Vec<(String, bool, &'a [f32], &'a [f64])> {
    let mut pairs = Vec::new();
    for (mode, got) in [("", grads), ("recompute ", re_grads)] {
        for (k, (a, b)) in got
            .params
            .layers
            .iter()
            .zip(&want.params.layers)
            .enumerate()
        {
            pairs.push((
                format!("{mode}grad w_ih[{k}]"),
                false,
                &a.w_ih[..],
                &b.w_ih[..],
            ));
            pairs.push((
                format!("{mode}grad w_hh[{k}]"),
                false,
                &a.w_hh[..],
                &b.w_hh[..],
            ));
            pairs.push((
                format!("{mode}grad b_ih[{k}]"),
                true,
                &a.b_ih[..],
                &b.b_ih[..],
            ));
            pairs.push((
                format!("{mode}grad b_hh[{k}]"),
                true,
                &a.b_hh[..],
                &b.b_hh[..],
            ));
        }
    }
    pairs
}
