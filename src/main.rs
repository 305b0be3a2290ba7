//! The `recur` command line: `infer`, `grad` and `bench`.
//!
//! Every failure prints one line on stderr (a bare `recur`: its help) and exits with code 2,
//! leaving no output file.

use clap::{Parser, Subcommand, ValueEnum};
use recur::bench::{reference_cases, run_case, table_title, BenchCase, BenchMode, BenchResult};
use recur::contrast::{run_contrast, ContrastCase, ContrastResult, CONTRAST_STEPS};
use recur::error::{Error, Result};
use recur::model::{thread_pool, Model};
use recur::state_dict::{self, CellFamily};
use recur::tensors::{output_path, write_f32, TensorFile};
use recur_kernels::{CellKind, RnnDesc};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "recur",
    version,
    about = "RNN / LSTM / GRU on hand-optimized CPU kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward pass: writes output, h_n (and c_n for LSTM).
    Infer(IoArgs),
    /// Forward and backward: also writes grad_input, grad_h0 (grad_c0) and grad.<weight key>.
    Grad(IoArgs),
    /// Times the kernels; with no shape, the reference cases as a table.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum CellArg {
    Lstm,
    Gru,
    Rnn,
}

impl From<CellArg> for CellKind {
    /// The bench's cell: `rnn` is the tanh RNN.
    fn from(c: CellArg) -> Self {
        match c {
            CellArg::Lstm => CellKind::Lstm,
            CellArg::Gru => CellKind::Gru,
            CellArg::Rnn => CellKind::RnnTanh,
        }
    }
}

impl From<CellArg> for CellFamily {
    fn from(c: CellArg) -> Self {
        match c {
            CellArg::Lstm => CellFamily::Lstm,
            CellArg::Gru => CellFamily::Gru,
            CellArg::Rnn => CellFamily::Rnn,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Nonlinearity {
    Tanh,
    Relu,
}

#[derive(clap::Args)]
struct IoArgs {
    /// A PyTorch state_dict saved with safetensors.torch.save_file.
    #[arg(long)]
    weights: PathBuf,
    /// input (T,B,I), optional h0 / c0 (L*D,B,H), lengths (int64, B); for grad also
    /// grad_output and optional grad_h_n / grad_c_n.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the results (safetensors).
    #[arg(long)]
    out: PathBuf,
    /// The cell; by default read from the weights' shapes (4*H rows lstm, 3*H gru, H rnn).
    #[arg(long, value_enum)]
    cell: Option<CellArg>,
    /// The RNN's nonlinearity (rnn only).
    #[arg(long, value_enum)]
    nonlinearity: Option<Nonlinearity>,
    /// Sequences as (B, T, F) instead of (T, B, F).
    #[arg(long)]
    batch_first: bool,
    /// Threads (default: all cores).
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// grad only: truncated BPTT in windows of K steps, the state carried across detached
    /// (parameter gradients summed over windows; equal lengths only).
    #[arg(long, value_name = "K")]
    tbptt: Option<usize>,
    /// grad only: recompute the gate activations in the backward instead of saving them (less
    /// memory for long sequences, about a third more time).
    #[arg(long)]
    recompute: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Infer,
    Train,
    /// Training with the gate activations recomputed in the backward (less memory).
    Recompute,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Table,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, value_enum)]
    cell: Option<CellArg>,
    #[arg(long)]
    seq: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    input: Option<usize>,
    #[arg(long)]
    hidden: Option<usize>,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    #[arg(long)]
    bidirectional: bool,
    /// Threads (default: all cores).
    #[arg(long, value_parser = parse_threads)]
    threads: Option<usize>,
    /// What to time; both when absent.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Seconds of timed runs per case (after one warm-up run).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Time the RNN (--cell, default lstm; width --hidden, default 512; --batch, default 8)
    /// beside causal self-attention of that width over the same steps (--seq, default 16, 64,
    /// 256, 1024 and 4096), inference, at 1 thread and at --threads: whole sequences, and one
    /// generated step (attention's step T over a KV cache of the steps before).
    #[arg(long)]
    contrast: bool,
    /// Attention heads for --contrast (dividing the width).
    #[arg(long, default_value_t = 8, requires = "contrast")]
    heads: usize,
}

/// The most threads `--threads` takes: far past any core count this is for, short of a
/// number that only exhausts the system.
const MAX_THREADS: usize = 1024;

fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of threads in 1..={MAX_THREADS}")),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn run_io(args: &IoArgs, grad: bool) -> Result<()> {
    if args.tbptt.is_some() && !grad {
        return Err(Error::new("--tbptt applies to recur grad only"));
    }
    if args.recompute && !grad {
        return Err(Error::new("--recompute applies to recur grad only"));
    }
    if args.recompute && args.tbptt.is_some() {
        return Err(Error::new(
            "--recompute and --tbptt together: choose one (a window is short already)",
        ));
    }
    // Before any work: where the results go (not over an input, a special file, or into a
    // folder that is not there).
    let out = output_path(&args.out, &[&args.weights, &args.input])?;
    let mut wfile = TensorFile::read(&args.weights)?;
    let relu = args.nonlinearity.map(|n| n == Nonlinearity::Relu);
    let params = state_dict::load(&mut wfile, args.cell.map(Into::into), relu)?;
    // `recur infer` packs the weights for the forward only.
    let model = match grad {
        true => Model::new(params)?,
        false => Model::for_inference(params)?,
    };
    let mut infile = TensorFile::read(&args.input)?;
    let (inputs, out_grads) = model.read_inputs(&mut infile, args.batch_first, grad)?;
    let pool = thread_pool(args.threads.unwrap_or_else(default_threads))?;
    let named = pool.install(|| -> Result<_> {
        match out_grads {
            Some(og) => {
                let (out, grads) = match args.tbptt {
                    Some(k) => model.grad_tbptt(&inputs, &og, k)?,
                    None => model.grad(&inputs, &og, args.recompute)?,
                };
                Ok(model.named_results(&inputs, out, Some(grads), args.batch_first))
            }
            None => {
                let out = model.infer(&inputs)?;
                Ok(model.named_results(&inputs, out, None, args.batch_first))
            }
        }
    })?;
    write_f32(&out, &named)
}

fn run_bench(args: &BenchArgs) -> Result<()> {
    let threads = args.threads.unwrap_or_else(default_threads);
    if !(args.seconds > 0.0 && args.seconds < 3600.0) {
        return Err(Error::new(format!(
            "--seconds {}, expected a duration in (0, 3600)",
            args.seconds
        )));
    }
    if args.contrast {
        return run_contrast_bench(args, threads);
    }
    let shape = [args.seq, args.batch, args.input, args.hidden];
    let cases = match (args.cell, shape) {
        (None, [None, None, None, None]) => reference_cases()
            .into_iter()
            .map(|c| BenchCase {
                desc: c.desc.layers(args.layers).bidirectional(args.bidirectional),
                ..c
            })
            .collect(),
        (Some(cell), [Some(seq), Some(batch), Some(input), Some(hidden)]) => {
            let desc = RnnDesc::new(cell.into(), input, hidden)
                .layers(args.layers)
                .bidirectional(args.bidirectional);
            desc.validate()?;
            if seq == 0 || batch == 0 {
                return Err(Error::new("--seq and --batch must be at least 1"));
            }
            vec![BenchCase { desc, seq, batch }]
        }
        _ => {
            return Err(Error::new(
                "give all of --cell, --seq, --batch, --input, --hidden, or none of them for \
                 the reference cases",
            ))
        }
    };
    let modes: &[BenchMode] = match args.mode {
        Some(ModeArg::Infer) => &[BenchMode::Infer],
        Some(ModeArg::Train) => &[BenchMode::Train],
        Some(ModeArg::Recompute) => &[BenchMode::Recompute],
        None => &[BenchMode::Infer, BenchMode::Train],
    };
    let budget = Duration::from_secs_f64(args.seconds);
    // A bad RECUR_ISA is reported before anything is printed.
    recur_kernels::Isa::detect()?;
    // The header with the first row, so that a case that cannot run (too large) leaves no
    // table behind, only its error.
    let mut header = args.format == Format::Table;
    for case in cases {
        for &mode in modes {
            let r = run_case(case, mode, threads, budget, 3)?;
            if std::mem::take(&mut header) {
                println!("{}", r.table_title());
                println!("{}", BenchResult::table_header());
            }
            match args.format {
                Format::Json => println!("{}", r.json()),
                Format::Table => println!("{}", r.table_row()),
            }
        }
    }
    Ok(())
}

fn run_contrast_bench(args: &BenchArgs, threads: usize) -> Result<()> {
    if args.input.is_some() || args.mode.is_some() || args.layers != 1 || args.bidirectional {
        return Err(Error::new(
            "--contrast times one-layer, one-direction inference of width --hidden: \
             --input, --mode, --layers and --bidirectional do not apply",
        ));
    }
    let cell = args.cell.unwrap_or(CellArg::Lstm).into();
    let (batch, width) = (args.batch.unwrap_or(8), args.hidden.unwrap_or(512));
    if batch == 0 || width == 0 || args.seq == Some(0) {
        return Err(Error::new("--seq, --batch and --hidden must be at least 1"));
    }
    if args.heads == 0 || !width.is_multiple_of(args.heads) {
        return Err(Error::new(format!(
            "--heads {} for width {width}, expected a number of heads >= 1 that divides it",
            args.heads
        )));
    }
    let steps = match args.seq {
        Some(t) => vec![t],
        None => CONTRAST_STEPS.to_vec(),
    };
    let mut counts = vec![1, threads];
    counts.dedup();
    recur_kernels::Isa::detect()?;
    let budget = Duration::from_secs_f64(args.seconds);
    let mut header = args.format == Format::Table;
    for &seq in &steps {
        for &n in &counts {
            let case = ContrastCase {
                cell,
                seq,
                batch,
                width,
                heads: args.heads,
            };
            let r = run_contrast(case, n, budget, 3)?;
            if std::mem::take(&mut header) {
                println!("{}", table_title(r.cpu, r.isa));
                println!("{}", ContrastResult::table_header());
            }
            match args.format {
                Format::Json => println!("{}", r.json()),
                Format::Table => println!("{}", r.table_row()),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `recur` (or subcommand-less call): the help, as a failure.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap's message in one line: what was wrong and what it takes (the missing
            // arguments, the possible values), without the usage that follows.
            let msg = e.to_string();
            let line = msg
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("{line} (see recur --help)");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Infer(a) => run_io(a, false),
        Command::Grad(a) => run_io(a, true),
        Command::Bench(a) => run_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
