#!/usr/bin/env bash
# Usage: steps/perturb_data_dir_speed.sh [--factors "0.9 1.0 1.1"] <src-data-dir> <dst-data-dir>
# Kaldi's 3-way speed perturbation: one copy of the data dir per factor, ids prefixed sp<f>-,
# audio as sox 'speed' pipes in wav.scp (run steps/make_fbank.sh on the result).
set -euo pipefail
echo "$0 $*"
factors="0.9 1.0 1.1"
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 [--factors '0.9 1.0 1.1'] <src-data-dir> <dst-data-dir>" >&2; exit 1; }
logdir=$(dirname "$2")/log
mkdir -p "$logdir"
exec asrcomp --log-file "$logdir/perturb_speed_$(basename "$2").log" perturb-speed --factors "$factors" "$1" "$2"
