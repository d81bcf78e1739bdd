"""The ``asrcomp`` command: one subcommand per recipe job, called by ``steps/*.sh``.

Every subcommand echoes its command line to the log first (as Kaldi scripts do)
and, with ``--log-file FILE``, also logs to that file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from asrcomp.onnx_cli import add_commands as add_onnx_commands
from asrcomp.utils import InputError, atomic_open, run_command, setup_logging

# lazy: every _cmd_* handler imports the modules its subcommand needs inside itself, so that
# `asrcomp --help` and the light subcommands start without loading torch, lhotse or k2 packages.

log = logging.getLogger("asrcomp")


def _cmd_make_fbank(a):
    import yaml

    from asrcomp.features import FbankConfig, make_fbank

    opts = yaml.safe_load(Path(a.conf).read_text()) if a.conf else {}
    opts = (opts or {}).get("fbank", opts or {})
    if a.cmvn:
        opts["cmvn"] = a.cmvn
    make_fbank(a.data_dir, a.feat_dir, FbankConfig.from_dict(opts, where=a.conf or "--cmvn"), nj=a.nj)


def _cmd_perturb_speed(a):
    from asrcomp.perturb import perturb_data_dir_speed

    try:
        d = perturb_data_dir_speed(a.src_dir, a.dst_dir, [float(f) for f in a.factors.replace(",", " ").split()])
    except ValueError as e:  # a factor that is no number, not positive, or repeated
        raise InputError("--factors", f"{a.factors!r}: {e}",
                         fix="distinct positive speeds, e.g. '0.9 1.0 1.1' (a recipe's speed_perturb)") from e
    log.info("%s: %d utterances, %d speakers (speeds %s)", a.dst_dir, len(d.utts), len(d.spk2utt), a.factors)


def _cmd_subset_data_dir(a):
    from asrcomp.subset import subset_data_dir

    r = subset_data_dir(a.src_dir, a.out_dir, spk_list=a.spk_list, utt_list=a.utt_list,
                        speakers_fraction=a.speakers_fraction, seed=a.seed, spk2group=a.spk2group)
    print(r.text, end="")


def _cmd_prepare_lang(a):
    from asrcomp.lang import prepare_lang

    words = []
    for p in a.word_source:
        words.extend(_words_of(Path(p)))
    prepare_lang(words, a.lang_dir, a.token_type, a.bpe_vocab_size, a.bpe_text, a.lexicon, a.keep_stress)


def _cmd_train_lm(a):
    from asrcomp.lm import train_lm_from_text

    lm = train_lm_from_text(a.text, a.arpa, order=a.order, vocab_path=a.vocab)
    if a.ppl_text:
        from asrcomp.lm import read_sentences

        report = ""
        for text in a.ppl_text:  # SRILM's ngram -ppl lines, one block per file
            r = lm.perplexity(read_sentences(text))
            log.info("perplexity on %s: %.2f (%d sentences, %d words, %d OOVs, OOV rate %.2f%%)", text, r["ppl"],
                     r["sentences"], r["words"], r["oovs"], 100.0 * r["oovs"] / max(r["words"], 1))
            report += (f"file {text}: {r['sentences']} sentences, {r['words']} words, {r['oovs']} OOVs\n"
                       f"logprob= {r['log10prob']:.2f} ppl= {r['ppl']:.2f}\n")
        with atomic_open(Path(a.arpa).with_suffix(".ppl"), "w") as f:
            f.write(report)


def _cmd_make_graph(a):
    from asrcomp.graph import make_graph

    make_graph(a.lang_dir, a.arpa, a.graph_dir)


def _cmd_score(a):
    from asrcomp.score import read_text, write_scoring

    stats = write_scoring(a.decode_dir, read_text(a.ref), read_text(a.hyp, allow_empty=True))
    print(stats.kaldi_line())


def _cmd_validate_data_dir(a):
    from asrcomp.datadir import read_data_dir
    from asrcomp.lang import load_lang

    d = read_data_dir(a.data_dir, need_features=a.need_features)
    oov_note = ""
    if a.lang_dir:
        # words outside the lexicon are not an error: training reads them as <UNK>, scoring counts them
        oov = load_lang(a.lang_dir).count_oov(d.text.values())
        n = sum(len(t.split()) for t in d.text.values())
        oov_note = (f", OOV rate {100.0 * sum(oov.values()) / max(n, 1):.2f}% ({sum(oov.values())} of {n} words, "
                    f"{len(oov)} types{': ' + ' '.join(w for w, _ in oov.most_common(10)) if oov else ''})")
    print(f"{a.data_dir}: {len(d.utts)} utterances, {len(d.spk2utt)} speakers{oov_note}: OK")


def _cmd_train(a):
    import yaml

    from asrcomp.train import train

    models = ((yaml.safe_load(Path(a.conf).read_text()) if a.conf else None) or {}).get("model", {})
    arch = {}
    if a.arch:
        if a.arch not in models:
            raise InputError(a.conf, f"no model '{a.arch}' under 'model:'", fix=f"one of {sorted(models)}")
        arch = dict(models[a.arch])
    cfg, _ = _train_config(a, **(arch.pop("train", None) or {}))  # per-model training overrides
    cfg.arch = arch or cfg.arch
    if not cfg.arch:
        raise InputError(a.conf or "train", "no model architecture given", fix="pass --arch tdnn|dnn with --conf")
    train(a.exp_dir, a.train_dir, a.valid_dir, a.lang_dir, cfg)


def _train_config(a, **overrides):
    """TrainConfig from the recipe YAML's ``train:`` section, then ``overrides`` (not None), then ``--set``."""
    import yaml

    from asrcomp.train import TrainConfig

    conf = (yaml.safe_load(Path(a.conf).read_text()) if a.conf else None) or {}
    opts = dict(conf.get("train", {}))
    opts.update({k: v for k, v in overrides.items() if v is not None})
    for kv in getattr(a, "set", None) or []:
        k, _, v = kv.partition("=")
        opts[k] = yaml.safe_load(v)
    if getattr(a, "device", None):
        opts["device"] = a.device
    if getattr(a, "start_epoch", None) is not None:
        opts["start_epoch"] = a.start_epoch
    return TrainConfig.from_dict(opts, where=a.conf or "--set"), conf


def _add_start_epoch(s, note: str = "") -> None:
    s.add_argument("--start-epoch", type=int, metavar="N",
                   help="begin at epoch N from epoch-(N-1).pt: its run resumed if it was made under this "
                        "configuration, else a new run from its weights; 1: a new run (the old checkpoints "
                        "deleted). Default: resume the last checkpoint, refusing one made under another "
                        "configuration" + note)


def _finetune_config(a):
    cfg, _ = _train_config(a, epochs=a.epochs, lr=a.lr, warmup_steps=a.warmup_steps)
    if cfg.avg > max(cfg.epochs, 1):
        cfg.avg = max(cfg.epochs, 1)
    return cfg


def _cmd_compress(a):
    from functools import partial

    from asrcomp.compress.stage import apply_svd, apply_tensorization, compress_model_dir, parse_ranks

    if a.kind == "svd":
        if (a.rank is None) == (a.energy_threshold is None):
            raise InputError("asrcomp compress svd", "give exactly one of --rank and --energy-threshold",
                             fix="e.g. --rank 16 or --energy-threshold 0.9")
        transform = partial(apply_svd, layers=a.layers or "output", rank=a.rank,
                            energy_threshold=a.energy_threshold, shrinkage_threshold=a.shrinkage_threshold)
        record = {"stage": "svd", "rank": a.rank, "energy_threshold": a.energy_threshold,
                  "shrinkage_threshold": a.shrinkage_threshold}
    else:
        try:
            ranks = parse_ranks(a.ranks)
        except ValueError as e:
            raise InputError("--ranks", str(e), fix="e.g. --ranks 16 or --ranks 16:24") from e
        transform = partial(apply_tensorization, method=a.method, layers=a.layers or r"layers\.\d+\.(conv|linear)",
                            modes=a.modes, shapes=a.shapes, ranks=ranks, rel_error=a.rel_error,
                            shrinkage_threshold=a.shrinkage_threshold)
        record = {"stage": a.method, "modes": a.modes, "shapes": a.shapes, "ranks": a.ranks,
                  "rel_error_target": a.rel_error}
    cfg = _finetune_config(a)
    compress_model_dir(a.src_dir, a.out_dir, transform, record, a.train_dir, a.valid_dir, a.lang_dir, cfg,
                       checkpoint=a.from_checkpoint)


def _cmd_distill(a):
    import torch

    from asrcomp.compress.distill import distill
    from asrcomp.features import load_fbank_config
    from asrcomp.lang import load_lang
    from asrcomp.modeldir import load_model_dir
    from asrcomp.nnet import build_model

    cfg, conf = _train_config(a, epochs=a.epochs, lr=a.lr)
    history = None
    if a.student_dir and a.from_scratch:  # the student dir's architecture, freshly initialised
        from asrcomp.modeldir import read_model_yaml

        torch.manual_seed(cfg.seed)
        student = build_model(read_model_yaml(a.student_dir)["arch"])
    elif a.student_dir:
        student, meta = load_model_dir(a.student_dir)
        history = meta.get("history")
    else:
        models = conf.get("model", {})
        if a.arch not in models:
            raise InputError(a.conf or "--arch", f"no student architecture '{a.arch}' under 'model:'",
                             fix=f"one of {sorted(models)}, or --student-dir")
        arch = {k: v for k, v in models[a.arch].items() if k != "train"}
        torch.manual_seed(cfg.seed)
        student = build_model(dict(arch, feat_dim=load_fbank_config(a.train_dir).num_mel_bins,
                                   num_tokens=load_lang(a.lang_dir).num_tokens))
    distill(a.out_dir, a.teacher, student, a.train_dir, a.valid_dir, a.lang_dir, cfg, alpha=a.alpha,
            temperature=a.temperature, hint_layer=a.hint_layer, teacher_hint_layer=a.teacher_hint_layer,
            hint_weight=a.hint_weight, history=history)


def _cmd_sweep_plot(a):
    from asrcomp.compare import sweep_plot

    sweep_plot(a.model_dirs, a.set, a.out)


def _cmd_pack(a):
    from asrcomp.compress.pack import build_configs, pack

    flags = dict(bits=a.bits, bits_output=a.bits_output, prune_sparsity=a.prune_sparsity,
                 prune_epochs=a.prune_epochs, finetune_epochs=a.finetune_epochs, lr=a.lr, index_bits=a.index_bits,
                 coder=a.coder, prune_schedule=a.prune_schedule, prune_initial_sparsity=a.prune_initial_sparsity,
                 prune_ramp_epochs=a.prune_ramp_epochs, prune_every=a.prune_every, target_bytes=a.target_bytes,
                 bits_choices=a.bits_choices, sensitivity_batches=a.sensitivity_batches, seed=a.seed,
                 fold_bn=a.fold_bn, small_bits=a.small_bits, quantizer=a.quantizer,
                 allocation=a.allocation, distill_alpha=a.distill_alpha, distill_temperature=a.distill_temperature,
                 teacher=a.teacher, finetune_mode=a.finetune_mode)
    pcfg, tcfg = build_configs(a.conf, flags, (a.set or []) + ([f"device={a.device}"] if a.device else [])
                               + ([f"start_epoch={a.start_epoch}"] if a.start_epoch is not None else []))
    pack(a.src_dir, a.out_dir, pcfg, tcfg, a.train_dir, a.valid_dir, a.lang_dir)


def _cmd_unpack(a):
    from asrcomp.compress.pack import unpack

    unpack(a.packed, a.out_dir)


def _cmd_peer(a):
    from asrcomp.compress.peers import make_peer

    make_peer(a.src_dir, a.out_dir, a.kind, a.zstd_level)


def _cmd_quantize(a):
    from asrcomp.compress.quant import quantize_model_dir

    cfg = None
    if a.epochs:  # STE fine-tuning; as pack, at a tenth of the training learning rate unless --lr
        cfg = _finetune_config(a)
        cfg.lr = a.lr if a.lr is not None else cfg.lr / 10
    quantize_model_dir(a.src_dir, a.out_dir, a.bits, keep=a.keep, epochs=a.epochs or 0, tcfg=cfg,
                       train_dir=a.train_dir, valid_dir=a.valid_dir, lang_dir=a.lang_dir, level=a.zstd_level)


def _cmd_recompute_bn(a):
    from asrcomp.train import recompute_bn_model_dir

    recompute_bn_model_dir(a.src_dir, a.out_dir, a.train_dir, a.valid_dir, a.lang_dir, num_batches=a.batches,
                           max_frames=a.max_frames, seed=a.seed)


def _cmd_prune_channels(a):
    from asrcomp.compress.channels import prune_channels_model_dir

    cfg = None
    if a.sparsity_epochs or a.epochs:  # as quantize and pack: a tenth of the training learning rate unless --lr
        cfg = _finetune_config(a)
        cfg.lr = a.lr if a.lr is not None else cfg.lr / 10
    prune_channels_model_dir(a.src_dir, a.out_dir, a.keep, l1=a.l1, sparsity_epochs=a.sparsity_epochs,
                             epochs=a.epochs or 0, min_layer_keep=a.min_layer_keep, tcfg=cfg, train_dir=a.train_dir,
                             valid_dir=a.valid_dir, lang_dir=a.lang_dir)


def _decode_opts(a):
    from asrcomp.decode import DecodeOptions

    return DecodeOptions(beam=a.beam, max_active=a.max_active, acoustic_scale=a.acoustic_scale,
                         blank_penalty=a.blank_penalty)


def _cmd_decode(a):
    from asrcomp.decode_dir import decode_job

    decode_job(a.model_dir, a.data_dir, a.graph_dir, a.job, a.nj, _decode_opts(a))


def _cmd_decode_score(a):
    from asrcomp.decode_dir import merge_and_score

    _print_results(merge_and_score(a.model_dir, a.data_dir, a.graph_dir, a.nj))


def _print_results(results):
    for kind, r in results.items():
        print(f"{r['dir']}: {r['wer'].kaldi_line()} RTF {r['rtf']:.4f}")


def _cmd_compare(a):
    from asrcomp.compare import compare_table
    from asrcomp.utils import atomic_open

    table = compare_table(a.model_dirs, a.sets.split(","), baseline=a.baseline, legend=True,
                          speakers_from=a.speakers_from)
    print(table, end="")
    if a.out:
        with atomic_open(a.out, "w") as f:
            f.write(table)


def _cmd_wer_by_group(a):
    from asrcomp.groups import group_table

    table = group_table(a.model_dirs, a.data_dirs.split())
    print(table, end="")
    if a.out:
        with atomic_open(a.out, "w") as f:
            f.write(table)


def _cmd_bootci(a):
    from asrcomp.bootstrap import compare_decodes, write_bootci

    for d in a.decode_dirs:
        print(f"{d}: {write_bootci(d, a.n_boot, a.seed).line()}")
    if len(a.decode_dirs) == 2:
        p = compare_decodes(*a.decode_dirs, n_boot=a.n_boot, seed=a.seed)
        print(f"P({a.decode_dirs[1]} worse than {a.decode_dirs[0]}) = {p:.3f} (paired bootstrap)")
    if a.utt2spk:
        from asrcomp.bootstrap import bootstrap_interval, read_utt_stats, speaker_clusters
        from asrcomp.datadir import read_table

        utt2spk = read_table(a.utt2spk)
        for d in a.decode_dirs:
            u = read_utt_stats(d)
            ci = bootstrap_interval(u.errors, u.words, a.n_boot, a.seed,
                                    clusters=speaker_clusters(u.utts, utt2spk, a.utt2spk))
            print(f"{d}: {ci.line()}")
        if len(a.decode_dirs) == 2:
            p = compare_decodes(*a.decode_dirs, n_boot=a.n_boot, seed=a.seed, utt2spk=utt2spk)
            print(f"P({a.decode_dirs[1]} worse than {a.decode_dirs[0]}) = {p:.3f} (paired bootstrap over speakers)")


def _cmd_config_get(a):
    import yaml

    node = yaml.safe_load(Path(a.conf).read_text())
    for key in a.key.split("."):
        if not isinstance(node, dict) or key not in node:
            if a.default is not None:
                print(a.default)
                return
            raise InputError(a.conf, f"no key '{a.key}'", fix=f"add {a.key} to the config")
        node = node[key]
    print(" ".join(map(str, node)) if isinstance(node, list) else node)


def _words_of(path: Path) -> list[str]:
    """Words of a Kaldi ``text`` file (first column is the utt id) or a plain word/sentence list."""
    if path.name == "text":
        return [w for line in path.read_text().splitlines() for w in line.split()[1:]]
    return path.read_text().split()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asrcomp", description=__doc__)
    p.add_argument("--log-file", dest="log", help="also log to this file")
    # also accepted after the subcommand: torchrun takes options before it as its own
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-file", dest="log", help="also log to this file", default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    s = add("make-fbank", help="80-dim log-mel fbank + CMVN stats for a data dir")
    s.add_argument("--nj", type=int, default=1)
    s.add_argument("--conf", help="YAML with fbank options (top level or under 'fbank:')")
    s.add_argument("--cmvn", choices=["speaker", "global", "utterance", "none"])
    s.add_argument("data_dir")
    s.add_argument("feat_dir")
    s.set_defaults(func=_cmd_make_fbank)

    s = add("perturb-speed", help="copy a data dir once per speed factor (sox speed pipes in wav.scp)")
    s.add_argument("--factors", default="0.9,1.0,1.1", help="comma- or space-separated, e.g. 0.9,1.0,1.1")
    s.add_argument("src_dir")
    s.add_argument("dst_dir")
    s.set_defaults(func=_cmd_perturb_speed)

    s = add("subset-data-dir", help="a data dir of chosen speakers or utterances (Kaldi's subset_data_dir.sh): "
            "every table and the cut manifest filtered, speed copies sp<f>-<spk> chosen with <spk>")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument("--spk-list", help="file of (base) speakers to keep, one a line")
    how.add_argument("--utt-list", help="file of utterances to keep, one a line")
    how.add_argument("--speakers-fraction", type=float, metavar="F",
                     help="a seeded random fraction (0, 1] of the base speakers, within each spk2group group")
    s.add_argument("--seed", type=int, default=0, help="of --speakers-fraction")
    s.add_argument("--spk2group", help="groups of the speakers for --speakers-fraction (default: <src>/spk2group "
                   "if present); e.g. train's for train_sp, so both choose the same speakers")
    s.add_argument("src_dir")
    s.add_argument("out_dir")
    s.set_defaults(func=_cmd_subset_data_dir)

    s = add("prepare-lang", help="lexicon, tokens (phone|bpe), words, L_disambig.fst")
    s.add_argument("--token-type", choices=["phone", "bpe"], default="bpe")
    s.add_argument("--bpe-vocab-size", type=int, default=500)
    s.add_argument("--bpe-text", help="sentences to train sentencepiece on")
    s.add_argument("--lexicon", help="a Kaldi lexicon.txt (several pronunciations per word allowed); "
                   "CMUdict fills only the words it lacks")
    s.add_argument("--keep-stress", action="store_true", help="keep CMUdict stress digits (AH0 AH1 AH2 as "
                   "separate phones); default: removed")
    s.add_argument("lang_dir")
    s.add_argument("word_source", nargs="+", help="Kaldi text files or word lists")
    s.set_defaults(func=_cmd_prepare_lang)

    s = add("train-lm", help="n-gram ARPA LM, interpolated modified Kneser-Ney")
    s.add_argument("--order", type=int, default=3)
    s.add_argument("--vocab", help="words.txt: words outside it become <unk>")
    s.add_argument("--ppl-text", action="append", help="report perplexity on these sentences (repeatable)")
    s.add_argument("text", help="one sentence per line")
    s.add_argument("arpa")
    s.set_defaults(func=_cmd_train_lm)

    s = add("make-graph", help="G.fst and TLG.fst for a lang dir and an ARPA LM")
    s.add_argument("lang_dir")
    s.add_argument("arpa")
    s.add_argument("graph_dir")
    s.set_defaults(func=_cmd_make_graph)

    s = add("score", help="WER of a hypothesis text against a reference text")
    s.add_argument("ref")
    s.add_argument("hyp")
    s.add_argument("decode_dir")
    s.set_defaults(func=_cmd_score)

    s = add("validate-data-dir", help="check a Kaldi data dir (and its words against a lang dir)")
    s.add_argument("--need-features", action="store_true")
    s.add_argument("--lang-dir")
    s.add_argument("data_dir")
    s.set_defaults(func=_cmd_validate_data_dir)

    s = add("train", help="train a CTC acoustic model into a model dir (resumes)")
    s.add_argument("--conf", help="recipe YAML with 'train:' options and 'model:' architectures")
    s.add_argument("--arch", help="which architecture under 'model:' (e.g. tdnn, dnn)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training option")
    s.add_argument("--device", help="auto | cpu | cuda")
    _add_start_epoch(s)
    s.add_argument("exp_dir")
    s.add_argument("train_dir")
    s.add_argument("valid_dir")
    s.add_argument("lang_dir")
    s.set_defaults(func=_cmd_train)

    for name, func, hlp in (("decode", _cmd_decode, "decode a data dir with a model dir (TLG and greedy)"),
                            ("decode-score", _cmd_decode_score, "merge decoding jobs and score them")):
        s = add(name, help=hlp)
        s.add_argument("--nj", type=int, default=1)
        s.add_argument("--graph-dir", help="dir with TLG.fst; without it only greedy decoding")
        if name == "decode":
            s.add_argument("--job", type=int, default=1, help="which of the --nj jobs (1-based)")
            s.add_argument("--beam", type=float, default=16.0)
            s.add_argument("--max-active", type=int, default=7000)
            s.add_argument("--acoustic-scale", type=float, default=1.0)
            s.add_argument("--blank-penalty", type=float, default=0.0)
        s.add_argument("model_dir")
        s.add_argument("data_dir")
        s.set_defaults(func=func)

    def add_finetune(s):
        s.add_argument("--conf", help="recipe YAML: its 'train:' section gives the fine-tuning defaults")
        s.add_argument("--epochs", type=int, help="fine-tuning epochs (0: none)")
        s.add_argument("--lr", type=float, help="peak learning rate")
        s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training option")
        s.add_argument("--device", help="auto | cpu | cuda")
        _add_start_epoch(s)

    s = add("compress", help="factorise layers of a model dir (svd | tt), fine-tune, write a new model dir")
    s.add_argument("kind", choices=["svd", "tt"])
    s.add_argument("--layers", help="regex over layer names (default: svd 'output', tt every hidden layer)")
    s.add_argument("--rank", type=int, help="svd: rank k")
    s.add_argument("--energy-threshold", type=float, help="svd: smallest rank keeping this fraction of sum(s^2)")
    s.add_argument("--shrinkage-threshold", type=float, default=1.0,
                   help="svd: leave a layer alone unless factorised it has <= this fraction of its weights; "
                        "tt: refuse factors holding more")
    s.add_argument("--method", choices=["tt", "tucker", "cp"], default="tt", help="tt: the factorisation")
    s.add_argument("--modes", type=int, default=3, help="tt: number of modes d per dimension")
    s.add_argument("--shapes", help="tt: mode shapes OUTxOUT..,INxIN.. (default: balanced factors)")
    s.add_argument("--ranks", help="tt: rank (all bonds/modes) or ranks joined by ':'")
    s.add_argument("--rel-error", type=float, help="tt: smallest uniform rank within this relative error")
    s.add_argument("--warmup-steps", type=int, default=50)
    s.add_argument("--from-checkpoint", help="start from this epoch-N.pt of the source's training, not final.pt "
                                             "(SVD during training)")
    add_finetune(s)
    for arg in ("src_dir", "out_dir", "train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg)
    s.set_defaults(func=_cmd_compress)

    s = add("distill", help="train a student model dir from a teacher's posteriors (+ CTC)")
    s.add_argument("--teacher", required=True, help="teacher model dir")
    s.add_argument("--arch", help="student architecture under the config's 'model:'")
    s.add_argument("--student-dir", help="or start from this model dir (e.g. a factorised one)")
    s.add_argument("--from-scratch", action="store_true",
                   help="with --student-dir: its architecture only, randomly initialised")
    s.add_argument("--alpha", type=float, default=0.5, help="weight of the distillation term (0: CTC only)")
    s.add_argument("--temperature", type=float, default=2.0)
    s.add_argument("--hint-layer", help="FitNets hint: student layer (e.g. layers.3)")
    s.add_argument("--teacher-hint-layer", help="teacher layer for the hint (default: same name)")
    s.add_argument("--hint-weight", type=float, default=0.0)
    add_finetune(s)
    for arg in ("out_dir", "train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg)
    s.set_defaults(func=_cmd_distill)

    s = add("sweep-plot", help="WER-vs-size table and PNG of a sweep's model dirs")
    s.add_argument("--set", default="test")
    s.add_argument("--out", required=True, help="output prefix: writes PREFIX.md and PREFIX.png")
    s.add_argument("model_dirs", nargs="+")
    s.set_defaults(func=_cmd_sweep_plot)

    s = add("pack", help="Deep Compression: prune, k-means weight sharing, Huffman -> model dir with model.acz")
    s.add_argument("--conf", help="recipe YAML: 'pack:' options, 'train:' options for the fine-tuning")
    s.add_argument("--bits", help="index bits, e.g. 5 or 'output=4,default=5' (regex=bits; 1-16)")
    s.add_argument("--bits-output", type=int, help="bits of the output layer (default 4; the rule '^output\\.')")
    s.add_argument("--prune-sparsity", help="fraction of weights pruned, e.g. 0.8 or 'output=0.5,default=0.8'")
    s.add_argument("--prune-epochs", type=int, help="retraining epochs after pruning (default 0)")
    s.add_argument("--finetune-epochs", type=int, help="centroid fine-tuning epochs (default 0)")
    s.add_argument("--lr", type=float, help="fine-tuning learning rate (default: train lr / 10)")
    s.add_argument("--index-bits", type=int, help="gap symbol bits of sparse tensors (default: best per tensor)")
    s.add_argument("--coder", choices=["huffman", "ans"],
                   help="entropy coder of model.acz (default huffman; ans: within 0.1%% of the entropy)")
    s.add_argument("--prune-schedule", choices=["oneshot", "agp"],
                   help="oneshot (default): prune at once, then retrain; agp: gradual pruning over the retraining")
    s.add_argument("--prune-initial-sparsity", type=float, help="agp: sparsity at the start of the ramp (default 0)")
    s.add_argument("--prune-ramp-epochs", type=int,
                   help="agp: epochs the sparsity rises over (default prune-epochs - 1, at least 1)")
    s.add_argument("--prune-every", type=int, help="agp: optimiser steps between mask updates (default: 10 updates)")
    s.add_argument("--target-bytes", type=int,
                   help="choose each tensor's bits from measured sensitivity so model.acz fits N bytes (--bits unused)")
    s.add_argument("--bits-choices", help="widths --target-bytes chooses from (default '2,3,4,5,6'; or '2-6')")
    s.add_argument("--sensitivity-batches", type=int, help="validation batches of the sensitivity (default 4)")
    s.add_argument("--allocation", choices=["sensitivity", "equal-step"],
                   help="how --target-bytes is met: sensitivity (default), widths per tensor from measured loss; "
                        "equal-step (--quantizer uniform): one grid step for every tensor, the finest that fits")
    s.add_argument("--seed", type=int, help="training seed of the retraining and fine-tuning (default: the config's)")
    s.add_argument("--distill-alpha", type=float,
                   help="the input model as teacher of the retraining: weight of its KL term (default 0: CTC only)")
    s.add_argument("--distill-temperature", type=float, help="temperature of that KL term (default 2)")
    s.add_argument("--teacher", help="with --distill-alpha: this model dir is the teacher, not the input")
    s.add_argument("--finetune-mode", choices=["tied", "ste"],
                   help="after sharing: tied (default; the centroids learn) or ste (latent weights, straight-through, "
                        "re-assigned to the nearest centroid after every step)")
    s.add_argument("--quantizer", choices=["kmeans", "uniform"],
                   help="kmeans (default): 2**bits levels; uniform: an entropy-coded grid of step rms * 2**(2 - bits)")
    s.add_argument("--fold-bn", action="store_true", default=None,
                   help="fold batch-norm statistics into scale and shift before coding (default: the config's, off)")
    s.add_argument("--small-bits", type=int, choices=[16, 8],
                   help="biases and batch-norm vectors: float16 (16, default) or 8-bit codes on a power-of-two grid")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a training option")
    s.add_argument("--device", help="auto | cpu | cuda")
    _add_start_epoch(s, " (pack: N > 1 is an epoch of the k-means fine-tuning)")
    s.add_argument("src_dir")
    s.add_argument("out_dir")
    for arg in ("train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg, nargs="?", help="needed when fine-tuning")
    s.set_defaults(func=_cmd_pack)

    s = add("unpack", help="rebuild the model dir of a model.acz (bit-exact weights)")
    s.add_argument("packed")
    s.add_argument("out_dir")
    s.set_defaults(func=_cmd_unpack)

    s = add("peer", help="pack's peers: fp16 + zstd or int8 per output channel + zstd, as a decodable model dir")
    s.add_argument("--kind", choices=["fp16", "int8"], required=True)
    s.add_argument("--zstd-level", type=int, default=19)
    s.add_argument("src_dir")
    s.add_argument("out_dir")
    s.set_defaults(func=_cmd_peer)

    s = add("quantize", help="low-bit linear quantisation: int8 / int4 per channel, ternary (2), binary (1), "
            "optional STE fine-tuning -> decodable model dir with model.<kind>.zst")
    s.add_argument("--bits", type=int, choices=[8, 4, 2, 1], required=True)
    s.add_argument("--keep", help="regex of weights kept at 8 bits (default for --bits 2 and 1: first and last "
                                  "layer, '^layers\\.0\\.|^output\\.'; 'none': none)")
    s.add_argument("--zstd-level", type=int, default=19)
    s.add_argument("--warmup-steps", type=int, default=50)
    add_finetune(s)
    s.add_argument("src_dir")
    s.add_argument("out_dir")
    for arg in ("train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg, nargs="?", help="needed when fine-tuning")
    s.set_defaults(func=_cmd_quantize)

    s = add("recompute-bn", help="a model dir with its BatchNorm statistics recomputed over training batches "
            "(precise BN, for averaged or unstable ones) -> model dir")
    s.add_argument("--batches", type=int, default=50)
    s.add_argument("--max-frames", type=int, default=5000, help="padded input frames per batch")
    s.add_argument("--seed", type=int, default=0)
    for arg in ("src_dir", "out_dir", "train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg)
    s.set_defaults(func=_cmd_recompute_bn)

    s = add("prune-channels", help="structured channel pruning of a TDNN (network slimming): L1 on the batch-norm "
            "scales, remove the weakest channels, rebuild the layers smaller, fine-tune -> model dir")
    s.add_argument("--keep", type=float, required=True, help="fraction of the hidden channels kept in all (e.g. 0.6)")
    s.add_argument("--l1", type=float, default=1e-4, help="weight of the L1 penalty on the batch-norm scales")
    s.add_argument("--sparsity-epochs", type=int, default=0, help="epochs of CTC + L1 training before the cut")
    s.add_argument("--min-layer-keep", type=float, default=0.1,
                   help="per-layer floor: every layer keeps at least this fraction (and one channel)")
    s.add_argument("--warmup-steps", type=int, default=50)
    add_finetune(s)  # --epochs: CTC fine-tuning after the cut; --start-epoch: of that fine-tuning
    s.add_argument("src_dir")
    s.add_argument("out_dir")
    for arg in ("train_dir", "valid_dir", "lang_dir"):
        s.add_argument(arg, nargs="?", help="needed when training")
    s.set_defaults(func=_cmd_prune_channels)

    add_onnx_commands(add)  # export-onnx, onnx-fp16, onnx-int8, decode-onnx, decode-sherpa

    s = add("compare", help="markdown table of model dirs: size, FLOPs, RTF, WER")
    s.add_argument("--sets", default="test", help="comma-separated data set names")
    s.add_argument("--out", help="also write the table here")
    s.add_argument("--baseline", help="row (model dir name) every row is compared with (default: its chain's root)")
    s.add_argument("--speakers-from", metavar="DIR", help="resample speakers, not utterances, in the intervals "
                   "and P columns; speakers from DIR/<set>/utt2spk")
    s.add_argument("model_dirs", nargs="+")
    s.set_defaults(func=_cmd_compare)

    s = add("wer-by-group", help="%%WER of model dirs by speaker group (data dirs' spk2group) beside the total")
    s.add_argument("--data-dirs", required=True, help="space-separated data dirs with utt2spk and spk2group")
    s.add_argument("--out", help="also write the table here")
    s.add_argument("model_dirs", nargs="+")
    s.set_defaults(func=_cmd_wer_by_group)

    s = add("bootci", help="95%% bootstrap WER interval of scored decode dirs (writes wer_bootci); "
            "with two, the paired bootstrap P(second worse than first)")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--utt2spk", help="also the speaker-level (cluster) bootstrap, speakers from this utt2spk")
    s.add_argument("decode_dirs", nargs="+")
    s.set_defaults(func=_cmd_bootci)

    s = add("config-get", help="print one value of a YAML config (dotted key)")
    s.add_argument("--default", help="print this when the key is missing (instead of failing)")
    s.add_argument("conf")
    s.add_argument("key")
    s.set_defaults(func=_cmd_config_get)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.command != "config-get":
        rank = int(os.environ.get("RANK", 0))  # under torchrun, each rank logs to its own file
        setup_logging(args.log if rank == 0 or not args.log else f"{args.log}.rank{rank}")
        log.info("asrcomp %s", shlex.join(argv))
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
