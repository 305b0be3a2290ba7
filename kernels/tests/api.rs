//! The kernels' public API: bad input is an error naming what was wrong, never a panic, and
//! a workspace is reusable across calls.

use recur_kernels::*;

fn setup(cell: CellKind) -> (RnnDesc, PackedWeights, Vec<f32>) {
    let desc = RnnDesc::new(cell, 3, 4).layers(2);
    let w = PackedWeights::new(&Params::random(&desc, 1)).unwrap();
    (desc, w, vec![0.25f32; 5 * 2 * 3])
}

#[test]
fn bad_shapes_and_lengths_are_errors() {
    let (desc, w, x) = setup(CellKind::Lstm);
    let mut ws = Workspace::new(&desc, 5, 2, Mode::Inference).unwrap();
    let mut out = Outputs::zeros(&desc, 5, 2);
    let short = &x[..7];
    let e = forward_inference(&w, &mut ws, &SeqBatch::new(5, 2, short), &mut out).unwrap_err();
    assert_eq!(e.to_string(), "input has 7 elements, expected 30");
    for (lengths, msg) in [
        (
            &[5usize, 0][..],
            "lengths[1] = 0, expected a length in 1..=5",
        ),
        (&[6, 1][..], "lengths[0] = 6, expected a length in 1..=5"),
        (&[1][..], "lengths has 1 elements, expected 2"),
    ] {
        let input = SeqBatch::new(5, 2, &x).with_lengths(lengths);
        let e = forward_inference(&w, &mut ws, &input, &mut out).unwrap_err();
        assert_eq!(e.to_string(), msg);
    }
    let h0 = vec![0.0f32; 3];
    let input = SeqBatch::new(5, 2, &x).with_h0(&h0);
    let e = forward_inference(&w, &mut ws, &input, &mut out).unwrap_err();
    assert_eq!(e.to_string(), "h0 has 3 elements, expected 16");
}

#[test]
fn workspace_must_fit_the_call() {
    let (desc, w, x) = setup(CellKind::Gru);
    let mut out = Outputs::zeros(&desc, 5, 2);
    let mut ws = Workspace::new(&desc, 4, 2, Mode::Training).unwrap();
    let e = forward_training(&w, &mut ws, &SeqBatch::new(5, 2, &x), &mut out).unwrap_err();
    assert!(
        e.to_string().contains("workspace was made for seq_len 4"),
        "{e}"
    );

    let mut ws = Workspace::new(&desc, 5, 2, Mode::Inference).unwrap();
    let e = forward_training(&w, &mut ws, &SeqBatch::new(5, 2, &x), &mut out).unwrap_err();
    assert!(e.to_string().contains("Mode::Training"), "{e}");

    let mut ws = Workspace::new(&desc, 5, 2, Mode::Training).unwrap();
    let go = vec![0.0f32; out.output.len()];
    let mut grads = Gradients::zeros(&desc, 5, 2);
    let input = SeqBatch::new(5, 2, &x);
    let e = backward(&w, &mut ws, &input, &OutputGrads::new(&go), &mut grads).unwrap_err();
    assert!(e.to_string().contains("forward_training run"), "{e}");

    let other = RnnDesc::new(CellKind::Gru, 3, 5).layers(2);
    let e = Workspace::new(&other, 5, 2, Mode::Training)
        .and_then(|mut ws| forward_training(&w, &mut ws, &SeqBatch::new(5, 2, &x), &mut out));
    assert!(e.unwrap_err().to_string().contains("weights are for"));

    assert!(Workspace::new(&desc, 0, 2, Mode::Training).is_err());
    let zero = RnnDesc::new(CellKind::Gru, 0, 5);
    assert!(PackedWeights::new(&Params::zeros(&zero)).is_err());
}

#[test]
fn one_backward_consumes_one_forward() {
    let modes = [Mode::Training, Mode::TrainingRecompute];
    for (cell, mode) in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh]
        .into_iter()
        .flat_map(|c| modes.map(|m| (c, m)))
    {
        let (desc, w, x) = setup(cell);
        let mut ws = Workspace::new(&desc, 5, 2, mode).unwrap();
        let mut out = Outputs::zeros(&desc, 5, 2);
        let input = SeqBatch::new(5, 2, &x);
        let go = vec![0.5f32; out.output.len()];
        let mut first = Gradients::zeros(&desc, 5, 2);
        forward_training(&w, &mut ws, &input, &mut out).unwrap();
        // Bad arguments are rejected before the saved forward is touched.
        let short = OutputGrads::new(&go[1..]);
        assert!(backward(&w, &mut ws, &input, &short, &mut first).is_err());
        // The input must be the forward's: its shape and lengths are checked.
        let other = SeqBatch::new(5, 2, &x).with_lengths(&[5, 3]);
        let e = backward(&w, &mut ws, &other, &OutputGrads::new(&go), &mut first).unwrap_err();
        assert!(
            e.to_string().contains("expected the forward's [5, 5]"),
            "{e}"
        );
        let e = backward(
            &w,
            &mut ws,
            &SeqBatch::new(5, 2, &x[1..]),
            &OutputGrads::new(&go),
            &mut first,
        )
        .unwrap_err();
        assert!(e.to_string().contains("input"), "{e}");
        // So must the weights: others of the same shape, or these updated since.
        let other = PackedWeights::new(&Params::random(&desc, 2)).unwrap();
        let mut updated = w.clone();
        updated.update(&Params::random(&desc, 3)).unwrap();
        for v in [&other, &updated] {
            let e = backward(v, &mut ws, &input, &OutputGrads::new(&go), &mut first).unwrap_err();
            assert!(
                e.to_string().contains("weights other than the forward's"),
                "{e}"
            );
        }
        // A clone is the same values.
        let same = w.clone();
        backward(&same, &mut ws, &input, &OutputGrads::new(&go), &mut first).unwrap();

        let mut again = Gradients::zeros(&desc, 5, 2);
        let e = backward(&w, &mut ws, &input, &OutputGrads::new(&go), &mut again).unwrap_err();
        assert!(
            e.to_string().contains("forward_training run"),
            "{cell:?}: {e}"
        );
        // An inference forward in a training workspace saves nothing either.
        forward_inference(&w, &mut ws, &input, &mut out).unwrap();
        let e = backward(&w, &mut ws, &input, &OutputGrads::new(&go), &mut again).unwrap_err();
        assert!(
            e.to_string().contains("forward_training run"),
            "{cell:?}: {e}"
        );

        forward_training(&w, &mut ws, &input, &mut out).unwrap();
        backward(&w, &mut ws, &input, &OutputGrads::new(&go), &mut again).unwrap();
        assert_eq!(again, first, "{cell:?} {mode:?}");
    }
}

#[test]
fn c0_for_a_gru_is_an_error() {
    let (desc, w, x) = setup(CellKind::Gru);
    let c0 = vec![0.0f32; 16];
    let mut ws = Workspace::new(&desc, 5, 2, Mode::Inference).unwrap();
    let mut out = Outputs::zeros(&desc, 5, 2);
    let input = SeqBatch::new(5, 2, &x).with_c0(&c0);
    let e = forward_inference(&w, &mut ws, &input, &mut out).unwrap_err();
    assert!(e.to_string().contains("c0 given for a gru cell"), "{e}");
}

#[test]
fn reused_workspace_gives_the_same_bits() {
    let desc = RnnDesc::new(CellKind::Lstm, 6, 5)
        .layers(2)
        .bidirectional(true);
    let w = PackedWeights::new(&Params::random(&desc, 3)).unwrap();
    let (t, b) = (7, 3);
    let mut rng = SplitMix64(9);
    let mut xa = vec![0.0f32; t * b * 6];
    let mut xb = xa.clone();
    rng.fill_uniform(&mut xa, 1.0);
    rng.fill_uniform(&mut xb, 1.0);
    let go = vec![0.5f32; t * b * 10];
    let lengths = [7, 2, 5];
    let run = |ws: &mut Workspace, x: &[f32]| {
        let mut out = Outputs::zeros(&desc, t, b);
        let mut g = Gradients::zeros(&desc, t, b);
        let input = SeqBatch::new(t, b, x).with_lengths(&lengths);
        forward_training(&w, ws, &input, &mut out).unwrap();
        backward(&w, ws, &input, &OutputGrads::new(&go), &mut g).unwrap();
        (out, g)
    };
    let mut fresh = Workspace::new(&desc, t, b, Mode::Training).unwrap();
    let want = run(&mut fresh, &xb);
    let mut reused = Workspace::new(&desc, t, b, Mode::Training).unwrap();
    run(&mut reused, &xa);
    assert_eq!(run(&mut reused, &xb), want);
}

#[test]
fn sizes_that_overflow_are_errors_not_out_of_bounds_access() {
    let w = WeightGemm::new(Isa::Portable, &[1.0; 4], 2, 2, None).unwrap();
    let mut c = [0.0f32; 2];
    assert!(w.run((1 << 63) + 1, &[1.0; 2], &mut c).is_err());

    let desc = RnnDesc::new(CellKind::RnnTanh, 4, 4);
    let huge = (1usize << 62) + 1;
    assert!(Workspace::new(&desc, huge, 1, Mode::Inference).is_err());
    let e = Outputs::<f32>::try_zeros(&desc, huge, 1).unwrap_err();
    assert!(e.to_string().contains("output of"), "{e}");
    let e = Gradients::<f32>::try_zeros(&desc, 1, huge).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    let wide = RnnDesc::new(CellKind::Lstm, huge, 4);
    assert!(Params::<f32>::try_zeros(&wide).is_err());
    assert!(std::panic::catch_unwind(|| Outputs::<f32>::zeros(&desc, huge, 1)).is_err());
    let x = [0.0f32; 4];
    let weights = PackedWeights::new(&Params::random(&desc, 1)).unwrap();
    let mut ws = Workspace::new(&desc, 1, 1, Mode::Inference).unwrap();
    let mut out = Outputs::zeros(&desc, 1, 1);
    let e = forward_inference(&weights, &mut ws, &SeqBatch::new(huge, 1, &x), &mut out);
    assert!(e.unwrap_err().to_string().contains("overflows"));

    let wide = RnnDesc::new(CellKind::Lstm, huge, 4);
    assert!(wide.validate().is_err());
    let mut p = Params::<f32>::random(&desc, 1);
    p.desc = wide;
    assert!(PackedWeights::new(&p).is_err());
}

#[test]
fn inference_packing_runs_the_forward_alike_and_refuses_training() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::RnnTanh] {
        let desc = RnnDesc::new(cell, 3, 20).layers(2).bidirectional(true);
        let params = Params::random(&desc, 4);
        let x = vec![0.5f32; 6 * 3 * 3];
        let input = SeqBatch::new(6, 3, &x);
        for isa in Isa::available() {
            let train = PackedWeights::with_isa(&params, isa).unwrap();
            let mut infer = PackedWeights::with_options(&params, isa, Packing::Inference).unwrap();
            assert_eq!(infer.packing(), Packing::Inference);
            infer.update(&params).unwrap();
            assert_eq!(
                infer.packing(),
                Packing::Inference,
                "update keeps the packing"
            );
            let run = |w: &PackedWeights| {
                let mut ws = Workspace::new(&desc, 6, 3, Mode::Inference).unwrap();
                let mut out = Outputs::zeros(&desc, 6, 3);
                forward_inference(w, &mut ws, &input, &mut out).unwrap();
                out
            };
            let (a, b) = (run(&train), run(&infer));
            assert_eq!(
                (a.output, a.h_n, a.c_n),
                (b.output, b.h_n, b.c_n),
                "{isa:?}"
            );

            // Training with inference-only weights: an error, nothing written.
            let mut ws = Workspace::new(&desc, 6, 3, Mode::Training).unwrap();
            let mut out = Outputs::zeros(&desc, 6, 3);
            let e = forward_training(&infer, &mut ws, &input, &mut out).unwrap_err();
            assert!(e.to_string().contains("packed for inference only"), "{e}");
            forward_training(&train, &mut ws, &input, &mut out).unwrap();
            let go = vec![1.0f32; out.output.len()];
            let mut grads = Gradients::zeros(&desc, 6, 3);
            grads.input.fill(7.0);
            let og = OutputGrads::new(&go);
            let e = backward(&infer, &mut ws, &input, &og, &mut grads).unwrap_err();
            assert!(
                e.to_string().contains("backward needs weights packed"),
                "{e}"
            );
            assert!(grads.input.iter().all(|&v| v == 7.0));
            // The forward's activations are still there for weights that can train.
            backward(&train, &mut ws, &input, &og, &mut grads).unwrap();

            let mut tw = TbpttWorkspace::new(&desc, 6, 3, 2).unwrap();
            let e = tbptt(&infer, &mut tw, &input, &og, &mut out, &mut grads).unwrap_err();
            assert!(e.to_string().contains("tbptt needs weights packed"), "{e}");
        }
    }
}

/// Sizes past the address space, or past any memory, are errors naming the size, never a
/// panic or an abort (the sizes' arithmetic is checked, the allocations fallible).
#[test]
fn sizes_too_large_are_errors() {
    let huge = RnnDesc::new(CellKind::Lstm, 1, 1 << 62);
    assert!(huge.validate().is_err(), "4 * 2^62 gate rows");
    assert!(PackedWeights::new(&Params {
        desc: huge,
        layers: Vec::new()
    })
    .is_err());
    let tiny = RnnDesc::new(CellKind::RnnTanh, 1, 1);
    for mode in [Mode::Inference, Mode::Training, Mode::TrainingRecompute] {
        for t in [usize::MAX, 1 << 62] {
            let e = Workspace::new(&tiny, t, 1, mode).unwrap_err();
            assert!(e.to_string().contains("overflows"), "{e}");
        }
        // Within the address space, past any machine's memory: the saved states of 2^43
        // steps, 2^46 floats (inference keeps two steps' states).
        let lstm = RnnDesc::new(CellKind::Lstm, 1, 8);
        match Workspace::new(&lstm, 1 << 43, 1, mode) {
            Ok(_) => assert_eq!(mode, Mode::Inference),
            Err(e) => assert!(e.to_string().contains("out of memory"), "{mode:?}: {e}"),
        }
    }
    assert!(TbpttWorkspace::new(&tiny, 1 << 62, 1, 1 << 62).is_err());
    assert!(TbpttWorkspace::new(&RnnDesc::new(CellKind::Lstm, 1, usize::MAX), 1, 2, 1).is_err());
    assert!(Outputs::<f32>::try_zeros(&RnnDesc::new(CellKind::RnnTanh, 1, 1 << 62), 1, 1).is_err());
    assert!(Params::<f32>::try_zeros(&RnnDesc::new(CellKind::RnnTanh, 1, 1 << 31)).is_err());
    assert!(Params::<f32>::try_random(&RnnDesc::new(CellKind::RnnTanh, 1, 1 << 40), 1).is_err());
    // 2^48 bytes of w_hh: past the 2^47 of a process's address space, so refused whatever
    // the system's overcommit policy.
    let e =
        Gradients::<f32>::try_zeros(&RnnDesc::new(CellKind::Lstm, 1, 1 << 22), 1, 1).unwrap_err();
    assert!(e.to_string().contains("out of memory"), "{e}");
    assert!(OutputGrads::<f32>::new(&[])
        .validate(&tiny, 1 << 63, 2)
        .is_err());
}

#[test]
fn indices_out_of_range_are_errors() {
    let desc = RnnDesc::new(CellKind::Gru, 3, 4).layers(2);
    let p = Params::<f32>::zeros(&desc);
    assert!(p.get(1, 0).is_ok());
    for (l, d) in [(0, 1), (2, 0), (5, 0)] {
        let e = p.get(l, d).unwrap_err();
        assert!(e.to_string().contains("expected a layer in 0..2"), "{e}");
    }
    let x = vec![0.0f32; 2 * 3 * 3];
    let input = SeqBatch::new(2, 3, &x);
    assert_eq!((input.length(2), input.length(3)), (Some(2), None));
    let input = input.with_lengths(&[1, 2]);
    assert_eq!((input.length(1), input.length(2)), (Some(2), None));
}

/// NaN and infinity flow through the forward as in PyTorch (and the reference): every output
/// and final state is NaN, infinite or finite where the reference's is, on every path; a NaN
/// is neither clamped away by the activations nor dropped by relu.
#[test]
fn nan_and_infinity_flow_through_as_in_the_reference() {
    let (t, b, i, h) = (4, 3, 5, 37);
    for cell in [
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::RnnTanh,
        CellKind::RnnRelu,
    ] {
        let desc = RnnDesc::new(cell, i, h);
        let params = Params::<f32>::random(&desc, 7);
        let mut x = vec![0.0f32; t * b * i];
        SplitMix64(3).fill_uniform(&mut x, 1.0);
        // A NaN in sequence 0 at step 1, an infinity in sequence 2 at step 2.
        x[b * i] = f32::NAN;
        x[(2 * b + 2) * i + 3] = f32::INFINITY;
        let want = reference::forward(
            &params.cast::<f64>(),
            &SeqBatch::new(t, b, &x.iter().map(|&v| v as f64).collect::<Vec<_>>()),
        )
        .unwrap();
        let class = |v: f64| match v {
            v if v.is_nan() => 0,
            v if v.is_infinite() => 1 + (v > 0.0) as u8,
            _ => 3,
        };
        assert!(
            want.output.iter().any(|v| v.is_nan()),
            "{cell:?}: the case has NaNs"
        );
        for isa in Isa::available() {
            let w = PackedWeights::with_isa(&params, isa).unwrap();
            let mut ws = Workspace::new(&desc, t, b, Mode::Inference).unwrap();
            let mut out = Outputs::zeros(&desc, t, b);
            forward_inference(&w, &mut ws, &SeqBatch::new(t, b, &x), &mut out).unwrap();
            for (what, got, want) in [
                ("output", &out.output, &want.output),
                ("h_n", &out.h_n, &want.h_n),
            ] {
                for (k, (&g, &e)) in got.iter().zip(want.iter()).enumerate() {
                    let (g, e) = (g as f64, e);
                    assert_eq!(
                        class(g),
                        class(e),
                        "{cell:?} {isa:?} {what}[{k}]: {g} vs {e}"
                    );
                    if class(e) == 3 {
                        assert!(
                            (g - e).abs() < 1e-4,
                            "{cell:?} {isa:?} {what}[{k}]: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
