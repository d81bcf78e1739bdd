#!/usr/bin/env bash
# Usage: steps/score.sh <data-dir> <decode-dir>   (scores <decode-dir>/hyp.txt against <data-dir>/text)
set -euo pipefail
echo "$0 $*"
. "$(dirname "$0")/parse_options.sh"
set -- "${args[@]}"
[ $# -eq 2 ] || { echo "usage: $0 <data-dir> <decode-dir>" >&2; exit 1; }
exec asrcomp --log-file "$2/log/score.log" score "$1/text" "$2/hyp.txt" "$2"
