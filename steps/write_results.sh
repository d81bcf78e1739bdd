#!/usr/bin/env bash
# Usage: steps/write_results.sh --title T --command C [--notes FILE] <exp-dir> <recipe-dir>
# <recipe-dir>/RESULTS.md (+ RESULTS.png): the table of every model of <exp-dir>
# (results_all.md, from the last chain stage) with how it was made; --notes: a markdown file
# appended under the table (e.g. results_by_group.md).
set -euo pipefail
echo "$0 $*"
title=""; command=""; notes=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] && [ -n "$title" ] && [ -n "$command" ] || {
  echo "usage: $0 --title T --command C [--notes FILE] <exp-dir> <recipe-dir>" >&2; exit 1; }
exp=$1; dir=$2
[ -f $exp/results_all.md ] || { echo "$0: $exp/results_all.md missing: run the chain's last stage" >&2; exit 1; }
cp $exp/results_all.png $dir/.RESULTS.png.tmp && mv $dir/.RESULTS.png.tmp $dir/RESULTS.png
{ echo "# $title"
  echo
  echo "Produced by \`$command\` on $(nproc) CPU cores, $(date +%F)."
  echo "WER in %, with its 95 % bootstrap interval; RTF on one thread (network + search)."
  echo "Rows: the baselines, then each compression stage applied to the row above it"
  echo "(\`_ctc\` / \`_scratch\`: the distillation student trained with CTC only, from its init / from scratch)."
  echo "bytes: final.pt, or model.acz for the packed model."
  echo
  cat $exp/results_all.md
  if [ -n "$notes" ]; then echo; cat $notes; fi
  echo
  echo "![WER against bytes](RESULTS.png)"
} > $dir/.RESULTS.md.tmp && mv $dir/.RESULTS.md.tmp $dir/RESULTS.md
