//! The `recur` binary end to end: good runs, and bad input that must give one line on stderr,
//! exit code 2 and no output file.

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::{Path, PathBuf};
use std::process::Command;

const T: usize = 5;
const B: usize = 3;
const I: usize = 3;
const H: usize = 4;

/// A tensor to write: name, dtype, shape, little-endian bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

fn f32s(name: &str, shape: &[usize]) -> Entry {
    let n: usize = shape.iter().product();
    let bytes = (0..n)
        .flat_map(|i| (((i * 7919) % 13) as f32 / 13.0 - 0.5).to_le_bytes())
        .collect();
    (name.into(), Dtype::F32, shape.to_vec(), bytes)
}

fn i64s(name: &str, v: &[i64]) -> Entry {
    let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    (name.into(), Dtype::I64, vec![v.len()], bytes)
}

fn write(path: &Path, entries: &[Entry]) {
    let views: Vec<_> = entries
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// A one-layer LSTM state_dict with biases.
fn lstm_weights() -> Vec<Entry> {
    vec![
        f32s("weight_ih_l0", &[4 * H, I]),
        f32s("weight_hh_l0", &[4 * H, H]),
        f32s("bias_ih_l0", &[4 * H]),
        f32s("bias_hh_l0", &[4 * H]),
    ]
}

fn lstm_inputs() -> Vec<Entry> {
    vec![f32s("input", &[T, B, I]), i64s("lengths", &[5, 2, 4])]
}

struct Run {
    code: i32,
    stderr: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes the files and runs `recur <cmd> --weights W --input IN --out OUT <extra...>`.
fn run(cmd: &str, weights: &[Entry], inputs: &[Entry], extra: &[&str]) -> Run {
    run_env(&[], cmd, weights, inputs, extra)
}

/// [`run`] with extra environment variables.
fn run_env(
    env: &[(&str, &str)],
    cmd: &str,
    weights: &[Entry],
    inputs: &[Entry],
    extra: &[&str],
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (w, i, o) = (
        dir.path().join("w.safetensors"),
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
    );
    write(&w, weights);
    write(&i, inputs);
    run_paths(env, cmd, &w, &i, &o, extra, dir)
}

fn run_paths(
    env: &[(&str, &str)],
    cmd: &str,
    w: &Path,
    i: &Path,
    o: &Path,
    extra: &[&str],
    dir: tempfile::TempDir,
) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_recur"))
        .envs(env.iter().copied())
        .arg(cmd)
        .arg("--weights")
        .arg(w)
        .arg("--input")
        .arg(i)
        .arg("--out")
        .arg(o)
        .args(extra)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        out: o.to_path_buf(),
        _dir: dir,
    }
}

/// Exit code 2, one line on stderr containing `needle`, no output file, no temporary left.
fn assert_rejected(r: &Run, needle: &str) {
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    let lines: Vec<_> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", r.stderr);
    assert!(
        r.stderr.contains(needle),
        "expected '{needle}' in: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!r.out.exists(), "an output file was written");
    let dir = r.out.parent().unwrap();
    if dir.exists() {
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

fn keys(path: &Path) -> Vec<(String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut k: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    k.sort();
    k
}

#[test]
fn infer_writes_outputs() {
    let r = run(
        "infer",
        &lstm_weights(),
        &lstm_inputs(),
        &["--threads", "2"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let k = keys(&r.out);
    assert_eq!(
        k,
        vec![
            ("c_n".into(), vec![1, B, H]),
            ("h_n".into(), vec![1, B, H]),
            ("output".into(), vec![T, B, H]),
        ]
    );
}

#[test]
fn grad_writes_every_gradient_with_pytorch_names() {
    let mut inputs = lstm_inputs();
    inputs.push(f32s("grad_output", &[B, T, H]));
    inputs[0] = f32s("input", &[B, T, I]);
    let r = run(
        "grad",
        &lstm_weights(),
        &inputs,
        &["--batch-first", "--cell", "lstm"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names: Vec<String> = keys(&r.out).into_iter().map(|(n, _)| n).collect();
    for want in [
        "output",
        "h_n",
        "c_n",
        "grad_input",
        "grad_h0",
        "grad_c0",
        "grad.weight_ih_l0",
        "grad.weight_hh_l0",
        "grad.bias_ih_l0",
        "grad.bias_hh_l0",
    ] {
        assert!(
            names.contains(&want.to_string()),
            "{want} missing from {names:?}"
        );
    }
    let shapes = keys(&r.out);
    let gi = shapes.iter().find(|(n, _)| n == "grad_input").unwrap();
    assert_eq!(gi.1, vec![B, T, I], "batch-first layout kept");
}

#[test]
fn weights_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let i = dir.path().join("in.safetensors");
    std::fs::write(&w, b"this is not a safetensors file at all").unwrap();
    write(&i, &lstm_inputs());
    let o = dir.path().join("out.safetensors");
    let r = run_paths(&[], "infer", &w, &i, &o, &[], dir);
    assert_rejected(&r, "not a valid safetensors file");
}

#[test]
fn truncated_input_file() {
    let (dir, w, i) = lstm_files();
    let bytes = std::fs::read(&i).unwrap();
    std::fs::write(&i, &bytes[..bytes.len() - 9]).unwrap();
    let o = dir.path().join("out.st");
    let r = run_paths(&[], "infer", &w, &i, &o, &[], dir);
    assert_rejected(&r, "not a valid safetensors file");
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("nope.safetensors");
    let o = dir.path().join("out.safetensors");
    let r = run_paths(&[], "infer", &w, &w, &o, &[], dir);
    assert_rejected(&r, "cannot read");
}

#[test]
fn missing_input_key() {
    let r = run(
        "infer",
        &lstm_weights(),
        &[i64s("lengths", &[1, 2, 3])],
        &[],
    );
    assert_rejected(&r, "missing tensor 'input'");
}

#[test]
fn missing_grad_output() {
    let r = run("grad", &lstm_weights(), &lstm_inputs(), &[]);
    assert_rejected(&r, "missing tensor 'grad_output'");
}

#[test]
fn unexpected_input_key() {
    let mut inputs = lstm_inputs();
    inputs.push(f32s("bogus", &[2]));
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "unexpected tensor 'bogus'");
}

#[test]
fn grad_key_in_infer_is_unexpected() {
    let mut inputs = lstm_inputs();
    inputs.push(f32s("grad_output", &[T, B, H]));
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "unexpected tensor 'grad_output'");
}

#[test]
fn unexpected_weight_key() {
    let mut w = lstm_weights();
    w.push(f32s("running_mean", &[4]));
    let r = run("infer", &w, &lstm_inputs(), &[]);
    assert_rejected(&r, "unexpected key 'running_mean'");
}

#[test]
fn wrong_input_shape() {
    let r = run(
        "infer",
        &lstm_weights(),
        &[f32s("input", &[T, B, I + 1])],
        &[],
    );
    assert_rejected(&r, "expected (T, B, I) with I = 3");
}

#[test]
fn wrong_h0_shape() {
    let mut inputs = lstm_inputs();
    inputs.push(f32s("h0", &[2, B, H]));
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "'h0' has shape [2, 3, 4], expected [1, 3, 4]");
}

#[test]
fn c0_for_gru_is_unexpected() {
    let w = vec![
        f32s("weight_ih_l0", &[3 * H, I]),
        f32s("weight_hh_l0", &[3 * H, H]),
    ];
    let inputs = vec![f32s("input", &[T, B, I]), f32s("c0", &[1, B, H])];
    let r = run("infer", &w, &inputs, &[]);
    assert_rejected(&r, "unexpected tensor 'c0'");
}

#[test]
fn wrong_dtype() {
    let mut inputs = lstm_inputs();
    let n = T * B * I;
    inputs[0] = ("input".into(), Dtype::F64, vec![T, B, I], vec![0u8; n * 8]);
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "expected float32");
}

#[test]
fn float_lengths() {
    let inputs = vec![f32s("input", &[T, B, I]), f32s("lengths", &[B])];
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "expected int64");
}

#[test]
fn zero_length() {
    let inputs = vec![f32s("input", &[T, B, I]), i64s("lengths", &[5, 0, 4])];
    let r = run("infer", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "lengths[1] = 0, expected a length in 1..=5");
}

#[test]
fn length_above_t() {
    let inputs = vec![f32s("input", &[T, B, I]), i64s("lengths", &[5, 6, 4])];
    let r = run("grad", &lstm_weights(), &inputs, &[]);
    assert_rejected(&r, "lengths[1] = 6");
}

#[test]
fn layer_gap_is_not_a_stack() {
    let mut w = lstm_weights();
    w.push(f32s("weight_ih_l2", &[4 * H, H]));
    w.push(f32s("weight_hh_l2", &[4 * H, H]));
    w.push(f32s("bias_ih_l2", &[4 * H]));
    w.push(f32s("bias_hh_l2", &[4 * H]));
    let r = run("infer", &w, &lstm_inputs(), &[]);
    assert_rejected(&r, "missing 'weight_ih_l1'");
}

#[test]
fn partial_biases() {
    let mut w = lstm_weights();
    w.remove(3);
    let r = run("infer", &w, &lstm_inputs(), &[]);
    assert_rejected(&r, "missing 'bias_hh_l0'");
}

#[test]
fn reverse_without_forward_layer_shape() {
    let mut w = lstm_weights();
    w.push(f32s("weight_ih_l0_reverse", &[4 * H, I]));
    w.push(f32s("weight_hh_l0_reverse", &[4 * H, H + 1]));
    w.push(f32s("bias_ih_l0_reverse", &[4 * H]));
    w.push(f32s("bias_hh_l0_reverse", &[4 * H]));
    let r = run("infer", &w, &lstm_inputs(), &[]);
    assert_rejected(
        &r,
        "'weight_hh_l0_reverse' has shape [16, 5], expected [16, 4]",
    );
}

#[test]
fn cell_mismatch() {
    let r = run("infer", &lstm_weights(), &lstm_inputs(), &["--cell", "gru"]);
    assert_rejected(&r, "--cell gru needs 3*H rows");
}

/// A folder with the LSTM's weights and inputs written: (folder, weights, inputs).
fn lstm_files() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (w, i) = (dir.path().join("w.st"), dir.path().join("in.st"));
    write(&w, &lstm_weights());
    write(&i, &lstm_inputs());
    (dir, w, i)
}

/// `recur infer` of the LSTM with `extra` arguments is rejected with `needle`.
fn lstm_infer_rejects(extra: &[&str], needle: &str) {
    let r = run("infer", &lstm_weights(), &lstm_inputs(), extra);
    assert_rejected(&r, needle);
}

#[test]
fn nonlinearity_on_lstm() {
    // Either value: tanh is the RNN's default, but no cell of an LSTM.
    for value in ["relu", "tanh"] {
        lstm_infer_rejects(
            &["--nonlinearity", value],
            "--nonlinearity applies to rnn only",
        );
    }
}

#[test]
fn unknown_flag() {
    let r = run("infer", &lstm_weights(), &lstm_inputs(), &["--frobnicate"]);
    assert_rejected(&r, "--frobnicate");
}

#[test]
fn zero_threads() {
    for threads in ["0", "100000"] {
        lstm_infer_rejects(
            &["--threads", threads],
            "expected a number of threads in 1..=1024",
        );
    }
}

/// `recur <args>`, which must fail with exit code 2: its stderr and stdout.
fn recur_fails<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (String, Vec<u8>) {
    let output = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    (stderr, output.stdout)
}

#[test]
fn missing_argument_is_named() {
    let (stderr, _) = recur_fails(&["infer", "--weights", "w.st", "--input", "in.st"]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--out"), "{stderr}");
    let (stderr, _) = recur_fails(&["bench", "--cell", "foo"]);
    assert!(
        stderr.contains("possible values: lstm, gru, rnn"),
        "{stderr}"
    );
}

/// `recur infer` on these paths, which must fail with exit code 2: its stderr. (For outputs
/// that exist before the run, which `assert_rejected` would take for a written file.)
fn infer_fails(w: &Path, i: &Path, o: &Path) -> String {
    let (stderr, _) = recur_fails(&[
        Path::new("infer"),
        "--weights".as_ref(),
        w,
        "--input".as_ref(),
        i,
        "--out".as_ref(),
        o,
    ]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn output_over_an_input_is_rejected() {
    for target in ["w.st", "in.st", "./sub/../in.st"] {
        let (dir, w, i) = lstm_files();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let before = (std::fs::read(&w).unwrap(), std::fs::read(&i).unwrap());
        let o = dir.path().join(target);
        let stderr = infer_fails(&w, &i, &o);
        assert!(stderr.contains("is the input"), "{stderr}");
        assert_eq!(
            (std::fs::read(&w).unwrap(), std::fs::read(&i).unwrap()),
            before
        );
    }
}

#[cfg(unix)]
#[test]
fn output_through_a_link_writes_its_target() {
    let (dir, w, i) = lstm_files();
    let (target, link) = (dir.path().join("target.st"), dir.path().join("link.st"));
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = run_paths(&[], "infer", &w, &i, &link, &[], dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    assert!(keys(&target).iter().any(|(n, _)| n == "output"));
}

#[cfg(unix)]
#[test]
fn special_files_are_neither_read_nor_written() {
    // A fifo is no file to write (a rename would replace it).
    let (dir, w, i) = lstm_files();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return;
    }
    let stderr = infer_fails(&w, &i, &fifo);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let kept = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&kept),
        "the fifo was replaced"
    );
    // A device is not read (/dev/zero would be read until memory runs out); a pipe would be.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        let o = dir.path().join("out.st");
        let r = run_paths(&[], "infer", zero, &i, &o, &[], dir);
        assert_rejected(&r, "a folder or device");
    }
}

#[cfg(unix)]
#[test]
fn output_through_a_link_to_a_new_file() {
    let (dir, w, i) = lstm_files();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let link = dir.path().join("link.st");
    // Relative to the link's folder, not yet there.
    std::os::unix::fs::symlink("sub/new.st", &link).unwrap();
    let target = dir.path().join("sub/new.st");
    let r = run_paths(&[], "infer", &w, &i, &link, &[], dir);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(keys(&target).iter().any(|(n, _)| n == "output"));
}

#[test]
fn bare_recur_prints_its_help_and_fails() {
    let (stderr, _) = recur_fails::<&str>(&[]);
    assert!(stderr.contains("Usage: recur"), "{stderr}");
}

#[test]
fn leading_zero_weight_key() {
    let mut w = lstm_weights();
    w.push(f32s("weight_ih_l00", &[4 * H, I]));
    let r = run("infer", &w, &lstm_inputs(), &[]);
    assert_rejected(&r, "unexpected key 'weight_ih_l00'");
}

#[test]
fn bench_shape_too_large_is_an_error() {
    for args in [
        ["--seq", "18446744073709551615", "--mode", "infer"],
        ["--seq", "18446744073709551615", "--mode", "train"],
        // Fits usize, not this machine (a PiB of input).
        ["--seq", "100000000000000", "--mode", "infer"],
    ] {
        let shape = [
            "bench", "--cell", "lstm", "--batch", "1", "--input", "3", "--hidden", "3",
        ];
        let (stderr, stdout) = recur_fails(&[&shape[..], &args].concat());
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: a table header without rows");
    }
}

#[test]
fn unwritable_output() {
    let (dir, w, i) = lstm_files();
    let o = dir.path().join("no/such/dir/out.safetensors");
    let r = run_paths(&[], "infer", &w, &i, &o, &[], dir);
    assert_rejected(&r, "cannot write");
}

/// `--contrast` times the RNN and the attention of one shape at 1 thread and at --threads.
#[test]
fn bench_contrast_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "bench",
            "--contrast",
            "--cell",
            "rnn",
            "--seq",
            "5",
            "--batch",
            "2",
        ])
        .args(["--hidden", "12", "--heads", "3", "--threads", "2"])
        .args(["--format", "json", "--seconds", "0.01"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, threads) in lines.iter().zip(["\"threads\":1,", "\"threads\":2,"]) {
        for key in [
            "\"contrast\":true",
            "\"cell\":\"rnn\"",
            "\"seq\":5,",
            "\"width\":12,",
            "\"heads\":3,",
            threads,
            "\"rnn_ms\":",
            "\"attention_ms\":",
            "\"attention_gflops\":",
            "\"rnn_token_us\":",
            "\"attention_token_us\":",
        ] {
            assert!(line.contains(key), "{key} missing in {line}");
        }
    }
}

#[test]
fn bench_contrast_bad_arguments_are_rejected() {
    let (stderr, _) = recur_fails(&["bench", "--contrast", "--hidden", "12", "--heads", "5"]);
    assert!(stderr.contains("--heads 5 for width 12"), "{stderr}");
    let (stderr, _) = recur_fails(&["bench", "--contrast", "--input", "12"]);
    assert!(stderr.contains("--input, --mode"), "{stderr}");
    let (stderr, _) = recur_fails(&["bench", "--heads", "4"]);
    assert!(stderr.contains("--contrast"), "{stderr}");
}

#[test]
fn bench_json_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args([
            "bench", "--cell", "gru", "--seq", "3", "--batch", "2", "--input", "5",
        ])
        .args([
            "--hidden",
            "7",
            "--mode",
            "train",
            "--format",
            "json",
            "--seconds",
            "0.01",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1);
    for key in [
        "\"cell\":\"gru\"",
        "\"mode\":\"train\"",
        "\"seq\":3",
        "\"cpu\":\"",
        "\"ms\":",
        "\"gflops\":",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
}

/// RECUR_ISA forces the kernels the bench runs with (not only accepted: the JSON line names
/// the path taken), for every path this CPU has.
#[test]
fn recur_isa_forces_the_path() {
    for isa in recur_kernels::Isa::available() {
        let out = Command::new(env!("CARGO_BIN_EXE_recur"))
            .env("RECUR_ISA", isa.name())
            .args(["bench", "--cell", "lstm", "--seq", "2", "--batch", "3"])
            .args(["--input", "5", "--hidden", "7", "--mode", "infer"])
            .args(["--format", "json", "--seconds", "0.01"])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{isa:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!("\"isa\":\"{}\"", isa.name());
        assert!(line.contains(&want), "{want} missing in {line}");
    }
}

#[test]
fn bench_partial_shape_is_rejected() {
    let (stderr, _) = recur_fails(&["bench", "--cell", "gru", "--seq", "3"]);
    assert!(stderr.contains("give all of --cell"));
}

#[test]
fn unknown_isa_is_rejected() {
    let r = run_env(
        &[("RECUR_ISA", "sse")],
        "infer",
        &lstm_weights(),
        &lstm_inputs(),
        &[],
    );
    assert_rejected(&r, "RECUR_ISA=sse, expected avx512, avx2 or portable");
}

#[test]
fn every_isa_gives_the_same_outputs_within_tolerance() {
    let mut outs = Vec::new();
    for isa in recur::kernels::Isa::available() {
        let name = format!("{isa:?}").to_lowercase();
        let r = run_env(
            &[("RECUR_ISA", &name)],
            "infer",
            &lstm_weights(),
            &lstm_inputs(),
            &[],
        );
        assert_eq!(r.code, 0, "RECUR_ISA={name}: {}", r.stderr);
        let bytes = std::fs::read(&r.out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let v: Vec<f32> = st
            .tensor("output")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        outs.push((name, v));
    }
    let (first, want) = &outs[0];
    for (name, got) in &outs[1..] {
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{name} vs {first}: {a} vs {b}");
        }
    }
}

#[test]
fn tbptt_runs_and_rejects_what_it_cannot_do() {
    let inputs = vec![f32s("input", &[T, B, I]), f32s("grad_output", &[T, B, H])];
    let r = run("grad", &lstm_weights(), &inputs, &["--tbptt", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(keys(&r.out).iter().any(|(n, _)| n == "grad.weight_hh_l0"));

    let r = run("grad", &lstm_weights(), &inputs, &["--tbptt", "0"]);
    assert_rejected(&r, "truncated BPTT window 0, expected 1..=5");
    let r = run(
        "infer",
        &lstm_weights(),
        &[f32s("input", &[T, B, I])],
        &["--tbptt", "2"],
    );
    assert_rejected(&r, "--tbptt applies to recur grad only");
    let mut varlen = inputs.clone();
    varlen.push(i64s("lengths", &[5, 2, 4]));
    let r = run("grad", &lstm_weights(), &varlen, &["--tbptt", "2"]);
    assert_rejected(&r, "variable lengths are not supported");
    // Lengths that are all T are no variable lengths.
    let mut full = inputs.clone();
    full.push(i64s("lengths", &[5, 5, 5]));
    let r = run("grad", &lstm_weights(), &full, &["--tbptt", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn recompute_gives_the_gradients_of_the_saving_backward() {
    // 200 x 3 rows: several chunks of recomputation (about 256 rows each), whose weight
    // gradients are summed chunk by chunk, the last first, so their bits show the mode ran.
    let t = 200;
    let inputs = vec![f32s("input", &[t, B, I]), f32s("grad_output", &[t, B, H])];
    let saving = run("grad", &lstm_weights(), &inputs, &[]);
    assert_eq!(saving.code, 0, "{}", saving.stderr);
    let re = run("grad", &lstm_weights(), &inputs, &["--recompute"]);
    assert_eq!(re.code, 0, "{}", re.stderr);
    let (a, b) = (keys(&saving.out), keys(&re.out));
    assert_eq!(a, b);
    assert!(a.iter().any(|(n, _)| n == "grad.weight_hh_l0"));
    let (sa, sb) = (
        std::fs::read(&saving.out).unwrap(),
        std::fs::read(&re.out).unwrap(),
    );
    let (sa, sb) = (
        safetensors::SafeTensors::deserialize(&sa).unwrap(),
        safetensors::SafeTensors::deserialize(&sb).unwrap(),
    );
    let f32s_of = |st: &safetensors::SafeTensors, n: &str| -> Vec<f32> {
        let t = st.tensor(n).unwrap();
        let d = t.data();
        d.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let mut differs = false;
    for (name, _) in &a {
        let (x, y) = (f32s_of(&sa, name), f32s_of(&sb, name));
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(&y) {
            // Weight gradients are summed chunk by chunk: equal to rounding.
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + p.abs()),
                "{name}: {p} vs {q}"
            );
            differs |= p.to_bits() != q.to_bits();
        }
    }
    assert!(
        differs,
        "--recompute gave the saving backward's bits: not run?"
    );

    let r = run(
        "infer",
        &lstm_weights(),
        &[f32s("input", &[T, B, I])],
        &["--recompute"],
    );
    assert_rejected(&r, "--recompute applies to recur grad only");
    let r = run(
        "grad",
        &lstm_weights(),
        &inputs,
        &["--recompute", "--tbptt", "2"],
    );
    assert_rejected(&r, "--recompute and --tbptt together");
}
