#!/usr/bin/env bash
# egs/speechocean762: real read English speech (OpenSLR 101; 250 Mandarin-L1 speakers, half of
# them children; 16 kHz), with the corpus's own lexicon as a closed vocabulary.
#   ./run.sh --corpus-dir /corpora/speechocean762 [--config default] [--stage N] [--stop-stage M]
#   ./run.sh --corpus-dir downloads --download true          # fetch the OpenSLR 101 tarball (online)
# Stages: 0 data prep: data/<config>/{train,dev,test} (dev = --dev-speakers training speakers, half
#   children), lhotse manifests, the corpus lexicon, LM text = train transcripts only
#   1-7 and 8+: steps/recipe_stages.sh (speed perturbation, fbank, lang from the corpus lexicon,
#   3-gram LM with dev/test perplexity, TLG, train, decode, compare, the compression chain), then
#   WER by speaker group (children / adults) beside each total, and RESULTS.md for the default config
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

corpus_dir=""
download=false
dev_speakers=12   # training speakers held out as dev, half children
config=default; stage=0; stop_stage=100; nj=2; nproc=1; device=auto  # as in every recipe
data=""; exp=""; models=""  # defaults: data/<config>, exp/<config>, the config's 'models'
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --corpus-dir $corpus_dir --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"
conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
data=${data:-data/$config}; exp=${exp:-exp/$config}
mkdir -p $data/log

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.prep.done ]; then log "stage 0: data prep already complete in $data"
  else
    [ -n "$corpus_dir" ] || { echo "$0: stage 0 needs --corpus-dir" >&2; exit 1; }
    log "stage 0: speechocean762 data prep into $data (log: $data/log/data_prep.log)"
    extra=""; [ "$download" = true ] && extra="--download"
    python -m local.speechocean762.data_prep --corpus-dir $corpus_dir --dev-speakers $dev_speakers $extra \
      --log-file $data/log/data_prep.log $data
    touch $data/.prep.done
  fi
fi

if [ $stop_stage -ge 1 ]; then
  steps/recipe_stages.sh --conf $conf --data $data --exp $exp --train-set train --dev-set dev --test-sets test \
    --lexicon $data/local/lexicon.txt --models "$models" --stage $stage --stop-stage $stop_stage --nj $nj \
    --nproc $nproc --device $device --cmd "$decode_cmd"
fi

if [ $stop_stage -ge 7 ]; then  # every model dir so far: the baselines, then the chain's
  mdirs=$(for f in $exp/*/model.yaml; do [ -f "$f" ] && dirname $f; done)
  { echo "%WER by speaker group (children: younger than 16), TLG, with 95 % bootstrap intervals:"; echo
    asrcomp wer-by-group --data-dirs "$data/test $data/dev" $mdirs; } > $exp/.results_by_group.md
  mv $exp/.results_by_group.md $exp/results_by_group.md && cat $exp/results_by_group.md
fi

last=$((8 + $(asrcomp config-get --default "svd tt distill pack" $conf chain | wc -w)))
if [ $stage -le $last ] && [ $stop_stage -ge $last ] && [ "$config" = default ]; then
  steps/write_results.sh --title "egs/speechocean762 results" --notes $exp/results_by_group.md \
    --command "cd egs/speechocean762 && ./run.sh --corpus-dir DIR (stages 0-$last)" $exp .
fi

log "done"
