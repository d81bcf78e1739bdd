#!/usr/bin/env bash
# Usage: steps/make_fbank.sh [--nj N] [--conf conf/fbank.yaml] [--cmvn speaker|global|none] <data-dir> <fbank-dir>
# 80-dim log-mel fbank (kaldi-native-fbank), kaldiio ark/scp, CMVN stats.
set -euo pipefail
echo "$0 $*"
nj=2; conf=""; cmvn=""
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 [options] <data-dir> <fbank-dir>" >&2; exit 1; }
data=$1; fbankdir=$2; name=$(basename "$data")
mkdir -p "$fbankdir/log"
exec asrcomp --log-file "$fbankdir/log/make_fbank_$name.log" make-fbank --nj "$nj" \
  ${conf:+--conf "$conf"} ${cmvn:+--cmvn "$cmvn"} "$data" "$fbankdir"
