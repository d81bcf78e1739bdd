# Sourced by run.sh and steps/*.sh: the project's venv and package on PATH.
ASRCOMP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ASRCOMP_ROOT
export PATH="$ASRCOMP_ROOT/.venv/bin:$ASRCOMP_ROOT/steps:$PATH"
export PYTHONPATH="$ASRCOMP_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
