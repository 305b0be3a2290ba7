#!/usr/bin/env bash
# Side-by-side timing of recur, PyTorch and ONNX Runtime on the reference cases, at 1 and 2
# threads, in one run, then the README's markdown tables. Optional: never needed by the tests.
#
#   bash ../shared/anchors/setup.sh          # once: PyTorch + ONNX Runtime in /tmp/anchor-venv
#   bash benches/compare/run.sh [LOG]        # from the repository root
#
# Each thread count runs, one after the other: the FMA peak (peak_flops.c), PyTorch
# (torch_rnn.py), ONNX Runtime (ort_rnn.py), then `recur bench`. The machine is shared and
# noisy: read the ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
anchors=${ANCHORS:-../shared/anchors}
py=${ANCHOR_VENV:-/tmp/anchor-venv}/bin/python
log=${1:-target/compare.log}
mkdir -p "$(dirname "$log")"
cargo build --release --quiet
gcc -O2 -mavx512f -mfma -fopenmp "$anchors/peak_flops.c" -o target/peak_flops
: > "$log"
for th in 1 2; do
  { echo "== peak $th"; OMP_NUM_THREADS=$th target/peak_flops; } >> "$log"
  { echo "== torch $th"; "$py" "$anchors/torch_rnn.py" "$th" | grep -v -e sdpa -e sgemm; } >> "$log"
  { echo "== ort $th"; "$py" "$anchors/ort_rnn.py" "$th"; } >> "$log"
  { echo "== recur $th"; target/release/recur bench --threads "$th" --seconds 1.5; } >> "$log"
done
"$py" benches/compare/table.py "$log" infer
"$py" benches/compare/table.py "$log" train
