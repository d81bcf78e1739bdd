# Kaldi-style option parsing: "--some-opt value" sets shell variable some_opt,
# which must already exist (so typos fail loudly). Source after defaults.
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) echo "$0: see the variables at the top of the script for options"; exit 0 ;;
    --*=*) name=${1%%=*}; name=${name#--}; name=${name//-/_}; value=${1#*=}; shift ;;
    --*) name=${1#--}; name=${name//-/_}; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
         value=$2; shift 2 ;;
    *) break ;;
  esac
  if [ -z "${!name+x}" ]; then echo "$0: unknown option --${name//_/-}" >&2; exit 1; fi
  printf -v "$name" '%s' "$value"
done
args=("$@")
