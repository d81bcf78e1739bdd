#!/usr/bin/env bash
# Usage: local/wsj/make_lms.sh --conf <conf.yaml> --data <data dir> --lang <lang dir>
# egs/wsj stage 3: <data>/lm/tgpr.arpa (IRSTLM prune-lm --threshold=<lm.prune_threshold> of
# <data>/local/nist_lm/lm_tg.arpa, as Kaldi's wsj_data_prep.sh) and, when the config's lm.bd is true
# and <data>/local/local_lm/lm_text.txt is not empty, <data>/lm/bd_tgpr.arpa (trigram on the WSJ LM
# text, pruned the same way). Each is skipped when it exists; logs in <data>/lm/log/.
# The work is local/wsj/make_lms.py.
set -euo pipefail
echo "$0 $*"
conf=""; data=""; lang=""
. "$(dirname "$0")/../../steps/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 0 ] && [ -n "$conf" ] && [ -n "$data" ] && [ -n "$lang" ] || {
  echo "usage: $0 --conf <conf.yaml> --data <data dir> --lang <lang dir>" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python -m local.wsj.make_lms --conf "$conf" --data "$data" --lang "$lang"
