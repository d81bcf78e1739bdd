#!/usr/bin/env bash
# egs/wsj: Wall Street Journal from the LDC discs, WSJ0 (LDC93S6B) + WSJ1 (LDC94S13B).
#   ./run.sh --wsj0 /corpora/LDC93S6B --wsj1 /corpora/LDC94S13B [--config default] [--stage N] [--stop-stage M]
# Sets, ids, transcripts, dictionary and LMs as in Kaldi's egs/wsj/s5, so WERs line up with
# Kaldi's tables (egs/wsj/RESULTS.md).
# Stage 0 (local/wsj/data_prep.py): data/{train_si84,train_si284,test_eval92,test_eval93,test_dev93},
#   lhotse manifests, data/local/dict/lexicon.txt (Kaldi's wsj_prepare_dict.sh), data/local/nist_lm/
#   lm_{bg,tg}.arpa, the WSJ LM text; counts and OOV reports.
# Stages 1+ are steps/recipe_stages.sh: fbank; the lang dir from data/local/dict/lexicon.txt; LMs by
#   local/wsj/make_lms.sh (tgpr = lm_tg pruned at lm.prune_threshold as Kaldi's prune-lm; bd_tgpr =
#   a trigram on the WSJ LM text, pruned alike, when lm.bd); a graph per LM (<lang>_tgpr,
#   <lang>_bd_tgpr); train on train_si284 validated on test_dev93 (its OOVs read as <UNK>); decode
#   test_dev93 and test_eval92 against their original transcripts; the comparison table; 8+ the
#   compression chain (config 'chain' and 'compress:'), decoded with the first graph.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh

wsj0=""   # LDC93S6B: the directory holding 11-1.1 ... 11-13.1
wsj1=""   # LDC94S13B: the directory holding 13-1.1 ... 13-34.1
strict_counts=false  # true: fail when a set's utterance count differs from Kaldi's
config=default; stage=0; stop_stage=100; nj=2; nproc=1; device=auto  # as in every recipe
data=""; exp=""; models=""  # defaults: data/<config>, exp/<config>, the config's 'models'
. steps/parse_options.sh

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*"; }
echo "$0 --wsj0 $wsj0 --wsj1 $wsj1 --config $config --stage $stage --stop-stage $stop_stage --nj $nj${data:+ --data $data}"
conf=conf/$config.yaml
[ -f "$conf" ] || { echo "no config $conf (choose one of: $(ls conf | sed 's/.yaml//' | xargs))" >&2; exit 1; }
data=${data:-data/$config}; exp=${exp:-exp/$config}
mkdir -p $data/log

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ -f $data/.prep.done ]; then
    log "stage 0: data prep already complete in $data"
  else
    [ -n "$wsj0" ] && [ -n "$wsj1" ] || { echo "$0: stage 0 needs --wsj0 DIR --wsj1 DIR" >&2; exit 1; }
    log "stage 0: WSJ data prep into $data (log: $data/log/data_prep.log)"
    extra=""; [ "$strict_counts" = true ] && extra=--strict-counts
    python -m local.wsj.data_prep --wsj0 "$wsj0" --wsj1 "$wsj1" $extra --log-file $data/log/data_prep.log $data
    # text for BPE pieces: the WSJ LM text when the discs have it, else the training transcripts
    if [ -s $data/local/local_lm/lm_text.txt ]; then cp $data/local/local_lm/lm_text.txt $data/local/lm_text.txt
    else cut -d' ' -f2- $data/train_si284/text > $data/local/lm_text.txt; fi
    cat $data/local/wsj/counts.txt $data/local/wsj/oov_rates.txt
    touch $data/.prep.done
  fi
fi

lms=""
[ -f $data/local/nist_lm/lm_tg.arpa ] && lms="tgpr"
case "$(asrcomp config-get --default false $conf lm.bd)" in
  True|true) [ -s $data/local/local_lm/lm_text.txt ] && lms="$lms bd_tgpr" ;;
esac

if [ $stop_stage -ge 1 ]; then
  [ -n "$lms" ] || { echo "$0: no LM: $data/local/nist_lm/lm_tg.arpa missing (disc 13-32.1)" >&2; exit 1; }
  steps/recipe_stages.sh --conf $conf --data $data --exp $exp --train-set train_si284 --dev-set test_dev93 \
    --test-sets test_eval92 --lexicon $data/local/dict/lexicon.txt --lms "$lms" --lm-cmd local/wsj/make_lms.sh \
    --models "$models" --stage $stage --stop-stage $stop_stage --nj $nj --nproc $nproc --device $device \
    --cmd "$decode_cmd"
fi

log "done"
