//! Truncated BPTT against the reference run chunk by chunk, each chunk started from the
//! previous one's final state (detached) and the gradients summed over chunks.

mod common;

use common::{rel_err, Case};
use recur_kernels::*;

/// The reference, chunk by chunk: (output, h_n, c_n, grad input, grad h0, grad c0, params).
fn reference_tbptt(c: &Case, k: usize) -> (Outputs<f64>, Gradients<f64>) {
    let d = c.desc;
    let (t_len, b) = (c.seq_len, c.batch);
    let (in_w, out_w) = (b * d.input_size, b * d.output_size());
    let mut out = Outputs::zeros(&d, t_len, b);
    let mut g = Gradients::zeros(&d, t_len, b);
    let (mut h, mut cs) = (c.h0.clone(), c.c0.clone());
    let mut t0 = 0;
    while t0 < t_len {
        let n = k.min(t_len - t0);
        let mut input = SeqBatch::new(n, b, &c.x[t0 * in_w..(t0 + n) * in_w]);
        input.h0 = h.as_deref();
        input.c0 = cs.as_deref();
        let mut og = OutputGrads::new(&c.grad_output[t0 * out_w..(t0 + n) * out_w]);
        if t0 + n == t_len {
            og.h_n = c.grad_h_n.as_deref();
            og.c_n = c.grad_c_n.as_deref();
        }
        let (o, gw) = reference::backward(&c.params, &input, &og).unwrap();
        out.output[t0 * out_w..(t0 + n) * out_w].copy_from_slice(&o.output);
        g.input[t0 * in_w..(t0 + n) * in_w].copy_from_slice(&gw.input);
        if t0 == 0 {
            g.h0 = gw.h0.clone();
            g.c0 = gw.c0.clone();
        }
        for (a, v) in g.params.iter_mut().zip(gw.params.iter()) {
            *a += v;
        }
        h = Some(o.h_n.clone());
        cs = d.cell.has_cell_state().then(|| o.c_n.clone());
        out.h_n = o.h_n;
        out.c_n = o.c_n;
        t0 += n;
    }
    (out, g)
}

#[test]
fn tbptt_matches_chunked_reference() {
    let cells = [
        CellKind::Lstm,
        CellKind::Gru,
        CellKind::RnnTanh,
        CellKind::RnnRelu,
    ];
    for (n, cell) in cells.into_iter().enumerate() {
        // Windows of 1 step, of several (the last shorter), of the whole sequence; with and
        // without biases, with and without initial states (the first window from zeros).
        for (layers, bidir, window, bias, h0) in [
            (1, false, 3, true, true),
            (2, true, 4, true, true),
            (2, false, 10, true, true),
            (1, false, 1, false, false),
            (1, true, 7, false, true),
            (2, false, 3, true, false),
        ] {
            let desc = RnnDesc::new(cell, 5, 7)
                .layers(layers)
                .bidirectional(bidir)
                .bias(bias);
            let c = Case::new(desc, 10, 3, 500 + n as u64, false, h0, true);
            let (want_out, want_g) = reference_tbptt(&c, window);
            for isa in Isa::available() {
                let w = PackedWeights::with_isa(&c.params.cast::<f32>(), isa).unwrap();
                let data = c.to_f32();
                let (input, og) = (data.input(&c), data.output_grads());
                let mut tw = TbpttWorkspace::new(&desc, 10, 3, window).unwrap();
                let mut out = Outputs::zeros(&desc, 10, 3);
                let mut g = Gradients::zeros(&desc, 10, 3);
                tbptt(&w, &mut tw, &input, &og, &mut out, &mut g).unwrap();
                let what = format!(
                    "{cell:?} layers {layers} bidir {bidir} window {window} bias {bias} h0 {h0} \
                     {isa:?}"
                );
                // Lengths that are all T are no lengths: the same bits.
                let full = [10usize; 3];
                let (mut out2, mut g2) =
                    (Outputs::zeros(&desc, 10, 3), Gradients::zeros(&desc, 10, 3));
                let input2 = data.input(&c).with_lengths(&full);
                tbptt(&w, &mut tw, &input2, &og, &mut out2, &mut g2).unwrap();
                assert!(out2 == out && g2 == g, "{what}: with full lengths");
                for (name, a, b) in [
                    ("output", &out.output, &want_out.output),
                    ("h_n", &out.h_n, &want_out.h_n),
                    ("c_n", &out.c_n, &want_out.c_n),
                    ("grad input", &g.input, &want_g.input),
                    ("grad h0", &g.h0, &want_g.h0),
                    ("grad c0", &g.c0, &want_g.c0),
                ] {
                    assert!(rel_err(a, b) < 1e-5, "{what}: {name}");
                }
                let gp: Vec<f32> = g.params.iter().copied().collect();
                let wp: Vec<f64> = want_g.params.iter().copied().collect();
                assert!(rel_err(&gp, &wp) < 1e-5, "{what}: params");
            }
        }
    }
}

#[test]
fn tbptt_with_the_whole_sequence_as_window_is_plain_bptt() {
    let desc = RnnDesc::new(CellKind::Lstm, 4, 6).layers(2);
    let c = Case::new(desc, 8, 2, 9, false, true, true);
    let (want_out, want_g) = c.reference();
    let (got_out, got_g) = reference_tbptt(&c, 8);
    assert_eq!(got_out.output, want_out.output);
    assert_eq!(got_g.params, want_g.params);
}

#[test]
fn bad_windows_and_lengths_are_errors() {
    let desc = RnnDesc::new(CellKind::Gru, 2, 3);
    assert!(TbpttWorkspace::new(&desc, 5, 2, 0).is_err());
    assert!(TbpttWorkspace::new(&desc, 5, 2, 6).is_err());
    let w = PackedWeights::new(&Params::random(&desc, 1)).unwrap();
    let mut tw = TbpttWorkspace::new(&desc, 5, 2, 2).unwrap();
    let x = vec![0.1f32; 5 * 2 * 2];
    let go = vec![0.1f32; 5 * 2 * 3];
    let (mut out, mut g) = (Outputs::zeros(&desc, 5, 2), Gradients::zeros(&desc, 5, 2));
    let lengths = [5, 3];
    let input = SeqBatch::new(5, 2, &x).with_lengths(&lengths);
    let e = tbptt(
        &w,
        &mut tw,
        &input,
        &OutputGrads::new(&go),
        &mut out,
        &mut g,
    )
    .unwrap_err();
    assert!(e.to_string().contains("variable lengths"), "{e}");
}
