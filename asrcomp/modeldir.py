"""The model directory ``exp/<name>/``: the one contract between training, compression and decoding.

Layout::

    final.pt      torch.save(model.state_dict())
    model.yaml    arch, tokens, features, frame_shift_ms, subsampling_factor,
                  num_params, flops_per_second, history (+ any extra keys)
    tokens.txt    copy of the lang dir's token table (a decoder checks it against the graph's)
    bpe.model     copy of the sentencepiece model (BPE token sets only)
    lexicon.txt   copy of the lang dir's lexicon (phone token sets only: scoring a phone model's
                  greedy output expands the reference words into phones with it)
    log/

With the feature options in ``model.yaml``, a model dir holds everything decoding and
scoring need: it can be moved or copied without its lang dir.

``model.yaml`` is written last, so a dir with a ``model.yaml`` is complete;
every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import torch
import yaml
from torch import nn

from asrcomp.nnet import arch_of, build_model, count_params, flops_per_second
from asrcomp.utils import InputError, atomic_open, atomic_path

NOT_A_MODEL_DIR = "not a model dir: run steps/train.sh or a compression stage to create it"
RESERVED_KEYS = ("arch", "tokens", "features", "frame_shift_ms", "subsampling_factor", "num_params",
                 "flops_per_second", "history")


def _plain(obj):
    """``obj`` with Paths as str and tuples as lists, so yaml.safe_dump accepts it."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def read_token_lines(tokens_txt: str | os.PathLike) -> list[tuple[int, str]]:
    """``(line number, 'symbol id')`` of the non-disambiguation lines of a tokens.txt."""
    path = Path(tokens_txt)
    if not path.is_file():
        raise InputError(path, "token table not found", fix="run steps/prepare_lang.sh")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                raise InputError(path, f"expected 'symbol id', got {line.rstrip()!r}", lineno)
            if not parts[0].startswith("#"):  # #0 #1 ... never reach the acoustic model
                out.append((lineno, " ".join(parts)))
    return out


def _token_type(tokens_txt: Path, bpe_model: Path | None) -> str:
    """'bpe' or 'phone': from the lang dir's lang.yaml when there is one, else from bpe.model."""
    lang_yaml = tokens_txt.parent / "lang.yaml"
    if lang_yaml.is_file():
        meta = yaml.safe_load(lang_yaml.read_text()) or {}
        if meta.get("token_type") in ("bpe", "phone"):
            return meta["token_type"]
    return "bpe" if bpe_model is not None else "phone"


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def save_model_dir(model_dir: str | os.PathLike, model: nn.Module, tokens_txt: str | os.PathLike,
                   features: dict, history: list[dict] | None = None, bpe_model: str | os.PathLike | None = None,
                   extra: dict | None = None, lexicon: str | os.PathLike | None = None) -> Path:
    """Write ``model`` and everything needed to rebuild and decode it into ``model_dir``.

    ``features``: the fbank options (``data/<set>/fbank.yaml``). ``history``: one dict
    per stage that made the model (``{"stage": ..., **options}``). ``bpe_model``: the
    sentencepiece model; if None, ``bpe.model`` beside ``tokens_txt`` is used when present.
    ``lexicon``: the lexicon.txt of a phone token set; if None, ``lexicon.txt`` beside
    ``tokens_txt`` (a lang dir or another model dir) is used when present.
    ``extra``: further top-level keys for model.yaml (may not shadow the standard ones).
    """
    model_dir, tokens_txt = Path(model_dir), Path(tokens_txt)
    tokens = read_token_lines(tokens_txt)
    if len(tokens) != model.num_tokens:
        raise InputError(tokens_txt, f"has {len(tokens)} tokens but the model outputs {model.num_tokens}",
                         fix="pass the tokens.txt of the lang dir the model was built for")
    if bpe_model is None and (tokens_txt.parent / "bpe.model").is_file():
        bpe_model = tokens_txt.parent / "bpe.model"
    bpe_model = Path(bpe_model) if bpe_model is not None else None
    if bpe_model is not None and not bpe_model.is_file():
        raise InputError(bpe_model, "BPE model not found", fix="pass the lang dir's bpe.model or None")
    token_type = _token_type(tokens_txt, bpe_model)
    if lexicon is None and token_type == "phone" and (tokens_txt.parent / "lexicon.txt").is_file():
        lexicon = tokens_txt.parent / "lexicon.txt"
    lexicon = Path(lexicon) if lexicon is not None and token_type == "phone" else None
    if lexicon is not None and not lexicon.is_file():
        raise InputError(lexicon, "lexicon not found", fix="pass the lang dir's lexicon.txt or None")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"extra keys {clash} would overwrite model.yaml's own fields")
    frame_shift_ms = float(features.get("frame_shift_ms", 10.0))
    meta = {
        "arch": arch_of(model),
        "tokens": {"token_type": token_type, "num_tokens": int(model.num_tokens)},
        "features": dict(features),
        "frame_shift_ms": frame_shift_ms,
        "subsampling_factor": int(model.subsampling_factor),
        "num_params": count_params(model),
        "flops_per_second": flops_per_second(model, 1000.0 / frame_shift_ms),
        "history": list(history or []),
        **extra,
    }
    text = yaml.safe_dump(_plain(meta), sort_keys=False)  # fails here, before anything is written

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "log").mkdir(exist_ok=True)
    yaml_path = model_dir / "model.yaml"
    if yaml_path.exists():
        yaml_path.unlink()  # the dir is incomplete until the new model.yaml lands
    with atomic_path(model_dir / "final.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    _copy(tokens_txt, model_dir / "tokens.txt")
    if bpe_model is not None:
        _copy(bpe_model, model_dir / "bpe.model")
    elif (model_dir / "bpe.model").exists():
        (model_dir / "bpe.model").unlink()  # stale from an earlier model with BPE tokens
    if lexicon is not None:
        _copy(lexicon, model_dir / "lexicon.txt")
    elif (model_dir / "lexicon.txt").exists():
        (model_dir / "lexicon.txt").unlink()  # stale from an earlier phone model
    with atomic_open(yaml_path, "w", encoding="utf-8") as f:
        f.write(text)
    return model_dir


def read_model_yaml(model_dir: str | os.PathLike) -> dict:
    """The parsed ``model.yaml`` of ``model_dir``; InputError if there is none or it is malformed."""
    path = Path(model_dir) / "model.yaml"
    if not path.is_file():
        raise InputError(model_dir, "model.yaml not found", fix=NOT_A_MODEL_DIR)
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise InputError(path, f"not valid YAML: {e}", fix="rerun the stage that wrote this model dir") from e
    if not isinstance(meta, dict):
        raise InputError(path, "expected a mapping", fix="rerun the stage that wrote this model dir")
    missing = [k for k in ("arch", "tokens", "subsampling_factor") if k not in meta]
    if missing:
        raise InputError(path, f"missing key(s) {', '.join(missing)}", fix="rerun the stage that wrote this model dir")
    return meta


def load_model_dir(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """``(model in eval mode on device, parsed model.yaml)``; the state dict must match the arch exactly."""
    model_dir = Path(model_dir)
    meta = read_model_yaml(model_dir)
    try:
        model = build_model(meta["arch"])
    except (ValueError, TypeError) as e:
        raise InputError(model_dir / "model.yaml", f"arch does not build a model: {e}",
                         fix="fix the arch section or rerun the stage that wrote this model dir") from e
    weights = model_dir / "final.pt"
    if not weights.is_file():
        raise InputError(weights, "final.pt not found",
                         fix="the stage that writes this model dir did not finish: rerun it")
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        raise InputError(weights, f"does not hold the weights of the arch in model.yaml: {e}",
                         fix="rerun the stage that wrote this model dir") from e
    return model.to(device).eval(), meta


def check_token_set(model_dir: str | os.PathLike, tokens_txt: str | os.PathLike) -> None:
    """InputError unless ``tokens_txt`` has the model's tokens, with the same ids.

    Disambiguation symbols (``#0 #1 ...``) are not compared: they never reach the
    acoustic model, and graphs built from different word lists have different numbers.
    """
    model_tokens = Path(model_dir) / "tokens.txt"
    ours, theirs = read_token_lines(model_tokens), read_token_lines(tokens_txt)
    fix = (f"rebuild the graph from the lang dir the model was trained with, or retrain the model "
           f"with the lang dir of {tokens_txt}")
    for (la, a), (lb, b) in zip(theirs, ours):
        if a != b:
            raise InputError(tokens_txt, f"{a!r} differs from {model_tokens}:{lb} {b!r}: the graph and the "
                             f"model use different token sets", line=la, fix=fix)
    if len(theirs) != len(ours):
        longer, shorter = (tokens_txt, model_tokens) if len(theirs) > len(ours) else (model_tokens, tokens_txt)
        line_no, tok = max(theirs, ours, key=len)[min(len(theirs), len(ours))]
        raise InputError(longer, f"{tok!r} has no counterpart in {shorter}: the graph ({tokens_txt}) has "
                         f"{len(theirs)} tokens, the model ({model_tokens}) {len(ours)}", line=line_no, fix=fix)


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint (``{"model": state_dict, ...}``) or a bare state dict file."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(path, f"cannot load checkpoint: {e}", fix="rerun the epoch that wrote it") from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise InputError(path, "neither a state dict nor a checkpoint with a 'model' state dict")
    return ckpt


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the checkpoints' state dicts (icefall's ``--avg``).

    Floating-point tensors are averaged (accumulated in float64, returned in their
    dtype); integer ones (BatchNorm's ``num_batches_tracked``) take the last file's value.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    first = _load_state_dict(paths[0])
    acc = {k: v.double() if v.is_floating_point() else v.clone() for k, v in first.items()}
    for p in paths[1:]:
        sd = _load_state_dict(p)
        if set(sd) != set(acc):
            diff = sorted(set(sd) ^ set(acc))
            raise InputError(p, f"keys differ from {paths[0]}: {', '.join(diff[:5])}",
                             fix="average checkpoints of one training run only")
        for k, v in sd.items():
            if v.shape != acc[k].shape:
                raise InputError(p, f"{k} has shape {tuple(v.shape)}, {paths[0]} has {tuple(acc[k].shape)}",
                                 fix="average checkpoints of one training run only")
            if v.is_floating_point():
                acc[k] += v.double()
            else:
                acc[k] = v.clone()
    return {k: (v / len(paths)).to(first[k].dtype) if first[k].is_floating_point() else v
            for k, v in acc.items()}
