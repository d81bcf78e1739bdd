#!/usr/bin/env bash
# Usage: steps/make_graph.sh <lang-dir> <lm.arpa> <graph-dir>
# G.fst (kaldilm) and TLG.fst = CTC topo o L o G (kaldifst), determinised, minimised, arc-sorted.
set -euo pipefail
echo "$0 $*"
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 3 ] || { echo "usage: $0 <lang-dir> <lm.arpa> <graph-dir>" >&2; exit 1; }
mkdir -p "$(dirname "$3")/log"
exec asrcomp --log-file "$(dirname "$3")/log/make_graph_$(basename "$3").log" make-graph "$1" "$2" "$3"
