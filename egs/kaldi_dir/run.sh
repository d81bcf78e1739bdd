#!/usr/bin/env bash
# egs/kaldi_dir: any existing Kaldi data dirs (wav.scp, text, utt2spk) + a text corpus for the LM.
#   ./run.sh --train /kaldi/data/train --dev /kaldi/data/dev --test "/kaldi/data/test ..." [--lm-text corpus.txt]
#            [--lexicon lexicon.txt]
# Zero code to port a corpus Kaldi already prepares. Set names are the source dirs' basenames.
# Stages: 0 import (validate, copy, utt2dur, lhotse manifests, LM text = --lm-text + train transcripts)
#   1-7 and 8+: steps/recipe_stages.sh (fbank, lang from --lexicon and CMUdict, n-gram LM, TLG graph,
#   train with OOVs read as <UNK>, decode, compare, the compression chain)
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

train=""; dev=""; test=""   # source Kaldi data dirs (test: one or more, space-separated)
lm_text=""                  # optional text corpus for the LM (one sentence per line, .gz too)
lexicon=""                  # optional Kaldi lexicon.txt (CMUdict fills the words it lacks)
config=default; stage=0; stop_stage=100; nj=2; nproc=1; device=auto  # as in every recipe
data=""; exp=""; models=""  # defaults: data/<config>, exp/<config>, the config's 'models'
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --train $train --dev $dev --test \"$test\"${lm_text:+ --lm-text $lm_text}${lexicon:+ --lexicon $lexicon} --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"
conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
data=${data:-data/$config}; exp=${exp:-exp/$config}
mkdir -p $data/log
train_set=$(basename "${train:-train}"); dev_set=$(basename "${dev:-dev}")
test_sets=""; for t in ${test:-test}; do test_sets="$test_sets $(basename $t)"; done

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  [ -n "$train" ] && [ -n "$dev" ] && [ -n "$test" ] || { echo "$0: stage 0 needs --train, --dev and --test" >&2; exit 1; }
  for src in $train $dev $test; do
    s=$(basename $src)
    if [ -f $data/$s/utt2dur ] && [ $data/$s/utt2dur -nt $src/wav.scp ]; then log "stage 0: $s already imported"; continue; fi
    log "stage 0: importing $src as $data/$s"
    python -m local.kaldi_dir.import_dir --name $s --log-file $data/log/import_$s.log $src $data
  done
  log "stage 0: LM text and word list"
  python -m local.kaldi_dir.import_dir ${lm_text:+--lm-text $lm_text} --vocab-from $data/$train_set \
    --log-file $data/log/lm_text.log $data
fi

# Stages 1-7 (fbank, lang, LM, graph, train, decode, compare) and 8+ (the config's compression
# chain, then exp/<config>/results_all.{md,png}): steps/recipe_stages.sh.
if [ $stop_stage -ge 1 ]; then
  steps/recipe_stages.sh --conf $conf --data $data --exp $exp --train-set $train_set --dev-set $dev_set \
    --test-sets "$test_sets" ${lexicon:+--lexicon "$(realpath "$lexicon")"} --models "$models" --stage $stage --stop-stage $stop_stage --nj $nj \
    --nproc $nproc --device $device --cmd "$decode_cmd"
fi

log "done"
