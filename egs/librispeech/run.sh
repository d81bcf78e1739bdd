#!/usr/bin/env bash
# egs/librispeech: LibriSpeech through lhotse's recipe.
#   ./run.sh --corpus-dir /corpora/LibriSpeech [--parts train-clean-100,dev-clean,test-clean] [--lm-text librispeech-lm-norm.txt.gz]
#   ./run.sh --corpus-dir downloads --download true --mini true      # mini_librispeech, online
# Stages: 0 data prep (Kaldi dirs + lhotse manifests + LM text)  1 fbank  2 lang  3 n-gram LM  4 TLG graph
#   5 train  6 decode  7 compare  8+ compression chain (config 'chain', 'compress:')
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

corpus_dir=""
parts=train-clean-100,dev-clean,test-clean
train_part=train-clean-100
dev_part=dev-clean
test_parts=test-clean
lm_text=""
download=false
mini=false
config=default; stage=0; stop_stage=100; nj=2; nproc=1; device=auto  # as in every recipe
data=""; exp=""; models=""  # defaults: data/<config>, exp/<config>, the config's 'models'
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --corpus-dir $corpus_dir --parts $parts --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"
conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
data=${data:-data/$config}; exp=${exp:-exp/$config}
mkdir -p $data/log
train_set=${train_part//-/_}; dev_set=${dev_part//-/_}
test_sets=""; for t in ${test_parts//,/ }; do test_sets="$test_sets ${t//-/_}"; done

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.prep.done ]; then log "stage 0: data prep already complete in $data"
  else
    [ -n "$corpus_dir" ] || { echo "$0: stage 0 needs --corpus-dir" >&2; exit 1; }
    log "stage 0: LibriSpeech data prep into $data (log: $data/log/data_prep.log)"
    extra=""; [ "$download" = true ] && extra="--download"; [ "$mini" = true ] && extra="$extra --mini"
    python -m local.librispeech.data_prep --corpus-dir $corpus_dir --parts $parts --train-parts $train_part \
      ${lm_text:+--lm-text $lm_text} $extra --log-file $data/log/data_prep.log $data
    touch $data/.prep.done
  fi
fi

# Stages 1-7 (fbank, lang, LM, graph, train, decode, compare) and 8+ (the config's compression
# chain, then exp/<config>/results_all.{md,png}): steps/recipe_stages.sh.
if [ $stop_stage -ge 1 ]; then
  steps/recipe_stages.sh --conf $conf --data $data --exp $exp --train-set $train_set --dev-set $dev_set \
    --test-sets "$test_sets" --models "$models" --stage $stage --stop-stage $stop_stage --nj $nj \
    --nproc $nproc --device $device --cmd "$decode_cmd"
fi

log "done"
