"""Pack's bit allocation: k-means widths per tensor from measured sensitivity under a byte budget
(or one uniform grid step for all: :func:`plan_step`).

``asrcomp pack --target-bytes N`` replaces the fixed ``--bits`` rules by a plan:

1. sensitivity (:func:`measure_sensitivity`): for every quantised tensor ``t`` and every
   candidate width ``b`` (``bits_choices``, e.g. 2..6), the validation CTC loss per token with
   only ``t`` k-means-quantised at ``b`` (the same k-means, pruned zeros kept, that pack then
   applies; or the uniform grid of width ``b``, with ``quantizer: uniform``) minus the loss of
   the unquantised model, ``dloss[t, b]``, on the first
   ``sensitivity_batches`` batches of the validation set in the order the training sampler
   draws from the seed (fixed, so a rerun measures the same);
2. size: ``nbytes[t, b]``, what that quantised tensor takes in ``model.acz`` with the chosen
   coder (:func:`asrcomp.compress.pack_format.coded_bytes`: codebook, index and gap streams,
   code tables -- exact for Huffman; the assignments, and so the streams, do not change in the
   centroid fine-tuning that follows);
3. choice (:func:`allocate_bits`): the widths minimising ``sum_t dloss[t, b_t]`` subject to
   ``sum_t nbytes[t, b_t] <= target - rest``, ``rest`` being the bytes of everything else in
   the file (unshared tensors, header, bpe.model, checksum) measured by a trial pack; a trial
   pack of the chosen widths checks the whole file, and tightens the budget by any excess.

Summing per-tensor loss increases assumes their effects add (the usual first-order
assumption, as in HAWQ-style mixed-precision allocation); the table is in
``bit_allocation.tsv`` so the assumption can be checked against the packed model's loss.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from asrcomp.compress.pack_format import coded_bytes
from asrcomp.compress.share import share_tensor
from asrcomp.train import TrainConfig, batches, collate, ctc_loss_sum, load_ctc_data
from asrcomp.utils import atomic_open

log = logging.getLogger(__name__)

TABLE_NAME = "bit_allocation.tsv"
TABLE_COLS = ["tensor", "params", "nonzeros", "bits", "delta_loss", "bytes", "chosen"]


def allocate_bits(dloss, nbytes, budget: int) -> np.ndarray:
    """The choice per row minimising the summed loss under a byte budget (exact).

    ``dloss``: ``(T, W)`` float, the loss increase of tensor ``t`` at option ``w``;
    ``nbytes``: ``(T, W)`` non-negative int, its bytes at that option; ``budget``: int.
    Returns ``choice``, ``(T,)`` int64 indices into ``W``, minimising
    ``sum_t dloss[t, choice[t]]`` subject to ``sum_t nbytes[t, choice[t]] <= budget``; among
    equal losses the fewest bytes. ValueError when even the cheapest options exceed the budget.

    A multiple-choice knapsack, solved by dynamic programming over the tensors on the Pareto
    front of (bytes, loss) partial sums: a partial choice is dropped when another has no more
    bytes and no more loss, or when its bytes plus the cheapest completion exceed the budget.
    The front holds at most ``budget + 1`` points (one per byte total); in practice (losses
    real-valued, smoothly growing with fewer bits) far fewer.
    """
    dloss = np.asarray(dloss, dtype=np.float64)
    nbytes = np.asarray(nbytes, dtype=np.int64)
    if dloss.shape != nbytes.shape or dloss.ndim != 2 or dloss.shape[1] == 0:
        raise ValueError(f"dloss {dloss.shape} and nbytes {nbytes.shape} must both be (T, W), W >= 1")
    T = dloss.shape[0]
    rest_min = np.concatenate([np.cumsum(nbytes.min(axis=1)[::-1])[::-1], [0]])  # cheapest completion from t
    if rest_min[0] > budget:
        raise ValueError(f"the cheapest choice takes {int(rest_min[0])} bytes, over the budget of {budget}")
    fb, fl = np.zeros(1, np.int64), np.zeros(1)  # the front: bytes, loss
    back = []  # per tensor: (parent index into the previous front, option) of each point
    for t in range(T):
        cb = (fb[:, None] + nbytes[t][None, :]).ravel()
        cl = (fl[:, None] + dloss[t][None, :]).ravel()
        parent = np.repeat(np.arange(len(fb)), nbytes.shape[1])
        opt = np.tile(np.arange(nbytes.shape[1]), len(fb))
        ok = cb + rest_min[t + 1] <= budget
        cb, cl, parent, opt = cb[ok], cl[ok], parent[ok], opt[ok]
        order = np.lexsort((cl, cb))  # by bytes, then loss
        cb, cl, parent, opt = cb[order], cl[order], parent[order], opt[order]
        best_before = np.concatenate([[np.inf], np.minimum.accumulate(cl)[:-1]])
        keep = cl < best_before  # strictly better than every cheaper-or-equal point
        fb, fl = cb[keep], cl[keep]
        back.append((parent[keep], opt[keep]))
    i = int(np.argmin(fl))  # the first minimum: the fewest bytes among the best
    choice = np.zeros(T, np.int64)
    for t in range(T - 1, -1, -1):
        parent, opt = back[t]
        choice[t] = opt[i]
        i = int(parent[i])
    return choice


def sensitivity_batches(valid_dir, lang_dir, model: nn.Module, cfg: TrainConfig, n: int) -> list[tuple]:
    """The first ``n`` validation batches (collated) in the order the sampler draws from ``cfg.seed``."""
    data = load_ctc_data(valid_dir, lang_dir, model.subsampling_factor)
    out = []
    for b in batches(data, cfg.max_frames, cfg.seed, 0, shuffle=True):
        out.append(collate(data, b))
        if len(out) == n:
            break
    return out


def device_of(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


@torch.no_grad()
def batch_loss(model: nn.Module, data: list[tuple], device) -> float:
    """CTC loss per target token over the collated batches ``data``."""
    total, tokens = 0.0, 0
    for x, x_lens, y, y_lens in data:
        total += float(ctc_loss_sum(model, x.to(device), x_lens.to(device), y.to(device), y_lens.to(device)))
        tokens += int(y_lens.sum())
    return total / max(tokens, 1)


@torch.no_grad()
def measure_sensitivity(model: nn.Module, names: list[str], widths: list[int], data: list[tuple], device,
                        coder: str = "huffman", index_bits: int | None = None,
                        quantizer: str = "kmeans") -> tuple[np.ndarray, np.ndarray, float]:
    """``(dloss (T, W), nbytes (T, W), base loss)``: per tensor of ``names`` and width of ``widths``,
    the loss increase on ``data`` with only that tensor k-means-quantised, and its coded bytes.
    ``model`` is left as it was (moved to ``device``, in eval mode)."""
    was_training = model.training
    model.to(device).eval()
    params = dict(model.named_parameters())
    base = batch_loss(model, data, device)
    dloss = np.zeros((len(names), len(widths)))
    nbytes = np.zeros((len(names), len(widths)), np.int64)
    for i, name in enumerate(names):
        p = params[name]
        keep = p.detach().clone()
        for j, b in enumerate(widths):
            new, _, _ = share_tensor(keep, b, name, quantizer)
            nbytes[i, j] = coded_bytes(new, coder, index_bits)
            p.copy_(torch.from_numpy(new).view_as(p).to(p.device, p.dtype))
            dloss[i, j] = batch_loss(model, data, device) - base
        p.copy_(keep)
    model.train(was_training)
    return dloss, nbytes, base


def plan_bits(model: nn.Module, names: list[str], widths: list[int], target: int, data: list[tuple], device,
              file_bytes, coder: str = "huffman", index_bits: int | None = None, tries: int = 4,
              quantizer: str = "kmeans"):
    """Widths per tensor for a ``target``-byte file: ``(bits {name: width}, rows for the table, info)``.

    ``file_bytes(bits)``: the size of the file pack writes with those widths and no fine-tuning
    (a trial pack). ``info``: base loss, the rest of the file, the estimate (rest + chosen
    tensors' bytes), the trial pack's size, the predicted loss increase. ValueError when the
    target is below the smallest file the widths allow.
    """
    dloss, nbytes, base = measure_sensitivity(model, names, widths, data, device, coder, index_bits, quantizer)
    cheapest = {n: widths[int(np.argmin(nbytes[i]))] for i, n in enumerate(names)}
    smallest = file_bytes(cheapest)
    rest = smallest - int(nbytes.min(axis=1).sum())
    budget = target - rest
    if budget < int(nbytes.min(axis=1).sum()):
        raise ValueError(f"target {target:,} bytes is below the smallest file these widths give, "
                         f"{smallest:,} bytes (every tensor at its cheapest of {widths} bits)")
    for _ in range(tries):
        choice = allocate_bits(dloss, nbytes, budget)
        bits = {n: widths[int(choice[i])] for i, n in enumerate(names)}
        est = rest + int(nbytes[np.arange(len(names)), choice].sum())
        trial = file_bytes(bits)
        if trial <= target:
            break
        log.warning("bit allocation: the trial pack takes %d bytes, the estimate %d; target %d: tightening",
                    trial, est, target)
        # below what the chosen widths take, not the budget: a choice with slack would come back
        budget = min(budget, est - rest) - (trial - target)
    else:
        raise ValueError(f"could not fit {target:,} bytes: the trial packs stay above it (last {trial:,})")
    rows = []
    for i, n in enumerate(names):
        p = model.get_parameter(n)
        nnz = int((p != 0).sum())
        for j, b in enumerate(widths):
            rows.append({"tensor": n, "params": p.numel(), "nonzeros": nnz, "bits": b,
                         "delta_loss": round(float(dloss[i, j]), 6), "bytes": int(nbytes[i, j]),
                         "chosen": int(choice[i] == j)})
    info = {"target_bytes": int(target), "base_loss": round(base, 6), "rest_bytes": int(rest),
            "estimated_bytes": int(est), "trial_bytes": int(trial),
            "predicted_delta_loss": round(float(dloss[np.arange(len(names)), choice].sum()), 6)}
    return bits, rows, info


def format_table(rows: list[dict]) -> list[str]:
    """The chosen width of each tensor and its neighbours' numbers, for the log."""
    lines = ["tensor  bits: delta_loss/bytes (* = chosen)"]
    by = {}
    for r in rows:
        by.setdefault(r["tensor"], []).append(r)
    for name, rs in by.items():
        cells = [f"{'*' if r['chosen'] else ''}{r['bits']}: {r['delta_loss']:+.4f}/{r['bytes']}" for r in rs]
        lines.append(f"{name}  " + "  ".join(cells))
    return lines


def write_table(path, rows: list[dict], info: dict) -> None:
    """``bit_allocation.tsv``: one row per (tensor, width), then ``# key<TAB>value`` summary lines."""
    with atomic_open(path, "w") as f:
        f.write("\t".join(TABLE_COLS) + "\n")
        for r in rows:
            f.write("\t".join(str(r[c]) for c in TABLE_COLS) + "\n")
        for k, v in info.items():
            f.write(f"# {k}\t{v}\n")


def plan_step(weights: list[np.ndarray], target: int, file_bytes, rel_tol: float = 1e-4, max_trials: int = 40):
    """The finest grid step shared by every tensor of ``weights`` whose file fits ``target`` bytes.

    ``file_bytes(step)``: the size of the file pack writes with that one uniform step (a trial
    pack). Bisection on ``log(step)`` between a step finer than any tensor needs
    (``min rms * 2**-10``) and one that rounds every weight to 0 (``2.01 * max |w|``), until the
    bracket is within ``rel_tol``; the file shrinks as the step grows, though not strictly, so
    the answer is the finest *measured* step that fits. Returns ``(step, its bytes, trials
    [(step, bytes)])``; ValueError when even the all-zero grid does not fit.
    """
    flat = [np.asarray(w, dtype=np.float64).ravel() for w in weights if np.size(w)]
    if not flat:
        raise ValueError("no shared weights to place on a grid")
    rms = [float(np.sqrt(np.mean(np.square(w)))) for w in flat]
    peak = max(float(np.abs(w).max()) for w in flat)
    hi = 2.01 * peak if peak > 0 else 1.0
    lo = min([r for r in rms if r > 0] or [hi]) * 2.0 ** -10
    trials = [(hi, file_bytes(hi))]
    if trials[0][1] > target:
        raise ValueError(f"target {target:,} bytes is below the smallest file one grid step gives, "
                         f"{trials[0][1]:,} bytes (every shared weight 0)")
    best = trials[0]
    trials.append((lo, file_bytes(lo)))
    if trials[-1][1] <= target:
        return lo, trials[-1][1], trials
    while hi / lo > 1 + rel_tol and len(trials) < max_trials:
        mid = float(np.sqrt(lo * hi))
        trials.append((mid, file_bytes(mid)))
        if trials[-1][1] <= target:
            hi, best = mid, trials[-1]
        else:
            lo = mid
    return best[0], best[1], trials


def grid_widths(model: nn.Module, names: list[str]) -> dict[str, int]:
    """``{name: ceil(log2(distinct values))}`` (at least 1): the index width each shared tensor of
    a one-step grid ended with, for the report and the history."""
    out = {}
    for n in names:
        levels = int(torch.unique(model.get_parameter(n).detach()).numel())
        out[n] = max(1, int(np.ceil(np.log2(max(levels, 2)))))
    return out
