#!/usr/bin/env bash
# Side-by-side timing of recur, PyTorch and ONNX Runtime on the reference cases, at 1 and 2
# threads, in one run, then the README's markdown tables. Optional: never needed by the tests.
#
#   bash ../shared/anchors/setup.sh          # once: PyTorch + ONNX Runtime in /tmp/anchor-venv
#   bash benches/compare/run.sh [LOG]        # from the repository root
#   bash benches/compare/run.sh [LOG] extra  # shapes outside the reference table (peers.py);
#                                            # LOG defaults to target/compare-extra.log here
#   ROUNDS=3 bash benches/compare/run.sh     # the whole run 3 times over: the tables give the
#                                            # median time and the median of the speed-ups
#                                            # taken within each round, with their range
#
# Each thread count runs, one after the other: the FMA peak (benches/compare/peak_flops.c: AVX-512
# where the CPU has it, else AVX2; the anchor's peak_flops.c needs AVX-512), PyTorch
# (torch_rnn.py), ONNX Runtime (ort_rnn.py), then `recur bench`; the reference run also times
# each core's read of its share of the batch-1 case's W_hh from its L2 (benches/compare/l2_read.c),
# the bound table.py sets that case against. The machine is shared and noisy: read the ratios
# within one run.
#
# With `extra`, PyTorch and ONNX Runtime come from peers.py (same timing method as the anchors)
# and `recur bench` runs once per case (--seconds 1), on peers.py's extra cases: odd sizes,
# I != H, long T, small H. Knobs, all optional: CASES (peers.py --cases: extra, sweep, reference or
# CELL:T:B:I:H[:L][:bi],...; extra mode only; CASES=sweep: 16 shapes picked to probe
# for weak spots, never tuned to), THREADS (default "1 2"), ROUNDS (default 1), SKIP_BUILD=1 (use the built
# target/release/recur and target/peak_flops as they are).
set -euo pipefail
cd "$(dirname "$0")/../.."
anchors=${ANCHORS:-../shared/anchors}
py=${ANCHOR_VENV:-/tmp/anchor-venv}/bin/python
[ "${1:-}" = extra ] && [ $# -eq 1 ] && set -- target/compare-extra.log extra  # `run.sh extra`
log=${1:-target/compare.log}
what=${2:-reference}
case "$what" in reference|extra) ;; *) echo "usage: run.sh [LOG] [extra]" >&2; exit 2;; esac
mkdir -p "$(dirname "$log")"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --quiet
  gcc -O2 -fopenmp benches/compare/peak_flops.c -o target/peak_flops  # the widest ISA the CPU has
  gcc -O2 -fopenmp benches/compare/l2_read.c -o target/l2_read
fi
# W_hh of the batch-1 reference case (LSTM 100, 1, 256: 4 * 256 * 256 floats), in KiB.
whh_kib=1024
: > "$log"
for round in $(seq "${ROUNDS:-1}"); do
  [ "${ROUNDS:-1}" = 1 ] || echo "== round $round" >> "$log"
  for th in ${THREADS:-1 2}; do
    { echo "== peak $th"; OMP_NUM_THREADS=$th target/peak_flops; } >> "$log"
    if [ "$what" = reference ]; then
      { echo "== l2 $th"; OMP_NUM_THREADS=$th target/l2_read $((whh_kib / th)); } >> "$log"
      { echo "== torch $th"; "$py" "$anchors/torch_rnn.py" "$th" | grep -v -e sdpa -e sgemm; } >> "$log"
      { echo "== ort $th"; "$py" "$anchors/ort_rnn.py" "$th"; } >> "$log"
      { echo "== recur $th"; target/release/recur bench --threads "$th" --seconds 1.5; } >> "$log"
    else
      cases=${CASES:-extra}
      "$py" benches/compare/peers.py "$th" --cases "$cases" >> "$log"  # writes "== torch TH", "== ort TH"
      echo "== recur $th" >> "$log"
      "$py" benches/compare/peers.py --list --cases "$cases" | while read -r cell T B I H L D; do
        bi=(); [ "$D" = 2 ] && bi=(--bidirectional)
        target/release/recur bench --cell "$cell" --seq "$T" --batch "$B" --input "$I" --hidden "$H" \
          --layers "$L" "${bi[@]}" --threads "$th" --seconds 1 < /dev/null >> "$log"
      done
    fi
  done
done
"$py" benches/compare/table.py "$log" infer
"$py" benches/compare/table.py "$log" train
