"""Deep Compression's weight sharing (Han, Mao, Dally 2016): per-tensor k-means, kept tied while fine-tuning.

Which tensors are shared (:func:`quantised_names`: floating parameters with >= 2 dims or
more than ``MAX_SMALL`` elements), the k-means itself (:func:`share_tensor` for one tensor,
:func:`share_weights` for a model, pruned zeros kept), the :class:`ShareHooks` that keep each
weight equal to its cluster's mean through fine-tuning (trained quantisation: the centroids
learn from the summed gradients of their weights) or, :class:`SteShareHooks`, train latent
weights straight through the sharing and re-assign them to clusters after every step, and
:func:`round_small` for the other tensors, stored as float16 or as 8-bit codes on a
power-of-two grid (:func:`grid_codes`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from asrcomp.compress.kmeans import quantize
from asrcomp.compress.uniform import quantize_grid, quantize_uniform

MAX_SMALL = 1024  # floating tensors with < 2 dims and at most this many elements are stored as float16
SMALL_BITS = (16, 8)  # how those are stored: float16, or 8-bit codes on a power-of-two grid
QUANTIZERS = ("kmeans", "uniform")  # how a tensor's shared values are chosen
SPARSE_MIN_ZEROS = 0.1  # a quantised tensor with at least this fraction of exact zeros keeps them (pruned)


def quantised_names(model: nn.Module) -> list[str]:
    """Parameters that get k-means weight sharing: floating, >= 2 dims or > MAX_SMALL elements."""
    return [n for n, p in model.named_parameters()
            if p.is_floating_point() and (p.dim() >= 2 or p.numel() > MAX_SMALL)]


class ShareHooks:
    """FitHooks callbacks keeping each quantised parameter tied to its clusters.

    ``assign[name]``: flat int64 cluster index per weight, ``k`` (one past the clusters)
    for pruned weights, which stay exactly 0.

    This is Deep Compression's trained quantisation (Han et al. 2016, section 3.1), i.e.
    quantisation-aware training of the codebook: the forward pass runs on the shared weights
    ``W_i = c[a_i]``, so ``dL/dc_k = sum over {i: a_i = k} of dL/dW_i`` exactly;
    :meth:`after_backward` writes that sum into the gradient of every member of cluster k, so
    the elementwise optimiser (AdamW or SGD: same gradient, weight and moment history for every
    member) moves them all by the same step, which is the centroid's own update, and
    :meth:`after_step` re-ties them against rounding. No straight-through estimator is involved
    or needed: with the assignments frozen there is no rounding in the forward pass to pass a
    gradient through, and the centroid gradient is exact, not an approximation. (STE training,
    latent float weights re-quantised every step so weights may change cluster, is
    :class:`SteShareHooks`, and what ``asrcomp quantize --epochs`` does for linear quantisation.)
    One departure from training the centroids as parameters of their own: gradient clipping's
    global norm counts each centroid's gradient once per member.
    """

    def __init__(self, assign: dict[str, torch.Tensor], k: dict[str, int]):
        self.assign, self.k = assign, k
        self._dev: dict = {}

    def state_dict(self) -> dict:
        """Assignments and cluster counts, checkpointed with the fine-tuning (``FitHooks.state``);
        the codebooks are the tied weights themselves, in the model's state."""
        return {"assign": {n: a.cpu() for n, a in self.assign.items()}, "k": dict(self.k)}

    def load_state_dict(self, state: dict) -> None:
        if set(state["assign"]) != set(self.assign):
            raise ValueError(f"assignments for {sorted(state['assign'])}, this run shares {sorted(self.assign)}")
        self.assign = {n: a.long() for n, a in state["assign"].items()}
        self.k = {n: int(k) for n, k in state["k"].items()}
        self._dev = {}

    def _items(self, model):
        params = dict(model.named_parameters())
        for name, a in self.assign.items():
            p = params[name]
            key = (name, p.device)
            if key not in self._dev:
                self._dev[key] = a.to(p.device)
            yield name, p, self._dev[key]

    def after_backward(self, model: nn.Module) -> None:
        for name, p, a in self._items(model):
            if p.grad is None:
                continue
            g = torch.zeros(self.k[name] + 1, dtype=p.grad.dtype, device=p.device)
            g.scatter_add_(0, a, p.grad.flatten())
            g[-1] = 0  # pruned weights get no gradient
            p.grad.copy_(g[a].view_as(p.grad))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for name, p, a in self._items(model):
            mean, _ = cluster_means(p.flatten(), a, self.k[name])
            mean[-1] = 0
            p.copy_(mean[a].view_as(p))


def cluster_means(w: torch.Tensor, a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, count)``, both ``(k + 1,)``: the mean of the flat weights ``w`` in each cluster of
    the assignment ``a`` (index ``k``: the pruned weights), 0 for an empty one, and the sizes."""
    cnt = torch.bincount(a, minlength=k + 1)
    s = torch.zeros(k + 1, dtype=w.dtype, device=w.device).scatter_add_(0, a, w)
    return s / cnt.clamp(min=1).to(w.dtype), cnt


class SteShareHooks(ShareHooks):
    """Straight-through fine-tuning of shared weights, on latent float weights that may change cluster.

    The forward and backward passes run on the shared weights ``W_i = c[a_i]``; each weight's own
    gradient ``dL/dW_i`` (straight through the rounding; 0 for pruned weights) updates its latent
    float value ``L_i``. After every step each centroid moves to the mean of its members' latent
    values and each unpruned weight is re-assigned to its nearest centroid (one Lloyd step of
    k-means on the latent weights), so training can move weights across clusters, which the tied
    fine-tuning of :class:`ShareHooks` cannot. The number of centroids and the pruning mask stay
    as they are; the index statistics, and so the coded size, may change. Latent weights and
    codebooks (``book[name]``: ``(k,)``) are checkpointed with the assignments.
    """

    def __init__(self, assign: dict[str, torch.Tensor], k: dict[str, int], latent: dict[str, torch.Tensor],
                 book: dict[str, torch.Tensor]):
        super().__init__(assign, k)
        self.latent = {n: t.detach().flatten().float().clone() for n, t in latent.items()}
        self.book = {n: t.detach().float().clone() for n, t in book.items()}

    def state_dict(self) -> dict:
        return dict(super().state_dict(), latent={n: t.cpu() for n, t in self.latent.items()},
                    book={n: t.cpu() for n, t in self.book.items()})

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.latent = {n: t.float() for n, t in state["latent"].items()}
        self.book = {n: t.float() for n, t in state["book"].items()}

    def after_backward(self, model: nn.Module) -> None:
        """Gradients stay per weight (pruned ones zeroed); the parameters take their latent values,
        so that the optimiser step updates those."""
        with torch.no_grad():
            for name, p, a in self._items(model):
                if p.grad is not None:
                    p.grad.masked_fill_((a == self.k[name]).view_as(p.grad), 0)
                p.copy_(self.latent[name].to(p.device, p.dtype).view_as(p))

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Latent := the updated parameters; one Lloyd step; parameters := the shared values."""
        params = dict(model.named_parameters())
        for name in self.assign:
            p, k = params[name], self.k[name]
            lat = p.detach().flatten().float()
            a = self.assign[name].to(p.device)
            mean, cnt = cluster_means(lat, a, k)
            book = torch.where(cnt[:k] > 0, mean[:k], self.book[name].to(lat.device))  # empty: kept
            live = a != k
            if k:
                a = a.clone()
                a[live] = (lat[live, None] - book[None, :]).abs().argmin(1)
            self.latent[name], self.book[name], self.assign[name] = lat.cpu().clone(), book.cpu(), a.cpu()
            p.copy_(torch.cat([book, book.new_zeros(1)])[a].view_as(p).to(p.dtype))
        self._dev = {}


def share_tensor(w: torch.Tensor, bits: int, name: str = "values", quantizer: str = "kmeans",
                 step: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """k-means (or, ``quantizer`` uniform, the uniform grid of :mod:`asrcomp.compress.uniform`) of
    one tensor, its exact zeros kept when it is sparse: ``(shared values float32, flat,
    assignment int64 flat (``k`` for the kept zeros), k)``; ``w`` itself is not changed. The
    uniform grid's zero level joins the kept zeros, so fine-tuning leaves it at exactly 0 (and
    the file the size the bit allocation measured). ``step`` (uniform only): the grid's step,
    instead of the one width ``bits`` gives."""
    w = w.detach().cpu().flatten().numpy().astype(np.float64)
    nz = w != 0
    sparse = (1 - nz.mean()) >= SPARSE_MIN_ZEROS
    vals = w[nz] if sparse else w
    if quantizer not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {quantizer!r}: one of {', '.join(QUANTIZERS)}")
    if step is not None and quantizer != "uniform":
        raise ValueError(f"{name}: a grid step needs the uniform quantizer, not {quantizer!r}")
    if not vals.size:
        book, idx = np.zeros(0, np.float32), np.zeros(0, np.int64)
    elif step is not None:
        book, idx = quantize_grid(vals, step, name)
    else:
        book, idx = (quantize if quantizer == "kmeans" else quantize_uniform)(vals, bits, name=name)
    if quantizer == "uniform" and (book == 0).any():  # the grid's zero level stays 0, like pruned weights
        q = np.zeros(w.size, np.float32)
        q[nz if sparse else slice(None)] = book[idx]
        nz, sparse = q != 0, True
        book, idx = np.unique(q[nz], return_inverse=True)
        idx = idx.ravel()
    k = len(book)
    a = np.full(w.size, k, dtype=np.int64)
    if sparse:
        a[nz] = idx
    else:
        a[:] = idx
    return np.append(book, np.float32(0))[a], a, k


def share_weights(model: nn.Module, bits: dict[str, int], quantizer: str = "kmeans",
                  step: float | None = None, ste: bool = False) -> ShareHooks:
    """k-means (or uniform grid) each named parameter in place (pruned zeros stay 0); the hooks
    that keep it so: tied (:class:`ShareHooks`) or, ``ste``, straight-through on the weights as
    they were before sharing (:class:`SteShareHooks`). ``step``: one uniform grid step for them
    all (``bits`` only names them)."""
    params = dict(model.named_parameters())
    assign, ks, latent, book = {}, {}, {}, {}
    with torch.no_grad():
        for name, b in bits.items():
            p = params[name]
            if ste:  # the latent weights start where the weights were before sharing
                latent[name] = p.detach().flatten().float().cpu().clone()
            new, a, k = share_tensor(p, b, name, quantizer, step)
            p.copy_(torch.from_numpy(new).view_as(p).to(p.device, p.dtype))
            assign[name], ks[name] = torch.from_numpy(a), k
            if ste:
                live = assign[name] < k
                book[name] = torch.zeros(k).scatter_(0, assign[name][live], torch.from_numpy(new)[live])
    return SteShareHooks(assign, ks, latent, book) if ste else ShareHooks(assign, ks)


def round_small(model: nn.Module, quantised: set[str], bits: int = 16) -> None:
    """Round every non-quantised floating tensor (params and buffers) in place to what the packed
    file stores: float16 values (``bits`` 16) or its :func:`grid_codes` grid (``bits`` 8; a
    constant tensor is left as it is: the file holds its one value). With ``bits`` 8 the
    multiplicative vectors (:func:`scale_names`) stay float16: an absolute grid step wipes out
    a batch norm's small scales when a few are large (folded ones reached 310 beside 0.1 on
    speechocean762, and the model emitted only blanks)."""
    if bits not in SMALL_BITS:
        raise ValueError(f"small tensors are stored in {' or '.join(map(str, SMALL_BITS))} bits, not {bits}")
    scales = scale_names(model)
    with torch.no_grad():
        for name, t in model.state_dict(keep_vars=True).items():
            if name in quantised or not t.is_floating_point():
                continue
            if bits == 16 or name in scales:
                h = t.half()
                if bool((torch.isfinite(h) | ~torch.isfinite(t)).all()):
                    t.data.copy_(h.to(t.dtype))
            elif t.numel() and bool(torch.isfinite(t).all()) and not is_constant(t):
                e, k0, codes = grid_codes(t.detach().cpu().numpy(), bits)
                t.data.copy_(torch.from_numpy(grid_values(e, k0, codes)).view_as(t).to(t.device, t.dtype))


def scale_names(model: nn.Module) -> set[str]:
    """State-dict names of the batch norms' multiplicative vectors (weight, running_var)."""
    return {f"{n}.{v}" if n else v for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) for v in ("weight", "running_var")}


def is_constant(t: torch.Tensor) -> bool:
    """Every element equal (a file stores such a tensor as one value)."""
    return t.numel() > 0 and bool((t == t.flatten()[0]).all())


def grid_codes(x: np.ndarray, bits: int) -> tuple[int, int, np.ndarray]:
    """``(e, k0, codes)`` with ``x ~= (k0 + codes) * 2**e``: the finest power-of-two step whose
    ``2**bits`` levels span ``x`` (finite, any shape); ``codes`` uint8/uint16 of ``x``'s shape.

    The step is a power of two and every level a float32 (``e`` is at least the exponent of
    ``max |x|`` minus 23), so values already on a grid code to themselves: rounding a model to
    its grid and packing it gives a file that unpacks to exactly that model.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi, levels = float(x.min()), float(x.max()), (1 << bits) - 1
    e = int(np.ceil(np.log2((hi - lo) / levels))) if hi > lo else -149
    e = max(e, int(np.frexp(max(abs(lo), abs(hi)))[1]) - 24, -149)
    while round(hi / 2.0 ** e) - round(lo / 2.0 ** e) > levels:  # rounding at the ends
        e += 1
    k0 = int(round(lo / 2.0 ** e))
    codes = np.rint(x / 2.0 ** e) - k0
    return e, k0, codes.astype(np.uint8 if bits <= 8 else np.uint16)


def grid_values(e: int, k0: int, codes: np.ndarray) -> np.ndarray:
    """float32 ``(k0 + codes) * 2**e`` (exact: every level is a float32)."""
    return ((k0 + codes.astype(np.float64)) * 2.0 ** e).astype(np.float32)
