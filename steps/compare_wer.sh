#!/usr/bin/env bash
# Usage: steps/compare_wer.sh [--sets test,dev] [--out table.md] <model-dir>...
# One row per model dir: params, bytes of final.pt, MFLOPs/s of audio, RTF, WER (TLG and greedy).
set -euo pipefail
sets=test; out=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -ge 1 ] || { echo "usage: $0 [options] <model-dir>..." >&2; exit 1; }
exec asrcomp compare --sets "$sets" ${out:+--out "$out"} "$@"
