#!/usr/bin/env bash
# Usage: steps/train_lm.sh [--order 3] [--vocab words.txt] [--ppl-text "FILE ..."] <text> <lm.arpa>
# n-gram ARPA LM with interpolated modified Kneser-Ney smoothing; perplexity and OOV rate of
# each --ppl-text file in <lm>.ppl.
set -euo pipefail
echo "$0 $*"
order=3; vocab=""; ppl_text=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 [options] <text> <lm.arpa>" >&2; exit 1; }
ppl_args=(); for t in $ppl_text; do ppl_args+=(--ppl-text "$t"); done
mkdir -p "$(dirname "$2")/log"
exec asrcomp --log-file "$(dirname "$2")/log/train_lm_$(basename "$2" .arpa).log" train-lm --order "$order" \
  ${vocab:+--vocab "$vocab"} "${ppl_args[@]}" "$1" "$2"
