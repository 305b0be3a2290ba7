//! The reference's hand-written BPTT against central finite differences of its forward, in
//! f64, on every gradient entry: input, h0, c0 and every parameter.

mod common;

use common::Case;
use recur_kernels::{reference, CellKind, Params, RnnDesc, SeqBatch};

/// L = Σ output·go + Σ h_n·gh + Σ c_n·gc (padded outputs are zero, so they add nothing).
fn loss(
    case: &Case,
    params: &Params<f64>,
    x: &[f64],
    h0: Option<&[f64]>,
    c0: Option<&[f64]>,
) -> f64 {
    let mut input = SeqBatch::new(case.seq_len, case.batch, x);
    input.lengths = case.lengths.as_deref();
    input.h0 = h0;
    input.c0 = c0;
    let out = reference::forward(params, &input).unwrap();
    let dot = |a: &[f64], b: Option<&Vec<f64>>| -> f64 {
        b.map_or(0.0, |b| a.iter().zip(b).map(|(x, y)| x * y).sum())
    };
    dot(&out.output, Some(&case.grad_output))
        + dot(&out.h_n, case.grad_h_n.as_ref())
        + dot(&out.c_n, case.grad_c_n.as_ref())
}

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;

fn check(what: &str, analytic: &[f64], mut numeric: impl FnMut(usize) -> f64) {
    for (i, &a) in analytic.iter().enumerate() {
        let n = numeric(i);
        let err = (a - n).abs() / a.abs().max(1.0);
        assert!(
            err < TOL,
            "{what}[{i}]: analytic {a:.9e}, finite difference {n:.9e}"
        );
    }
}

fn central(f: impl Fn(f64) -> f64, v: f64) -> f64 {
    (f(v + EPS) - f(v - EPS)) / (2.0 * EPS)
}

fn check_case(case: &Case) {
    let (_, g) = case.reference();
    let (h0, c0) = (case.h0.as_deref(), case.c0.as_deref());
    let mut x = case.x.clone();
    check("grad input", &g.input, |i| {
        let v = x[i];
        let d = central(
            |p| {
                let mut xp = x.clone();
                xp[i] = p;
                loss(case, &case.params, &xp, h0, c0)
            },
            v,
        );
        x[i] = v;
        d
    });
    if let Some(h0v) = case.h0.as_ref() {
        check("grad h0", &g.h0, |i| {
            central(
                |p| {
                    let mut hp = h0v.clone();
                    hp[i] = p;
                    loss(case, &case.params, &case.x, Some(&hp), c0)
                },
                h0v[i],
            )
        });
    }
    if let Some(c0v) = case.c0.as_ref() {
        check("grad c0", &g.c0, |i| {
            central(
                |p| {
                    let mut cp = c0v.clone();
                    cp[i] = p;
                    loss(case, &case.params, &case.x, h0, Some(&cp))
                },
                c0v[i],
            )
        });
    }
    let analytic: Vec<f64> = g.params.iter().copied().collect();
    let values: Vec<f64> = case.params.iter().copied().collect();
    check("grad params", &analytic, |i| {
        central(
            |p| {
                let mut params = case.params.clone();
                *params.iter_mut().nth(i).unwrap() = p;
                loss(case, &params, &case.x, h0, c0)
            },
            values[i],
        )
    });
}

fn every_config(cell: CellKind) {
    for (n, (layers, bidir)) in [(1, false), (1, true), (2, false), (2, true)]
        .into_iter()
        .enumerate()
    {
        let desc = RnnDesc::new(cell, 3, 2).layers(layers).bidirectional(bidir);
        // Variable lengths, unsorted, with and without the longest at T.
        let mut case = Case::new(desc, 4, 3, 10 + n as u64, false, true, true);
        case.lengths = Some(if n % 2 == 0 {
            vec![3, 1, 4]
        } else {
            vec![2, 3, 1]
        });
        check_case(&case);
    }
    // No bias, no initial state, all lengths equal.
    let desc = RnnDesc::new(cell, 2, 3)
        .layers(2)
        .bidirectional(true)
        .bias(false);
    check_case(&Case::new(desc, 3, 2, 77, false, false, false));
}

#[test]
fn rnn_tanh() {
    every_config(CellKind::RnnTanh);
}

#[test]
fn rnn_relu() {
    every_config(CellKind::RnnRelu);
}

#[test]
fn lstm() {
    every_config(CellKind::Lstm);
}

#[test]
fn gru() {
    every_config(CellKind::Gru);
}
