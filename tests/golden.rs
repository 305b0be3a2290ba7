//! Golden fixtures from PyTorch autograd (tests/fixtures/generate.py): every output and
//! gradient of `recur` within 1e-5 of PyTorch's, relative to the largest magnitude.

use recur::kernels::Isa;
use recur::model::{thread_pool, Model};
use recur::state_dict::{self, CellFamily};
use recur::tensors::{Data, TensorFile};
use std::collections::BTreeMap;
use std::path::Path;

mod common;

const TOL: f64 = 1e-5;

struct Fixture {
    name: String,
    weights: TensorFile,
    inputs: TensorFile,
    expect: BTreeMap<String, Vec<f32>>,
    family: CellFamily,
    relu: bool,
    batch_first: bool,
    /// Truncated BPTT window, for the fixtures made that way.
    tbptt: Option<usize>,
}

fn load(path: &Path) -> Fixture {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let file = TensorFile::read(path).unwrap_or_else(|e| panic!("{e}"));
    let meta = |k: &str| {
        file.metadata
            .get(k)
            .unwrap_or_else(|| panic!("{name}: no metadata '{k}'"))
            .clone()
    };
    let (family, relu) = match meta("cell").as_str() {
        "lstm" => (CellFamily::Lstm, false),
        "gru" => (CellFamily::Gru, false),
        "rnn_tanh" => (CellFamily::Rnn, false),
        "rnn_relu" => (CellFamily::Rnn, true),
        other => panic!("{name}: unknown cell {other}"),
    };
    let batch_first = meta("batch_first") == "true";
    let tbptt = file.metadata.get("tbptt").map(|k| k.parse().unwrap());
    let mut weights = TensorFile {
        path: format!("{name} (weights)"),
        ..TensorFile::default()
    };
    let mut inputs = TensorFile {
        path: format!("{name} (inputs)"),
        ..TensorFile::default()
    };
    let mut expect = BTreeMap::new();
    for (k, t) in file.tensors {
        if let Some(e) = k.strip_prefix("expect.") {
            let Data::F32(v) = t.data else {
                panic!("{name}: {k} is not f32")
            };
            expect.insert(e.to_string(), v);
        } else if k.starts_with("weight_") || k.starts_with("bias_") {
            weights.tensors.insert(k, t);
        } else {
            inputs.tensors.insert(k, t);
        }
    }
    Fixture {
        name,
        weights,
        inputs,
        expect,
        family,
        relu,
        batch_first,
        tbptt,
    }
}

fn fixtures() -> Vec<Fixture> {
    let (dir, paths) = common::safetensors_in("");
    assert!(
        paths.len() >= 10,
        "expected about a dozen fixtures in {dir:?}"
    );
    paths.iter().map(|p| load(p)).collect()
}

/// Largest |got - want| over the largest |want|; infinite if anything is not finite.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    if !got.iter().chain(want).all(|v| v.is_finite()) {
        return f64::INFINITY;
    }
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs() as f64));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    diff / scale
}

#[test]
fn grad_matches_pytorch_on_every_fixture() {
    for mut f in fixtures() {
        let params = state_dict::load(&mut f.weights, Some(f.family), f.relu.then_some(true))
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        // Every ISA at 1 and 2 threads, and the recomputing backward on the best one.
        for (isa, threads, recompute) in Isa::available()
            .into_iter()
            .flat_map(|isa| [(isa, 1, false), (isa, 2, false)])
            .chain([(Isa::available()[0], 2, true)])
        {
            let model = Model::with_isa(params.clone(), isa).unwrap();
            let mut inputs = f.inputs.clone();
            let (inp, og) = model
                .read_inputs(&mut inputs, f.batch_first, true)
                .unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let pool = thread_pool(threads).unwrap();
            let og = og.unwrap();
            let (out, grads) = pool
                .install(|| match f.tbptt {
                    Some(k) => model.grad_tbptt(&inp, &og, k),
                    None => model.grad(&inp, &og, recompute),
                })
                .unwrap();
            let named = model.named_results(&inp, out, Some(grads), f.batch_first);
            assert_eq!(
                named.len(),
                f.expect.len(),
                "{}: recur gives {:?}, the fixture expects {:?}",
                f.name,
                named.iter().map(|n| &n.0).collect::<Vec<_>>(),
                f.expect.keys().collect::<Vec<_>>()
            );
            for (key, _, got) in &named {
                let want = f
                    .expect
                    .get(key)
                    .unwrap_or_else(|| panic!("{}: no expect.{key}", f.name));
                assert_eq!(got.len(), want.len(), "{}: {key} length", f.name);
                let e = rel_err(got, want);
                assert!(
                    e <= TOL,
                    "{} ({threads} threads): {key} off by {e:.2e}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn infer_matches_pytorch_on_every_fixture() {
    // Truncated-BPTT fixtures hold chunked outputs (a reverse direction restarts every window).
    for mut f in fixtures().into_iter().filter(|f| f.tbptt.is_none()) {
        let params = state_dict::load(&mut f.weights, None, f.relu.then_some(true)).unwrap();
        let model = Model::new(params).unwrap();
        let mut inputs = f.inputs.clone();
        for k in ["grad_output", "grad_h_n", "grad_c_n"] {
            inputs.tensors.remove(k);
        }
        let (inp, _) = model
            .read_inputs(&mut inputs, f.batch_first, false)
            .unwrap();
        let out = model.infer(&inp).unwrap();
        for (key, _, got) in model.named_results(&inp, out, None, f.batch_first) {
            let e = rel_err(&got, &f.expect[&key]);
            assert!(e <= TOL, "{}: {key} off by {e:.2e}", f.name);
        }
    }
}

/// Writes `file`'s tensors (f32 and int64) as a safetensors file at `path`.
fn write_file(path: &Path, file: &TensorFile) {
    let bytes: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors
        .iter()
        .map(|(k, t)| match &t.data {
            Data::F32(v) => (
                k.clone(),
                safetensors::Dtype::F32,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Data::I64(v) => (
                k.clone(),
                safetensors::Dtype::I64,
                t.shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views: Vec<_> = bytes
        .iter()
        .map(|(k, d, s, b)| {
            let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
            (k.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The binary end to end on every fixture: `recur grad` (with the fixture's --batch-first,
/// --nonlinearity, --tbptt) and `recur infer` read the fixture's weights and inputs as files
/// and write every result within the tolerance of PyTorch's.
#[test]
fn the_cli_matches_pytorch_on_every_fixture() {
    for f in fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let (w, i) = (dir.path().join("w.st"), dir.path().join("in.st"));
        write_file(&w, &f.weights);
        write_file(&i, &f.inputs);
        let mut infer_inputs = f.inputs.clone();
        for k in ["grad_output", "grad_h_n", "grad_c_n"] {
            infer_inputs.tensors.remove(k);
        }
        let i_infer = dir.path().join("in_infer.st");
        write_file(&i_infer, &infer_inputs);
        let mut runs = vec![("grad", &i)];
        if f.tbptt.is_none() {
            runs.push(("infer", &i_infer));
        }
        for (cmd, input) in runs {
            let out = dir.path().join(format!("{cmd}.st"));
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_recur"));
            c.arg(cmd)
                .arg("--weights")
                .arg(&w)
                .arg("--input")
                .arg(input);
            c.arg("--out").arg(&out);
            if f.batch_first {
                c.arg("--batch-first");
            }
            if f.relu {
                c.args(["--nonlinearity", "relu"]);
            }
            if let Some(k) = f.tbptt {
                c.args(["--tbptt", &k.to_string()]);
            }
            let run = c.output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{} {cmd}: {stderr}", f.name);
            let got = TensorFile::read(&out).unwrap();
            let mut compared = 0;
            for (key, t) in &got.tensors {
                let Data::F32(v) = &t.data else {
                    panic!("{} {cmd}: {key} is not f32", f.name)
                };
                let want = f
                    .expect
                    .get(key)
                    .unwrap_or_else(|| panic!("{} {cmd}: no expect.{key}", f.name));
                assert_eq!(v.len(), want.len(), "{} {cmd}: {key}", f.name);
                let e = rel_err(v, want);
                assert!(e <= TOL, "{} {cmd}: {key} off by {e:.2e}", f.name);
                compared += 1;
            }
            // grad writes every expected result; infer the outputs and final states.
            let want = match cmd {
                "grad" => f.expect.len(),
                _ => f.expect.keys().filter(|k| !k.starts_with("grad")).count(),
            };
            assert_eq!(compared, want, "{} {cmd}", f.name);
        }
    }
}
