"""CTC training of an acoustic model into a model dir (``asrcomp train``).

- data read lazily through lhotse (``asrcomp/dataset.py``): a CutSet manifest beside the data
  dir's feats.scp, batches from lhotse's DynamicBucketingSampler by total padded input frames
  (``max_frames``, i.e. ``max_duration`` = max_frames x frame shift), order drawn from
  (seed, epoch) so a resumed run sees the same batches, each DDP rank reading its own share;
- Adam (or SGD) with linear warm-up then cosine decay, gradient clipping;
- validation loss each epoch; ``epoch-N.pt`` checkpoints (model, optimiser, scheduler,
  RNG state, the trainable state of the hooks: hint projection, pruning masks, k-means
  assignments) and resume from the last one after an interruption. Each checkpoint carries
  the identity of its run (training options, architecture, DDP world size, the stage's own
  options, a fingerprint of the initial weights); resuming under another identity is an
  InputError naming the differing keys. ``start_epoch: N`` (``--start-epoch N``) begins a
  new run at epoch N from ``epoch-(N-1).pt``'s weights, as icefall's ``--start-epoch``;
- ``final.pt`` = average of the last ``avg`` epochs (icefall's ``--avg``), its BatchNorm statistics
  optionally recomputed for the averaged weights (``bn_recompute_batches``, :func:`recompute_bn_stats`);
- ``train.tsv`` and ``train.png`` curves, ``log/train.log``;
- data-parallel with torch DDP under ``torchrun`` (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from asrcomp.dataset import CollateDataset, CtcCuts, load_ctc_cuts, make_sampler
from asrcomp.features import load_fbank_config
from asrcomp.guards import finite_guard
from asrcomp.lang import load_lang
from asrcomp.modeldir import _plain, average_checkpoints, load_model_dir, save_model_dir
from asrcomp.nnet import arch_of, build_model, count_params
from asrcomp.utils import InputError, atomic_open, atomic_path, options_from_dict

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 8
    max_frames: int = 10000  # padded input frames per batch (per process)
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    final_lr_ratio: float = 0.05  # cosine decay ends at lr * final_lr_ratio
    warmup_steps: int = 200
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    avg: int = 3  # average the last N epoch checkpoints into final.pt
    # > 0: final.pt's BatchNorm running statistics recomputed over this many training batches
    # (averaged checkpoints average their statistics too, which need not fit the averaged weights)
    bn_recompute_batches: int = 0
    seed: int = 0
    spec_augment: bool = True
    freq_masks: int = 2
    freq_width: int = 10
    time_masks: int = 2
    time_width: int = 20
    num_threads: int = 0  # 0: cores / processes
    num_workers: int = 0  # DataLoader processes reading batches (0: the training process reads them)
    device: str = "auto"  # auto | cpu | cuda
    # mixed precision: "bf16" runs the forward (and so the backward) of matmuls and convolutions in
    # bfloat16 under torch.autocast, weights and the optimiser stay float32; "none": float32 only
    amp: str = "none"  # none | bf16
    # 0: resume from the last epoch-N.pt if it was made under this configuration (else an error);
    # 1: a new run, the old checkpoints deleted; N > 1: resume from epoch-(N-1).pt, or, when it
    # was made under another configuration, a new run from its weights (fresh optimiser)
    start_epoch: int = 0
    arch: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, where: str = "train config") -> "TrainConfig":
        return options_from_dict(cls, d, where, "training")


# ----------------------------------------------------------------------------- data
#
# The data path is lhotse's (asrcomp/dataset.py): a lazy CutSet of the data dir's features,
# batches from DynamicBucketingSampler (max_duration = max_frames x frame shift), features read
# per batch. Nothing of the corpus but the sampler's buffer is held in memory.

CtcData = CtcCuts  # the name training code and stages import


def load_ctc_data(data_dir: str | os.PathLike, lang_dir: str | os.PathLike, subsampling_factor: int) -> CtcCuts:
    """A data dir's lazy cuts with token targets through the lang dir (features read per batch).

    Words outside the lexicon are read as <UNK> (as Kaldi maps training OOVs to its
    oov symbol) and counted in the log. Utterances too short for CTC after
    subsampling (fewer output frames than target tokens plus repeats) are dropped
    with a warning.
    """
    return load_ctc_cuts(data_dir, lang_dir, subsampling_factor)


def make_batches(lengths: list[int], max_frames: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches (lists of indices into ``lengths``) the training sampler makes of utterances
    of these frame counts: padded size <= ``max_frames``, deterministic in (seed, epoch)."""
    from lhotse import CutSet, MonoCut

    cuts = CutSet.from_cuts(MonoCut(id=str(i), start=0.0, duration=n * 0.01, channel=0)
                            for i, n in enumerate(lengths))
    sampler = make_sampler(cuts, max_frames * 0.01, seed, True, 0, 1, len(lengths))
    sampler.set_epoch(epoch)
    return [[int(c.id) for c in b] for b in sampler]


def batches(data: CtcCuts, max_frames: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
            shuffle: bool = True):
    """This rank's batches (CutSets) of an epoch; every rank gets the same number."""
    sampler = data.sampler(max_frames, seed, shuffle, rank, world)
    sampler.set_epoch(epoch)
    return sampler


def collate(data: CtcCuts, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Read and pad a batch (a CutSet): features ``(N, T, F)``, lengths ``(N,)``, concatenated
    targets, target lengths."""
    return data.collate(batch)


def spec_augment(x: torch.Tensor, x_lens: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """SpecAugment-style masking (no time warp) of ``(N, T, F)`` features, zeros = the CMVN mean."""
    x = x.clone()
    n, _, f = x.shape
    for i in range(n):
        t = int(x_lens[i])
        for _ in range(cfg.freq_masks):
            w = int(torch.randint(0, cfg.freq_width + 1, (1,), generator=gen))
            s = int(torch.randint(0, max(1, f - w), (1,), generator=gen))
            x[i, :, s:s + w] = 0
        for _ in range(cfg.time_masks):
            w = int(torch.randint(0, min(cfg.time_width, t // 5) + 1, (1,), generator=gen))
            s = int(torch.randint(0, max(1, t - w), (1,), generator=gen))
            x[i, s:s + w, :] = 0
    return x


def ctc_loss_sum(model, x, x_lens, y, y_lens) -> torch.Tensor:
    """Summed CTC loss (nats) of a batch; blank = 0."""
    log_probs, out_lens = model(x, x_lens)
    return F.ctc_loss(log_probs.float().transpose(0, 1), y, out_lens, y_lens, blank=0, reduction="sum",
                      zero_infinity=True)


@torch.no_grad()
def recompute_bn_stats(model: torch.nn.Module, data: CtcCuts, max_frames: int, num_batches: int, device,
                       seed: int = 0) -> int:
    """Precise BatchNorm statistics (as SWA's ``bn_update``): every BatchNorm's running mean and
    variance replaced by their average over the first ``num_batches`` training batches drawn from
    ``seed``, the model in training mode for BatchNorm only (no dropout, no SpecAugment), weights
    untouched. Returns the number of batches used (0: the model has no BatchNorm).

    Why: running statistics are an exponential average over the last ~10 batches of the weights
    *at those batches*; averaging checkpoints averages them too, and a deep model with bypass
    connections (tdnnf) trained at a high learning rate can end an epoch with statistics far enough
    from its weights that eval-mode activations grow layer by layer.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or num_batches <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches seen
    model.eval()
    for bn in bns:
        bn.train()
    used = 0
    for b in batches(data, max_frames, seed, 0):
        if used == num_batches:
            break
        x, x_lens, _, _ = (t.to(device) for t in collate(data, b))
        model(x, x_lens)
        used += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.eval()
    return used


@torch.no_grad()
def validation_loss(model, data: CtcData, max_frames: int, device) -> float:
    """CTC loss per target token over a whole data set."""
    model.eval()
    total, tokens = 0.0, 0
    for b in batches(data, max_frames, 0, 0, shuffle=False):
        x, x_lens, y, y_lens = (t.to(device) for t in collate(data, b))
        total += float(ctc_loss_sum(model, x, x_lens, y, y_lens))
        tokens += int(y_lens.sum())
    model.train()
    return total / max(tokens, 1)


# ----------------------------------------------------------------------------- training


def _lr_lambda(cfg: TrainConfig, total_steps: int):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _checkpoints(exp_dir: Path) -> dict[int, Path]:
    out = {}
    for p in exp_dir.glob("epoch-*.pt"):
        m = re.fullmatch(r"epoch-(\d+)\.pt", p.name)
        if m:
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype ``cfg.amp`` asks for on ``device``, or None for float32.

    bf16 without native support (no AVX512-BF16/AMX on the CPU, or a GPU without
    bf16) would be emulated and slower than float32: then a warning and None.
    """
    if cfg.amp == "none":
        return None
    if cfg.amp != "bf16":
        raise InputError("train config", f"amp: unknown value {cfg.amp!r}", fix="amp: none or amp: bf16")
    native = (torch.cuda.is_bf16_supported() if device.type == "cuda"
              else torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not native:
        log.warning("amp: bf16 is not supported natively on this %s; training in float32", device.type)
        return None
    return torch.bfloat16


def train(exp_dir: str | os.PathLike, train_dir: str | os.PathLike, valid_dir: str | os.PathLike,
          lang_dir: str | os.PathLike, cfg: TrainConfig) -> Path:
    """Train a CTC model from ``cfg.arch`` into ``exp_dir``; resumes from its last checkpoint.

    Returns the model dir. Under ``torchrun`` every process trains on its
    share of each epoch's batches and DDP averages the gradients.
    """
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    lang = load_lang(lang_dir)
    arch = dict(cfg.arch, feat_dim=load_fbank_config(train_dir).num_mel_bins, num_tokens=lang.num_tokens)
    return fit(build_model(arch), exp_dir, train_dir, valid_dir, lang_dir, cfg)


@dataclass
class FitHooks:
    """Extension points of :func:`fit`, for stages that train under constraints.

    ``loss``: ``(model, x, x_lens, y, y_lens) -> summed loss`` (default: CTC);
    ``after_backward(model)``: may edit gradients (pruning masks, tied k-means weights);
    ``after_step(model)``: may edit weights after each optimiser step;
    ``params``: further trainable parameters that are not part of the saved model
    (e.g. a hint regressor);
    ``state``: ``{name: object with state_dict() / load_state_dict()}``, the hooks' own state
    (hint projection, pruning masks, k-means assignments): checkpointed every epoch, restored on
    resume, and part of the initial-weights fingerprint;
    ``identity``: the stage's options that define the run (distillation alpha, pruning
    sparsity, ...): a checkpoint made under other values is not resumed;
    ``begin(model, steps_per_epoch, epochs, done_steps)``: called once before the first epoch
    this call trains, after a resume has restored ``state`` (``done_steps``: optimiser steps
    already taken), for hooks that follow a schedule in steps (gradual pruning).
    """

    loss: object = None
    after_backward: object = None
    after_step: object = None
    begin: object = None
    params: list = field(default_factory=list)
    state: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)


# training options that do not change what a run computes (where and how fast it runs, what
# final.pt averages, how it was started): a checkpoint resumes under other values of these
RESUME_IGNORED = ("num_threads", "num_workers", "device", "avg", "bn_recompute_batches", "start_epoch", "arch")


def _fingerprint(tensors: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per tensor: sum, sum of squares and a position-weighted sum (float64) -- equal up to
    rounding for equal tensors, so a recomputed source model (an SVD on another thread count)
    still matches while another source model does not."""
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu().double().flatten()
        w = torch.linspace(1.0, 2.0, t.numel(), dtype=torch.float64) if t.numel() else t
        out[name] = [float(t.sum()), float((t * t).sum()), float((t * w).sum())]
    return out


def state_digest(model: torch.nn.Module) -> str:
    """SHA-256 (hex, 16 digits) of a model's state dict: names, dtypes, shapes and bytes."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def _hook_tensors(hooks: "FitHooks") -> dict[str, torch.Tensor]:
    """The tensors of the hooks' state (nested dicts flattened to dotted names)."""
    out = {}

    def walk(prefix, d):
        for k, v in d.items():
            if isinstance(v, torch.Tensor):
                out[f"{prefix}.{k}"] = v
            elif isinstance(v, dict):
                walk(f"{prefix}.{k}", v)

    for name, obj in hooks.state.items():
        walk(name, obj.state_dict())
    return out


def run_identity(model, cfg: "TrainConfig", hooks: "FitHooks", world: int) -> dict:
    """What a checkpoint must share with this run to be resumed by it."""
    return _plain({
        "train": {k: v for k, v in asdict(cfg).items() if k not in RESUME_IGNORED},
        "arch": arch_of(model),
        "world_size": world,
        "stage": dict(hooks.identity),
        "init_weights": _fingerprint({**model.state_dict(), **_hook_tensors(hooks)}),
    })


def _flat(d, prefix="") -> dict:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def identity_diff(old: dict, new: dict) -> list[str]:
    """``["train.lr: 0.003 -> 0.001", ...]``: the keys in which two run identities differ
    (initial-weight fingerprints compared to 1e-6 relative)."""
    diffs = []
    ow, nw = old.get("init_weights", {}), new.get("init_weights", {})
    both = [k for k in old if k in new and k != "init_weights"]  # a checkpoint of an older asrcomp has fewer
    fo, fn = _flat({k: old[k] for k in both}), _flat({k: new[k] for k in both})
    defaults = _flat({"train": asdict(TrainConfig())})
    for k in sorted(set(fo) | set(fn)):
        a, b = fo.get(k, "(absent)"), fn.get(k, "(absent)")
        if k not in fo and k in defaults and b == defaults[k]:
            continue  # an option added since the checkpoint was written, at its default
        if a != b:
            diffs.append(f"{k}: {a!r} -> {b!r}")
    if ow and nw:  # old checkpoints without a fingerprint are not compared
        bad = sorted(n for n in set(ow) | set(nw) if n not in ow or n not in nw or not all(
            math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(ow[n], nw[n])))
        if bad:
            diffs.append(f"init_weights: the model this run starts from differs in {len(bad)} tensor(s) "
                         f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): another source model, "
                         "transformation or seed")
    return diffs


def _check_start_epoch(cfg: "TrainConfig", ckpts: dict[int, Path], exp_dir: Path) -> None:
    n = cfg.start_epoch
    if not 0 <= n <= cfg.epochs:
        raise InputError("train config", f"start_epoch {n} is outside 0..epochs ({cfg.epochs})",
                         fix="0 resumes the last checkpoint; N in 1..epochs begins at epoch N")
    if n > 1 and n - 1 not in ckpts:
        have = ", ".join(p.name for p in ckpts.values()) or "none"
        raise InputError(exp_dir / f"epoch-{n - 1}.pt", f"--start-epoch {n} needs this checkpoint (have: {have})",
                         fix="pass --start-epoch 1 for a new run, or a start epoch one past an existing checkpoint")


def fit(model: torch.nn.Module, exp_dir: str | os.PathLike, train_dir: str | os.PathLike,
        valid_dir: str | os.PathLike, lang_dir: str | os.PathLike, cfg: TrainConfig,
        hooks: FitHooks | None = None, history: list[dict] | None = None, stage: dict | None = None,
        extra: dict | None = None) -> Path:
    """Train ``model`` (already initialised) with CTC for ``cfg.epochs`` into the model dir ``exp_dir``.

    ``history``: the stages that made ``model`` (from its model.yaml); this run is
    appended as ``{"stage": "train", ...}`` or as ``stage``. ``extra``: further
    model.yaml keys. Resumes from the last ``epoch-N.pt`` of ``exp_dir``.
    """
    from tqdm import tqdm

    hooks = finite_guard(hooks or FitHooks())  # a NaN / inf weight or gradient stops the run, named
    exp_dir = Path(exp_dir)
    rank, world = _dist_info()
    device = _device(cfg)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(cfg.seed)
    amp_dtype = autocast_dtype(cfg, device)
    model = model.to(device)
    log.info("model: %s, %d parameters, %s", model.arch().get("type"), count_params(model),
             f"mixed precision {amp_dtype}" if amp_dtype else "float32")
    # which checkpoint this run continues, decided (and refused) before the data is loaded
    ckpts = _checkpoints(exp_dir)
    _check_start_epoch(cfg, ckpts, exp_dir)
    identity = run_identity(model, cfg, hooks, world)
    state, last, last_epoch, diffs = None, None, 0, []
    if ckpts and cfg.start_epoch != 1:
        last_epoch = cfg.start_epoch - 1 if cfg.start_epoch > 1 else max(ckpts)
        last = ckpts[last_epoch]
        state = torch.load(last, map_location=device, weights_only=False)
        old = state.get("identity") or {"train": {k: v for k, v in (state.get("config") or {}).items()
                                                  if k not in RESUME_IGNORED}}
        diffs = identity_diff(old, identity)
        if diffs and cfg.start_epoch == 0:
            raise InputError(last, "was made under another configuration than this run's: " + "; ".join(diffs),
                             fix=f"delete {exp_dir} to train afresh, or pass --start-epoch N (e.g. "
                                 f"--start-epoch {last_epoch + 1}) to begin a new run at epoch N from "
                                 f"epoch-(N-1).pt's weights")
        missing = sorted(set(hooks.state) - set(state.get("hooks", {})))
        if missing and not diffs:
            raise InputError(last, f"holds no state for {', '.join(missing)} (written by an older asrcomp)",
                             fix=f"delete {exp_dir}, or pass --start-epoch {last_epoch + 1} to begin a new run "
                                 "from its weights")
    if world > 1 and rank != 0:  # rank 0 (re)builds the lazy manifests, the others then read them
        import torch.distributed as dist

        dist.barrier()
    train_data = load_ctc_data(train_dir, lang_dir, model.subsampling_factor)
    valid_data = load_ctc_data(valid_dir, lang_dir, model.subsampling_factor)
    if world > 1 and rank == 0:
        import torch.distributed as dist

        dist.barrier()
    log.info("train: %d utterances, %d frames (%s); valid: %d utterances", train_data.num_utts,
             train_data.num_frames, train_data.manifest, valid_data.num_utts)
    loss_fn = hooks.loss or ctc_loss_sum

    params = [p for p in model.parameters() if p.requires_grad] + list(hooks.params)
    if cfg.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        raise InputError("train config", f"unknown optimizer {cfg.optimizer!r}", fix="adam or sgd")
    train_batches = train_data.sampler(cfg.max_frames, cfg.seed, True, rank, world)
    train_batches.set_epoch(1)
    steps_per_epoch = sum(1 for _ in train_batches)  # this rank's: the sampler gives every rank as many
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps_per_epoch * cfg.epochs))

    epochs: list[dict] = []
    start_epoch = 1
    if cfg.start_epoch == 1 and rank == 0:  # a new run: nothing of an old one may be averaged into it
        for p in ckpts.values():
            p.unlink()
        ckpts = {}
        _mark_incomplete(exp_dir)
    elif state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise InputError(last, f"does not hold weights of this run's architecture: {e}",
                             fix=f"delete {exp_dir}, or pass --start-epoch 1 to begin a new run") from e
        epochs = [h for h in state["history"] if h["epoch"] <= last_epoch]
        start_epoch = last_epoch + 1
        if diffs:  # --start-epoch under another configuration: a new run from these weights
            log.warning("%s was made under another configuration (%s): beginning a new run at epoch %d from its "
                        "weights (new optimiser; the hooks' state is this run's)", last, "; ".join(diffs), start_epoch)
            with warnings.catch_warnings():  # step() before any opt.step(): only moving the schedule on
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(steps_per_epoch * last_epoch):  # the learning rate this run has at that epoch
                    sched.step()
        else:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            for name, obj in hooks.state.items():
                obj.load_state_dict(state["hooks"][name])
            identity = state.get("identity", identity)
            log.info("resuming from %s (epoch %d done)", last, last_epoch)
        del state
        if rank == 0:
            for e, p in ckpts.items():
                if e > last_epoch:  # a new run from epoch N (or a resume after N-1) replaces them
                    p.unlink()
            if start_epoch <= cfg.epochs:
                _mark_incomplete(exp_dir)

    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    model.train()
    exp_dir.mkdir(parents=True, exist_ok=True)
    constrain = getattr(model, "apply_constraints", None)  # e.g. TDNN-F's semi-orthogonal factors
    if hooks.begin:
        hooks.begin(model, steps_per_epoch, cfg.epochs, (start_epoch - 1) * steps_per_epoch)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.time()
        train_batches.set_epoch(epoch)  # this rank's share; equal step counts keep DDP in lock-step
        loader = torch.utils.data.DataLoader(CollateDataset(train_data), sampler=train_batches, batch_size=None,
                                             num_workers=cfg.num_workers, persistent_workers=False)
        tot_loss, tot_tokens = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", mininterval=10, disable=rank != 0,
                   total=steps_per_epoch)
        for step, (x, x_lens, y, y_lens) in enumerate(bar):
            if cfg.spec_augment:
                gen = torch.Generator().manual_seed(((cfg.seed * 1000 + epoch) * 100000 + step) * 64 + rank)
                x = spec_augment(x, x_lens, cfg, gen)
            x, x_lens, y, y_lens = x.to(device), x_lens.to(device), y.to(device), y_lens.to(device)
            n_tok = int(y_lens.sum())
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = loss_fn(ddp_model, x, x_lens, y, y_lens)
            opt.zero_grad(set_to_none=True)
            (loss / n_tok).backward()
            if hooks.after_backward:
                hooks.after_backward(model)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            if constrain is not None:  # before the hooks, whose masks and tied weights must win
                constrain((epoch - 1) * steps_per_epoch + step)
            if hooks.after_step:
                hooks.after_step(model)
            tot_loss += loss.item()
            tot_tokens += n_tok
            bar.set_postfix(loss=f"{tot_loss / tot_tokens:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}", refresh=False)
        train_loss = _all_reduce_ratio(tot_loss, tot_tokens, world, device)
        valid_loss = validation_loss(model, valid_data, cfg.max_frames, device)
        epochs.append({"epoch": epoch, "train_loss": round(train_loss, 5), "valid_loss": round(valid_loss, 5),
                       "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 1)})
        log.info("epoch %d: train loss %.4f, valid loss %.4f per token, %.0f s", epoch, train_loss,
                 valid_loss, time.time() - t0)
        if rank == 0:
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "rng": torch.get_rng_state(), "history": epochs, "epoch": epoch, "config": asdict(cfg),
                     "identity": identity, "hooks": {k: v.state_dict() for k, v in hooks.state.items()}}
            with atomic_path(exp_dir / f"epoch-{epoch}.pt") as tmp:
                torch.save(state, tmp)
    log.info("parameter checksum: %.10e", param_checksum(model))  # equal on every DDP rank
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return exp_dir

    ckpts = _checkpoints(exp_dir)
    use = [ckpts[e] for e in sorted(ckpts)[-cfg.avg:]] if cfg.avg > 0 else [ckpts[max(ckpts)]]
    log.info("averaging %s into final.pt", ", ".join(p.name for p in use))
    model.load_state_dict(average_checkpoints(use))
    if hooks.after_step:  # averaging may undo a constraint (zeros, tied weights): re-apply it
        hooks.after_step(model)
    if cfg.bn_recompute_batches > 0:
        before = validation_loss(model, valid_data, cfg.max_frames, device)
        n = recompute_bn_stats(model, train_data, cfg.max_frames, cfg.bn_recompute_batches, device, cfg.seed)
        log.info("final.pt: BatchNorm statistics recomputed over %d training batches: valid loss %.4f -> %.4f",
                 n, before, validation_loss(model, valid_data, cfg.max_frames, device))
    model.cpu()
    epochs = torch.load(use[-1], map_location="cpu", weights_only=False)["history"]
    this = dict(stage or {"stage": "train"}, train_dir=str(train_dir), lang_dir=str(lang_dir),
                epochs_averaged=[int(p.stem.split("-")[1]) for p in use], config=asdict(cfg))
    save_model_dir(exp_dir, model, Path(lang_dir) / "tokens.txt", features=_features_of(train_dir),
                   history=list(history or []) + [this], bpe_model=_bpe_model(lang_dir), extra=extra)
    write_curves(exp_dir, epochs)
    return exp_dir


def recompute_bn_model_dir(src_dir: str | os.PathLike, out_dir: str | os.PathLike, train_dir: str | os.PathLike,
                           valid_dir: str | os.PathLike, lang_dir: str | os.PathLike, num_batches: int = 50,
                           max_frames: int = 5000, seed: int = 0) -> Path:
    """``asrcomp recompute-bn``: ``src_dir``'s model with its BatchNorm statistics recomputed
    (:func:`recompute_bn_stats`) into the model dir ``out_dir``; valid loss before and after logged."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    model, meta = load_model_dir(src_dir)
    train_data = load_ctc_data(train_dir, lang_dir, model.subsampling_factor)
    valid_data = load_ctc_data(valid_dir, lang_dir, model.subsampling_factor)
    before = validation_loss(model, valid_data, max_frames, "cpu")
    used = recompute_bn_stats(model, train_data, max_frames, num_batches, "cpu", seed)
    if not used:
        raise InputError(src_dir / "model.yaml", "the model has no BatchNorm layers", fix="nothing to recompute")
    after = validation_loss(model, valid_data, max_frames, "cpu")
    log.info("%s: BatchNorm statistics over %d batches of %s: valid loss %.4f -> %.4f per token",
             src_dir, used, train_dir, before, after)
    record = {"stage": "recompute_bn", "src": str(src_dir), "train_dir": str(train_dir), "batches": used,
              "max_frames": max_frames, "seed": seed, "valid_loss_before": round(before, 5),
              "valid_loss_after": round(after, 5)}
    lexicon = src_dir / "lexicon.txt"
    save_model_dir(out_dir, model, src_dir / "tokens.txt", features=meta.get("features", {}),
                   history=list(meta.get("history") or []) + [record],
                   bpe_model=src_dir / "bpe.model" if (src_dir / "bpe.model").is_file() else None,
                   lexicon=lexicon if lexicon.is_file() else None)
    return out_dir


def _mark_incomplete(exp_dir: Path) -> None:
    """Remove model.yaml: the dir holds no finished model until this run writes its own."""
    p = exp_dir / "model.yaml"
    if p.exists():
        p.unlink()


def param_checksum(model) -> float:
    """A position-weighted sum of all parameters: differs if any parameter differs."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        w = torch.arange(1, p.numel() + 1, dtype=torch.float64) / p.numel()
        total += (i + 1) * float((p.detach().double().flatten().cpu() * w).sum())
    return total


def _all_reduce_ratio(num: float, den: float, world: int, device) -> float:
    if world > 1:
        import torch.distributed as dist

        t = torch.tensor([num, den], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        num, den = float(t[0]), float(t[1])
    return num / max(den, 1)


def _features_of(data_dir) -> dict:
    return asdict(load_fbank_config(data_dir))


def _bpe_model(lang_dir) -> Path | None:
    p = Path(lang_dir) / "bpe.model"
    return p if p.is_file() else None


def write_curves(exp_dir: Path, history: list[dict]) -> None:
    """``train.tsv`` (one row per epoch) and ``train.png`` (train and validation loss)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["epoch", "train_loss", "valid_loss", "lr", "seconds"]
    with atomic_open(exp_dir / "train.tsv", "w") as f:
        f.write("\t".join(cols) + "\n")
        for h in history:
            f.write("\t".join(str(h[c]) for c in cols) + "\n")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(ep, [h["valid_loss"] for h in history], "s-", label="valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("CTC loss per token")
    ax.set_title(exp_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(exp_dir / "train.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
