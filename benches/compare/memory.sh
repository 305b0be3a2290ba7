#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time) of one training step, recur beside PyTorch, on the
# reference cases. Optional: never needed by the tests; needs ../shared/anchors/setup.sh once.
#
#   bash benches/compare/memory.sh        # from the repository root
#
# recur: the whole `recur bench --mode train` process (weights, packed weights, workspace,
# outputs, gradients), and the same with `--mode recompute` (Mode::TrainingRecompute: gate
# activations recomputed in the backward instead of saved). PyTorch: the process of memory_torch.py, and of the same script with
# `setup` (Python, the torch library, the model and the input): the difference is what the
# training step itself takes.
#
# Like for like: "recur step" is recur's process less its own baseline (the same binary on a
# 1-step, 1-unit case: code, libraries, thread pool) and less the weights and the input, which
# PyTorch's baseline holds too; so both step figures count what training adds: packed or
# reordered weights, workspace, saved activations, output, output gradient and gradients.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${ANCHOR_VENV:-/tmp/anchor-venv}/bin/python
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
# PyTorch's process moves by up to 10 MiB from run to run (the library's lazily loaded pages):
# the median of 3.
rss3() { for _ in 1 2 3; do rss "$@"; done | sort -n | sed -n 2p; }
mib() { echo "scale=1; $1 / 1024" | bc; }
base=$(rss target/release/recur bench --cell lstm --seq 1 --batch 1 --input 1 --hidden 1 \
      --threads 1 --mode train --seconds 0.01)
echo "recur baseline (1-step, 1-unit process): $(mib "$base") MiB"
echo
echo "| case (T, B, I=H) | recur MiB | recur step MiB | recur recompute step MiB | PyTorch MiB | PyTorch baseline MiB | PyTorch step MiB |"
echo "|---|---|---|---|---|---|---|"
for c in "lstm 100 1 256" "lstm 100 16 512" "lstm 100 64 512" "lstm 50 64 1024" \
         "gru 100 16 512" "gru 100 64 512" "rnn 100 64 512"; do
  set -- $c
  r=$(rss target/release/recur bench --cell "$1" --seq "$2" --batch "$3" --input "$4" \
      --hidden "$4" --threads 1 --mode train --seconds 0.01)
  q=$(rss target/release/recur bench --cell "$1" --seq "$2" --batch "$3" --input "$4" \
      --hidden "$4" --threads 1 --mode recompute --seconds 0.01)
  t=$(rss3 "$py" benches/compare/memory_torch.py "$1" "$2" "$3" "$4" "$4" train)
  s=$(rss3 "$py" benches/compare/memory_torch.py "$1" "$2" "$3" "$4" "$4" setup)
  gates=$(case "$1" in lstm) echo 4 ;; gru) echo 3 ;; *) echo 1 ;; esac)
  # KiB of f32: W_ih, W_hh and both biases; the input sequence.
  own=$(( (gates * $4 * ($4 + $4) + 2 * gates * $4 + $2 * $3 * $4) * 4 / 1024 ))
  echo "| ${1^^} $2, $3, $4 | $(mib "$r") | $(mib $((r - base - own))) | $(mib $((q - base - own))) |" \
       "$(mib "$t") | $(mib "$s") | $(mib $((t - s))) |"
done
