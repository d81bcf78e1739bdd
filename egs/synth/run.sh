#!/usr/bin/env bash
# egs/synth: the embedded synthetic corpus recipe.
#   ./run.sh [--config quick|default] [--stage N] [--stop-stage M] [--nj 2] [--data DIR]
# Stages (each skips outputs that are already complete):
#   0  synthesise the corpus: data/{train,dev,test}, lhotse manifests, LM text
# Stages 1+ are the shared steps/recipe_stages.sh:
#   1  fbank features + CMVN (and, if the config lists speed_perturb factors, data/train_sp:
#      Kaldi's speed-perturbed copies of train, on which stage 5 trains the baselines)
#   2  lang dir (lexicon, tokens, L_disambig.fst); each set's OOV rate
#   3  3-gram LM (ARPA) and its perplexity on dev and test
#   4  decoding graph TLG.fst
#   5  train the baseline acoustic models (TDNN, DNN) with CTC
#   6  decode dev and test with TLG and greedy, score WER, measure RTF
#   7  baseline comparison table (exp/<config>/results.md)
#   8+ the compression chain, one stage per entry of the config's 'chain' (default: svd tt
#      distill pack), each reading the previous entry's model dir (the first reads the
#      'compress.base' baseline), then decoding and scoring it:
#        svd      steps/compress_svd.sh   SVD of the output layer + fine-tuning
#        tt       steps/compress_tt.sh    TT / Tucker / CP of the hidden layers + fine-tuning
#        distill  steps/distill.sh        the previous model as student of the baseline teacher;
#                                         also the same student with CTC only, and from scratch
#        pack     steps/pack.sh           pruning, k-means weight sharing, Huffman: model.acz
#   last: the table of every model and a WER-vs-bytes plot (RESULTS.md for the default config)
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

config=default
stage=0
stop_stage=100
nj=2
data=""   # default: data/<config>
exp=""    # default: exp/<config>
models="" # default: the config's 'models' list
nproc=1   # training processes (torchrun DDP when > 1)
device=auto
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"

conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
get() { asrcomp config-get "$conf" "$1"; }
get_or() { asrcomp config-get --default "$2" "$conf" "$1"; }
data=${data:-data/$config}
exp=${exp:-exp/$config}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.corpus.done ] && [ "$(get corpus)" = "$(cat $data/.corpus.done)" ]; then
    log "stage 0: corpus already complete in $data"
  else
    log "stage 0: synthesising the corpus into $data"
    mkdir -p $data/log
    python -m local.synth.make_corpus --config $conf --nj $nj --log-file $data/log/make_corpus.log $data
    get corpus > $data/.corpus.done  # the corpus section it was made from
  fi
fi

# Stages 1-7 (speed perturbation, fbank, lang, LM, graph, train, decode, compare) and 8+ (the
# config's compression chain, then exp/<config>/results_all.{md,png}): steps/recipe_stages.sh.
if [ $stop_stage -ge 1 ]; then
  steps/recipe_stages.sh --conf $conf --data $data --exp $exp --train-set train --dev-set dev --test-sets test \
    --models "$models" --stage $stage --stop-stage $stop_stage --nj $nj --nproc $nproc --device $device \
    --cmd "$decode_cmd"
fi

last=$((8 + $(get_or chain "svd tt distill pack" | wc -w)))
if [ $stage -le $last ] && [ $stop_stage -ge $last ] && [ "$config" = default ]; then
  cmdline="cd egs/synth && ./run.sh --config default${models:+ --models '$models'}"
  steps/write_results.sh --title "egs/synth results" --command "$cmdline (stages 0-$last)" $exp .
fi

log "done"
