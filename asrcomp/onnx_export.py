"""ONNX export of a model dir (``asrcomp export-onnx``), its int8 / fp16 variants, and onnxruntime decoding.

An exported dir is a model dir for deployment::

    model.onnx   inputs  x: (N, T, 80) float32 raw fbank, x_lens: (N,) int64
                 outputs log_probs: (N, T', V) float32, log_probs_len: (N,) int64
    tokens.txt   the model's token table (sherpa-onnx reads it)
    lexicon.txt  (phone models) the source dir's lexicon, to score the greedy phone output
    model.yaml   the source's model.yaml plus an ``onnx:`` section (what is baked in, bytes,
                 quantisation) and a history entry

**Why sherpa-onnx's ``zipformer2_ctc`` model type.** sherpa-onnx 2.0.1 has these offline CTC
model types (``offline-ctc-model.cc``): ``tdnn`` runs the graph with one input ``(N, T, 80)``
and takes ``T`` as the output length, so a model that subsamples would be decoded past its
end; ``wenet_ctc`` scales samples to int16 and turns dither on; ``EncDecCTCModel*`` (NeMo)
wants ``(N, C, T)`` librosa features with per-utterance normalisation. ``zipformer2_ctc``
feeds ``(x, x_lens)`` with Kaldi fbank in [-1, 1] (the options ``asrcomp`` uses), pads a
batch with ``log(1e-10)`` and takes ``(log_probs, log_probs_len)`` back, so a subsampling
TDNN or DNN fits it exactly. It reads the vocabulary size from the static last dimension of
output 0 (set here) and needs no other metadata; its timestamps assume subsampling 4.

**CMVN.** sherpa-onnx has no per-speaker CMVN, so the exported graph starts with one it can
compute from raw fbank (``--cmvn``): ``global``, ``(x - mean) / std`` from the training data's
CMVN stats (the sum over its speakers), or ``utterance``, mean and variance over each
utterance's own valid frames (an offline recogniser sees the whole utterance; this is the
nearest to per-speaker CMVN when a speaker's voice is far from the training mean, as
children's are). What each costs in WER is what ``decode-onnx`` shows against ``asrcomp decode``
(per-speaker CMVN).

**Decoding options.** sherpa-onnx's FST decoder has no acoustic scale or blank penalty, so
both may be baked into the output (``log_probs * scale``, then ``- penalty`` on blank), as
``asrcomp decode`` applies them before its TLG search; greedy search then sees them too.

**Factorised layers stay factorised**: SVD layers are two MatMul nodes, TT-matrix layers
a chain of MatMuls with their cores (rewritten from einsum so that int8 quantisation reaches
them and onnxruntime runs them with its GEMM), Tucker and CP layers MatMuls with their
factors. :func:`weight_report` counts the weights that MatMul/Conv/Gemm nodes read.

**Time-major TDNNs** (:class:`TdnnOnnx`). A TDNN or TDNN-F is exported in the graph's own
``(N, T, C)`` layout, every Conv1d as an im2col (a Concat of time slices) and MatMul(s), instead
of tracing the PyTorch ``(N, C, T)`` forward. Measured with onnxruntime 1.32 on one thread
(``bench/onnx_rtf.py``, the recipe's TDNN): the traced graph ran a TT layer's unfold as a
``(N, C, T', K)`` stack and a 3-element-block Transpose (about as slow as the TT's own GEMMs),
so the TT model was slower than the dense one; and dynamic int8 turned every Conv into a
ConvInteger, about 3x slower than the float Conv, where a MatMul becomes a MatMulInteger
about 2.5x faster than the float MatMul. Time-major, the only Transposes left are the TT
chain's (2 per TT layer, cheap), and the length arithmetic is a few nodes, not a dozen per layer.
A TT conv layer's in-modes index its in-major columns ``c K + k``: with modes ``(C, K)`` (e.g.
``384x3``) its first GEMM reads the tap-major im2col rows as they are, ``(M, K, C)``, one
Transpose per layer; any other split needs the channel-major interleave of the taps (a Concat of
1-element blocks) and a Transpose, which in dynamic int8 cost more than the TT saves in GEMMs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from asrcomp.compress.pack import unpack
from asrcomp.datadir import read_data_dir, read_table, write_table
from asrcomp.decode import DecodeOptions, TlgDecoder, ctc_greedy, tokens_to_words
from asrcomp.decode_dir import check_features_match, decode_dirs, merge_and_score, read_durations
from asrcomp.lang import read_symbol_table
from asrcomp.modeldir import _plain, check_token_set, load_model_dir, read_model_yaml
from asrcomp.nnet.factorized import FactorizedDense, LowRankConv1d, TtDense, TuckerDense, set_module
from asrcomp.nnet.tdnn import Tdnn, TdnnLayer
from asrcomp.nnet.tdnnf import Tdnnf, TdnnfLayer
from asrcomp.utils import InputError, atomic_open, atomic_path

log = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
LEXICON = "lexicon.txt"  # scores a phone model's greedy output; copied beside model.onnx
OPSET = 17
INPUTS = ("x", "x_lens")
OUTPUTS = ("log_probs", "log_probs_len")
SHERPA_MODEL_TYPE = "zipformer2_ctc"


# ----------------------------------------------------------------------------- export-friendly modules

class TtDenseOnnx(FactorizedDense):
    """The contraction of a :class:`~asrcomp.nnet.factorized.TtDense`, one MatMul per core.

    Step k turns ``t: (M, c_k, C_rest O_done, r_{k-1})`` by one Transpose into
    ``(M, C_rest O_done, c_k r_{k-1})`` and by one MatMul with ``(c_k r_{k-1}, o_k r_k)`` (a single
    GEMM over all ``M C_rest O_done`` rows) into ``(M, C_rest, O_done o_k, r_k)``; the right factor
    is the core permuted, a constant of the graph (same numbers, same count as the core). With two
    cores (``modes: 2``) the first core's columns are ``(r_1, o_1)``: the intermediate is then
    ``(M, c_2 r_1, o_1)`` and one 3-D Transpose puts ``(c_2, r_1)`` last.
    """

    def __init__(self, tt):
        super().__init__(tt.in_features, tt.out_features, tt.bias is not None, tt.conv)
        self.col_shape = list(tt.col_shape)
        if tt.bias is not None:
            self.bias.data.copy_(tt.bias.detach())
        # two cores: the first one's columns (r_1, o_1), so that the step between the GEMMs is a 3-D
        # Transpose (onnxruntime's fast single-axis case) instead of a 4-D one with r_1-element blocks
        self.two = len(tt.cores) == 2
        self.mats = nn.ParameterList(
            nn.Parameter(core.detach().permute((2, 0, 3, 1) if self.two and k == 0 else (2, 0, 1, 3))
                         .reshape(core.shape[2] * core.shape[0], -1).clone())
            for k, core in enumerate(tt.cores))
        self.core_shapes = [tuple(c.shape) for c in tt.cores]

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        return patches(x, self.conv, self.in_features)

    @property
    def tap_major(self) -> bool:
        """Whether a conv layer's in-modes are ``(C, K)``: its first GEMM then reads tap-major im2col rows
        as they are, ``(M, K, C)``, with no channel-major interleave and no Transpose (:class:`ConvRows`)."""
        return self.two and self.conv is not None and self.col_shape[1] == self.conv["kernel"]

    def apply_rows(self, x: torch.Tensor) -> torch.Tensor:
        if self.two:
            c1, c2 = self.col_shape
            return self.apply_tap_rows(x.reshape(-1, c1, c2).transpose(1, 2))
        c_rest, o_done = self.in_features, 1
        t = x  # (M, c_1, C_rest): O_done = r_0 = 1
        for mat, (r, o, c, s) in zip(self.mats, self.core_shapes):
            c_rest //= c
            rest = c_rest * o_done
            if rest > 1:  # (M, c, C_rest O_done, r) -> (M, C_rest O_done, c, r): one Transpose
                t = (t.reshape(-1, c, rest) if r == 1 else t.reshape(-1, c, rest, r)).transpose(1, 2)
            t = t.reshape(-1, rest, c * r) @ mat  # (M, C_rest O_done, o s): one GEMM over all rows
            o_done *= o
        return t.reshape(-1, self.out_features)

    def apply_tap_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Two cores: ``x`` the rows with the in-modes swapped, ``(M, c_2, c_1)`` (for a :attr:`tap_major`
        conv, its tap-major im2col rows ``(M, K C)``) -> ``(M, out)``."""
        (_, o1, c1, r1), (_, _, c2, _) = self.core_shapes
        t = x.reshape(-1, c2, c1) @ self.mats[0]  # (M, c_2, r_1 o_1)
        t = t.reshape(-1, c2 * r1, o1).transpose(1, 2) @ self.mats[1]  # (M, o_1, c_2 r_1) -> (M, o_1, o_2)
        return t.reshape(-1, self.out_features)


class DnnOnnx(nn.Module):
    """:class:`~asrcomp.nnet.dnn.Dnn` without data-dependent shapes: every output frame of every
    row is spliced and run (padding frames are then set to ``-log V``, as the Dnn does)."""

    def __init__(self, dnn):
        super().__init__()
        self.dnn = dnn

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.dnn
        k, s = d.subsampling_factor, d.splice
        out_lens = torch.div(x_lens - 1, k, rounding_mode="floor") + 1
        n, t, f = x.shape[0], x.shape[1], x.shape[2]
        t_out = torch.div(t - 1, k, rounding_mode="floor") + 1
        centre = torch.arange(t_out) * k  # (T',)
        idx = centre[None, :, None] + torch.arange(-s, s + 1)[None, None, :]  # (1, T', 2s+1)
        last = (x_lens - 1).clamp(min=0)[:, None, None]
        idx = torch.minimum(idx.clamp(min=0), last)  # (N, T', 2s+1)
        rows = torch.gather(x, 1, idx.reshape(n, -1, 1).expand(-1, -1, f))  # (N, T'(2s+1), F)
        h = rows.reshape(-1, (2 * s + 1) * f)
        for layer in d.layers:
            h = layer(h)
        lp = d.output(h).float().log_softmax(dim=-1).reshape(n, -1, d.num_tokens)
        valid = torch.arange(t_out)[None, :] < out_lens[:, None]
        return lp.masked_fill(~valid[:, :, None], -math.log(d.num_tokens)), out_lens


def _out_frames(n: torch.Tensor, kernel: int, dilation: int, stride: int, pad: tuple[int, int]) -> torch.Tensor:
    """Output frames of a conv for ``n`` input frames (a tensor: traced), ``floor((n + c) / stride) + 1`` with
    ``c = pad - dilation (kernel - 1) - 1``, in as few graph nodes as the constants allow: none for a
    stride-1 conv that keeps the length, an Add for one that does not, a truncating Div (exact when its
    numerator cannot be negative, as for every Kaldi context: ``c >= -1``) rather than the dozen
    nodes of ``torch.div(rounding_mode="floor")``."""
    c = pad[0] + pad[1] - dilation * (kernel - 1) - 1
    if stride == 1:
        return n + (c + 1) if c + 1 else n
    if c + stride >= 0:
        return torch.div(n + (c + stride), stride, rounding_mode="trunc")
    return torch.div(n + c, stride, rounding_mode="floor") + 1


def im2col(h: torch.Tensor, kernel: int, dilation: int, stride: int, pad: tuple[int, int],
           channel_major: bool = False) -> torch.Tensor:
    """Time-major im2col: ``h: (N, T, C) -> (N, T', K C)``, the K taps of each output frame side by side,
    tap-major (column ``k C + c``: one Concat of K time slices, each copying whole frames) or with
    ``channel_major`` in the column order ``c K + k`` of the factorised layers (the slices stacked on
    a new last axis, about as cheap; a Transpose of tap-major rows, with its 3-element blocks, is
    not, nor is the ``(N, C, T', K)`` stack of channel-major activations that PyTorch unfolds)."""
    if pad[0] or pad[1]:
        h = nn.functional.pad(h, (0, 0, pad[0], pad[1]))
    if kernel == 1 and stride == 1:
        return h
    t_out = _out_frames(h.shape[1], kernel, dilation, stride, (0, 0))
    cols = [h.narrow(1, i * dilation, (t_out - 1) * stride + 1) for i in range(kernel)]
    if stride > 1:
        cols = [c[:, ::stride] for c in cols]
    if kernel == 1:
        return cols[0]
    if channel_major:
        return torch.stack(cols, dim=3).flatten(2)
    return torch.cat(cols, dim=2)


def _tap_major(conv: nn.Conv1d) -> torch.Tensor:
    """A Conv1d weight ``(out, C, K)`` as the ``(K C, out)`` right factor of :func:`im2col` rows (same numbers)."""
    if conv.groups != 1 or not isinstance(conv.padding, tuple):
        raise ValueError("only ungrouped Conv1d with numeric padding exports time-major")
    w = conv.weight.detach()
    return w.permute(2, 1, 0).reshape(w.shape[2] * w.shape[1], w.shape[0]).clone()


class ConvRows(nn.Module):
    """A Conv1d-like layer on time-major input, ``(N, T, C) -> (N, T', out)``: :func:`im2col`, then MatMuls.

    ``nn.Conv1d``: one MatMul by its weight as ``(K C, out)``; :class:`~asrcomp.nnet.factorized.LowRankConv1d`:
    two, by ``b`` as ``(K C, rank)`` and ``a`` as ``(rank, out)``; a conv
    :class:`~asrcomp.nnet.factorized.FactorizedDense` (export-friendly, see :func:`export_friendly`): its
    ``apply_rows`` on channel-major im2col rows (a TT with modes ``(C, K)``: ``apply_tap_rows`` on
    tap-major ones). ONNX MatMul rather than Conv because onnxruntime's
    dynamic int8 turns MatMul into a fast MatMulInteger but Conv into ConvInteger, several times
    slower than the float Conv. ``pad``: zero frames (left, right) added to the layer's own padding.
    """

    def __init__(self, conv: nn.Module, pad: tuple[int, int] = (0, 0)):
        super().__init__()
        self.rows = self.second = None
        if isinstance(conv, LowRankConv1d):
            first, self.second = conv.b, nn.Parameter(conv.a.weight.detach()[:, :, 0].T.clone())
            bias = conv.a.bias
        elif isinstance(conv, nn.Conv1d):
            first, bias = conv, conv.bias
        elif isinstance(conv, FactorizedDense) and conv.conv is not None:
            first, bias, self.rows = None, conv.bias, conv
            g = conv.conv
            k, d, st, p = g["kernel"], g["dilation"], g["stride"], g["padding"]
        else:
            raise TypeError(f"cannot export a {type(conv).__name__} time-major")
        if first is not None:
            self.weight = nn.Parameter(_tap_major(first))
            k, d, st, p = first.kernel_size[0], first.dilation[0], first.stride[0], first.padding[0]
        self.kernel, self.dilation, self.stride, self.pad = k, d, st, (p + pad[0], p + pad[1])
        # im2col column order: tap-major for the MatMul weights and for a TT with modes (C, K)
        self.tap_major = self.rows is None or getattr(self.rows, "tap_major", False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def out_lens(self, lens: torch.Tensor) -> torch.Tensor:
        return _out_frames(lens, self.kernel, self.dilation, self.stride, self.pad)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = im2col(h, self.kernel, self.dilation, self.stride, self.pad, channel_major=not self.tap_major)
        if self.rows is None:
            y = x @ self.weight
            if self.second is not None:
                y = y @ self.second
        else:
            rows = self.rows.apply_tap_rows if self.tap_major else self.rows.apply_rows
            y = rows(x.reshape(-1, self.rows.in_features)).reshape(h.shape[0], -1, self.rows.out_features)
        return y + self.bias if self.bias is not None else y


def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` over the last axis."""
    if bn.running_mean is None:
        raise ValueError("BatchNorm without running statistics cannot be exported")
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale.clone(), shift.clone()


class TdnnOnnx(nn.Module):
    """:class:`~asrcomp.nnet.tdnn.Tdnn` or :class:`~asrcomp.nnet.tdnnf.Tdnnf` (eval mode) computed time-major.

    The PyTorch models run ``(N, C, T)`` for Conv1d; here every layer keeps ``(N, T, C)`` (the
    graph's input and output layout), so the graph has no layout Transposes, each conv is
    :class:`ConvRows` (im2col + MatMul), BatchNorm a per-channel ``* scale + shift``, and the
    lengths and padding mask are recomputed only where a layer changes the length. The same
    function: padding frames are zeroed after every layer as the models do.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.convs = nn.ModuleList()
        for i, layer in enumerate(model.layers):
            scale, shift = _bn_affine(layer.bn)
            self.register_buffer(f"scale{i}", scale)
            self.register_buffer(f"shift{i}", shift)
            if isinstance(layer, TdnnfLayer):
                self.convs.append(nn.ModuleList([ConvRows(layer.linear, layer.pad_linear),
                                                 ConvRows(layer.affine, layer.pad_affine)]))
            elif isinstance(layer, TdnnLayer):
                conv = ConvRows(layer.conv)
                want = (layer.kernel, layer.dilation, layer.stride, (layer.padding, layer.padding))
                if (conv.kernel, conv.dilation, conv.stride, conv.pad) != want:
                    raise ValueError(f"layer {i}: its conv's geometry differs from the layer's {want}")
                self.convs.append(conv)
            else:
                raise TypeError(f"cannot export a {type(layer).__name__} time-major")

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        pad = (torch.arange(x.shape[1])[None, :] >= x_lens[:, None])[:, :, None]  # (N, T, 1): padding frames
        h, lens = x.masked_fill(pad, 0.0), x_lens
        for i, (layer, conv) in enumerate(zip(m.layers, self.convs)):
            scale, shift = getattr(self, f"scale{i}"), getattr(self, f"shift{i}")
            if isinstance(layer, TdnnfLayer):  # length kept
                b = conv[0](h).masked_fill(pad, 0.0)  # the affine factor reads t+s: padding zero
                y = torch.relu(conv[1](b)) * scale + shift
                h = (layer.bypass_scale * h + y).masked_fill(pad, 0.0)
                continue
            y = torch.relu(conv(h)) * scale + shift
            new = conv.out_lens(lens)
            if new is not lens:
                lens = new
                pad = (torch.arange(y.shape[1])[None, :] >= lens[:, None])[:, :, None]
            h = y.masked_fill(pad, 0.0)
        if getattr(m, "prefinal", None) is not None:
            h = m.prefinal(h)
        return m.output(h).float().log_softmax(dim=-1), lens


class DeployModel(nn.Module):
    """What ``model.onnx`` computes: CMVN, the acoustic model, then scale and blank penalty.

    CMVN: global (``mean``/``std`` given), per utterance (``utterance_cmvn``: mean, and with
    ``norm_vars`` variance, over each row's first ``x_lens`` frames) or none.
    """

    def __init__(self, model: nn.Module, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                 acoustic_scale: float = 1.0, blank_penalty: float = 0.0, utterance_cmvn: bool = False,
                 norm_vars: bool = True, export_form: bool = True):
        super().__init__()
        self.net = model
        if export_form and type(model).__name__ == "Dnn":
            self.net = DnnOnnx(model)
        elif export_form and isinstance(model, (Tdnn, Tdnnf)):
            self.net = TdnnOnnx(model)
        self.num_tokens = model.num_tokens
        self.utterance_cmvn, self.norm_vars = bool(utterance_cmvn), bool(norm_vars)
        self.cmvn = mean is not None
        if self.cmvn:
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float32)))
            self.register_buffer("inv_std", torch.as_tensor(1.0 / np.asarray(std, dtype=np.float32)))
        self.acoustic_scale, self.blank_penalty = float(acoustic_scale), float(blank_penalty)
        pen = torch.zeros(model.num_tokens)
        pen[0] = self.blank_penalty
        self.register_buffer("penalty", pen)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cmvn:
            x = (x - self.mean) * self.inv_std
        elif self.utterance_cmvn:
            x = utterance_cmvn(x, x_lens, self.norm_vars)
        lp, lens = self.net(x, x_lens)
        if self.acoustic_scale != 1.0:
            lp = lp * self.acoustic_scale
        if self.blank_penalty:
            lp = lp - self.penalty
        return lp, lens


def utterance_cmvn(x: torch.Tensor, x_lens: torch.Tensor, norm_vars: bool = True, eps: float = 1e-10) -> torch.Tensor:
    """``x: (N, T, F)`` normalised per row over its first ``x_lens[n]`` frames (Kaldi's ``apply-cmvn``
    with that utterance's own stats; the variance floored at ``eps``). Padding frames stay finite."""
    valid = (torch.arange(x.shape[1], device=x.device)[None, :] < x_lens[:, None]).to(x.dtype)[:, :, None]
    n = valid.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, 1, 1)
    mean = (x * valid).sum(dim=1, keepdim=True) / n
    x = x - mean
    if norm_vars:
        var = (x * x * valid).sum(dim=1, keepdim=True) / n
        x = x * torch.rsqrt(var.clamp(min=eps))
    return x


def patches(x: torch.Tensor, conv: dict, in_features: int) -> torch.Tensor:
    """The im2col rows of ``FactorizedDense._patches`` from K strided slices (``Tensor.unfold`` does
    not export with a dynamic length): ``(N, C, T) -> (N T', C K)``, columns in-major."""
    k, d, st, p = conv["kernel"], conv["dilation"], conv["stride"], conv["padding"]
    if p:
        x = nn.functional.pad(x, (p, p))
    t_out = torch.div(x.shape[2] - d * (k - 1) - 1, st, rounding_mode="floor") + 1
    cols = [x.narrow(2, i * d, (t_out - 1) * st + 1)[:, :, ::st] for i in range(k)]
    return torch.stack(cols, dim=3).permute(0, 2, 1, 3).reshape(-1, in_features)


def _mode_product(t: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """The Tucker ``_mode_product`` with explicit permutations (``movedim(axis, -1)`` exports a negative perm)."""
    nd = t.dim()
    moved = t.permute([i for i in range(nd) if i != axis] + [axis]) @ m
    return moved.permute(list(range(axis)) + [nd - 1] + list(range(axis, nd - 1)))


def _tucker_rows(self, x: torch.Tensor) -> torch.Tensor:
    """``TuckerDense.apply_rows`` with :func:`_mode_product`."""
    d = len(self.row_shape)
    t = x.reshape(-1, *self.col_shape)
    for k, v in enumerate(self.col_factors):
        t = _mode_product(t, v, k + 1)
    t = t.reshape(-1, math.prod(self.ranks[d:])) @ self.core.reshape(math.prod(self.ranks[:d]), -1).T
    t = t.reshape(-1, *self.ranks[:d])
    for k, u in enumerate(self.row_factors):
        t = _mode_product(t, u.T, k + 1)
    return t.reshape(-1, self.out_features)


def export_friendly(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that exports to ONNX computing the same function: TT-matrix layers as a
    chain of MatMuls, the im2col of tensorised conv layers from slices."""
    import copy
    import types

    model = copy.deepcopy(model).eval()
    for name, m in list(model.named_modules()):
        if isinstance(m, TtDense):
            set_module(model, name, TtDenseOnnx(m))
            continue
        if isinstance(m, TuckerDense):
            m.apply_rows = types.MethodType(_tucker_rows, m)
        if isinstance(m, FactorizedDense) and m.conv is not None:
            m._patches = types.MethodType(lambda self, x: patches(x, self.conv, self.in_features), m)
    return model


# ----------------------------------------------------------------------------- CMVN

def global_cmvn(data_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """``(mean, std, frames)`` over every frame of a data dir, from its Kaldi CMVN stats.

    Per-speaker stats are summed over the speakers (each once); a global ``cmvn.scp`` (every
    speaker pointing at one entry) is read once.
    """
    import kaldiio

    data_dir = Path(data_dir)
    scp = data_dir / "cmvn.scp"
    if not scp.is_file():
        raise InputError(scp, "CMVN stats not found",
                         fix="run steps/make_fbank.sh on the training data dir (with cmvn: speaker or global)")
    entries = read_table(scp)
    total = None
    for loc in sorted(set(entries.values())):
        st = np.asarray(kaldiio.load_mat(loc), dtype=np.float64)
        total = st if total is None else total + st
    if total is None:
        raise InputError(scp, "no CMVN stats in it", fix="rerun steps/make_fbank.sh")
    d = total.shape[1] - 1
    count = total[0, d]
    mean = total[0, :d] / count
    var = np.maximum(total[1, :d] / count - mean * mean, 1e-10)
    return mean, np.sqrt(var), int(count)


# ----------------------------------------------------------------------------- export

def _load_source(src: Path, tmp: Path) -> tuple[nn.Module, dict, Path]:
    """``(model, model.yaml, dir with tokens.txt)`` of a model dir or a packed ``model.acz`` file."""
    if src.is_file():
        unpack(src, tmp / "unpacked")
        src = tmp / "unpacked"
    model, meta = load_model_dir(src)
    return model, meta, src


def _fix_vocab_dim(proto, num_tokens: int) -> None:
    """Make output 0 ``(N, T', V)`` with a static V (sherpa-onnx reads the vocabulary size from it)."""
    shape = proto.graph.output[0].type.tensor_type.shape
    shape.dim[2].ClearField("dim_param")
    shape.dim[2].dim_value = num_tokens


def _set_metadata(proto, meta: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = str(k), str(v)


def read_metadata(onnx_path: str | os.PathLike) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def export_onnx(src: str | os.PathLike, out_dir: str | os.PathLike, cmvn_dir: str | os.PathLike | None = None,
                acoustic_scale: float = 1.0, blank_penalty: float = 0.0, check: bool = True,
                cmvn: str = "global") -> Path:
    """Write ``out_dir/{model.onnx,tokens.txt,model.yaml}`` for the model dir (or ``model.acz``) ``src``.

    ``cmvn``: what replaces the model's per-speaker CMVN in the graph, ``global`` or
    ``utterance`` (see the module doc-string); ignored for a model trained without CMVN.
    ``cmvn_dir``: for ``global``, the data dir whose CMVN stats are baked in (default: the
    training data dir in the model's history). With ``check``, onnxruntime's output on a
    random batch must equal PyTorch's.
    """
    if cmvn not in ("global", "utterance"):
        raise ValueError(f"cmvn must be global or utterance, not {cmvn!r}")
    import onnx

    src, out_dir = Path(src), Path(out_dir)
    if not src.exists():
        raise InputError(src, "no such model dir or packed model", fix="pass a model dir (with model.yaml) or a model.acz")
    with tempfile.TemporaryDirectory() as td:
        model, meta, src_dir = _load_source(src, Path(td))
        feats = meta.get("features", {}) or {}
        mode = feats.get("cmvn", "speaker")
        mean = std = None
        cmvn_info: dict = {"type": "none"}
        if mode == "utterance" or (mode != "none" and cmvn == "utterance"):  # the model's own, or a replacement
            cmvn_info = {"type": "utterance", "replaces": mode}
        elif mode != "none":
            if cmvn_dir is None:
                cmvn_dir = _train_dir_of(meta, src_dir)
            mean, std, frames = global_cmvn(cmvn_dir)
            if len(mean) != model.feat_dim:
                raise InputError(Path(cmvn_dir) / "cmvn.scp", f"stats are {len(mean)}-dim but the model takes "
                                 f"{model.feat_dim}-dim features", fix="pass the model's training data dir")
            if not feats.get("norm_vars", True):
                std = np.ones_like(std)
            cmvn_info = {"type": "global", "from": str(cmvn_dir), "frames": frames, "replaces": mode}
        cmvn_args = dict(mean=mean, std=std, acoustic_scale=acoustic_scale, blank_penalty=blank_penalty,
                         utterance_cmvn=cmvn_info["type"] == "utterance", norm_vars=feats.get("norm_vars", True))
        deploy = DeployModel(export_friendly(model), **cmvn_args).eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        x = torch.randn(2, 41, model.feat_dim) * 3 + (torch.as_tensor(mean, dtype=torch.float32) if mean is not None else 0)
        x_lens = torch.tensor([41, 23])
        raw = Path(td) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python ints in shape checks
            torch.onnx.export(deploy, (x, x_lens), str(raw), dynamo=False, opset_version=OPSET,
                              input_names=list(INPUTS), output_names=list(OUTPUTS), do_constant_folding=True,
                              dynamic_axes={"x": {0: "N", 1: "T"}, "x_lens": {0: "N"},
                                            "log_probs": {0: "N", 1: "T_out"}, "log_probs_len": {0: "N"}})
        proto = onnx.load(str(raw))
        _fix_vocab_dim(proto, model.num_tokens)
        sf = int(meta["subsampling_factor"])
        _set_metadata(proto, {
            "model_type": SHERPA_MODEL_TYPE, "vocab_size": model.num_tokens, "subsampling_factor": sf,
            "feature_dim": model.feat_dim, "frame_shift_ms": meta.get("frame_shift_ms", 10.0),
            "cmvn": cmvn_info["type"], "acoustic_scale": acoustic_scale, "blank_penalty": blank_penalty,
            "asrcomp_arch": meta["arch"].get("type"), "asrcomp_source": str(src),
            "comment": "asrcomp CTC acoustic model: raw 80-dim Kaldi fbank in, log-probs over blank + tokens out",
        })
        onnx.checker.check_model(proto)
        with atomic_path(out_dir / ONNX_NAME) as tmp:
            onnx.save(proto, tmp)
        if check:
            _check_same(DeployModel(model, **cmvn_args, export_form=False).eval(), out_dir / ONNX_NAME,
                        model.feat_dim, mean)
        shutil.copyfile(src_dir / "tokens.txt", out_dir / "tokens.txt")
        if (src_dir / "bpe.model").is_file():
            shutil.copyfile(src_dir / "bpe.model", out_dir / "bpe.model")
        # the lexicon scores a phone model's greedy output; a model.acz carries none, its dir does
        lexicon = src_dir / LEXICON if (src_dir / LEXICON).is_file() else src.parent / LEXICON
        if lexicon.is_file():
            shutil.copyfile(lexicon, out_dir / LEXICON)
        info = {"file": ONNX_NAME, "dtype": "float32", "quantization": "none", "opset": OPSET,
                "bytes": (out_dir / ONNX_NAME).stat().st_size, "cmvn": cmvn_info,
                "acoustic_scale": acoustic_scale, "blank_penalty": blank_penalty,
                "sherpa_model_type": SHERPA_MODEL_TYPE, "weights": weight_report(out_dir / ONNX_NAME)}
        _write_yaml(out_dir, meta, info, {"stage": "export-onnx", "src": str(src), "cmvn_dir": str(cmvn_dir),
                                          "acoustic_scale": acoustic_scale, "blank_penalty": blank_penalty})
    log.info("exported %s to %s (%d bytes, CMVN %s)", src, out_dir / ONNX_NAME, info["bytes"], cmvn_info["type"])
    return out_dir


def _train_dir_of(meta: dict, model_dir: Path) -> Path:
    for h in meta.get("history", []):
        d = h.get("train_dir")
        if d and (Path(d) / "cmvn.scp").is_file():
            return Path(d)
    raise InputError(model_dir / "model.yaml", "no training data dir with cmvn.scp in the model's history",
                     fix="pass --cmvn-dir DATA_DIR (the training data dir) to bake its global CMVN in")


def _write_yaml(out_dir: Path, meta: dict, info: dict, history: dict) -> None:
    meta = dict(meta)
    meta["onnx"] = info
    meta["history"] = list(meta.get("history", [])) + [history]
    meta.pop("packed_bytes", None)  # the row's bytes are model.onnx's
    text = yaml.safe_dump(_plain(meta), sort_keys=False)
    with atomic_open(out_dir / "model.yaml", "w", encoding="utf-8") as f:
        f.write(text)


def _session(onnx_path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def _check_same(deploy: nn.Module, onnx_path: Path, feat_dim: int, mean, tol: float = 1e-3) -> None:
    """onnxruntime's log-probs on a fresh padded batch must equal PyTorch's (``deploy``: the model's own
    forward) on the valid frames."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 67, feat_dim, generator=g) * 3
    if mean is not None:
        x = x + torch.as_tensor(mean, dtype=torch.float32)
    x_lens = torch.tensor([67, 50, 9])
    with torch.no_grad():
        ref, ref_lens = deploy(x, x_lens)
    out, lens = _session(onnx_path).run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
    if not np.array_equal(lens, ref_lens.numpy()):
        raise RuntimeError(f"{onnx_path}: output lengths {lens.tolist()} differ from PyTorch's {ref_lens.tolist()}")
    err = max(float(np.abs(out[n, :k] - ref[n, :k].numpy()).max()) for n, k in enumerate(lens.tolist()))
    if err > tol:
        raise RuntimeError(f"{onnx_path}: onnxruntime and PyTorch log-probs differ by {err:.2e} (> {tol})")


# ----------------------------------------------------------------------------- graph inspection

WEIGHT_OPS = {"MatMul": 1, "Gemm": 1, "Conv": 1, "MatMulInteger": 1, "ConvInteger": 1, "QLinearMatMul": 3,
              "QLinearConv": 3}


def weight_report(onnx_path: str | os.PathLike) -> dict:
    """What the MatMul/Conv/Gemm nodes of ``model.onnx`` multiply by: ``{"nodes": n, "weights": elements,
    "largest": elements of the largest weight, "shapes": [...]}``.

    A weight is the initializer a node reads as its second operand, followed back through
    Cast/Transpose/DequantizeLinear/Reshape (fp16 storage, QDQ int8).
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute}
    producer = {o: n for n in g.node for o in n.output}

    def source(name: str, depth: int = 0):
        if name in inits:
            return inits[name]
        if name in consts:
            return consts[name]
        n = producer.get(name)
        if n is not None and depth < 4 and n.op_type in ("Cast", "Transpose", "DequantizeLinear", "Reshape"):
            return source(n.input[0], depth + 1)
        return None

    shapes = []
    for n in g.node:
        if n.op_type not in WEIGHT_OPS or len(n.input) <= WEIGHT_OPS[n.op_type]:
            continue
        t = source(n.input[WEIGHT_OPS[n.op_type]])
        if t is not None:
            shapes.append([int(d) for d in numpy_helper.to_array(t).shape])
    sizes = [math.prod(s) for s in shapes]
    return {"nodes": len(shapes), "weights": int(sum(sizes)), "largest": int(max(sizes, default=0)),
            "shapes": shapes}


# ----------------------------------------------------------------------------- fp16 and int8 variants

def _copy_dir_files(src: Path, out_dir: Path) -> dict:
    meta = read_model_yaml(src)
    if "onnx" not in meta or not (src / ONNX_NAME).is_file():
        raise InputError(src, f"not an exported ONNX dir ({ONNX_NAME} or the onnx: section of model.yaml missing)",
                         fix="run asrcomp export-onnx on the model dir first")
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in ("tokens.txt", "bpe.model", LEXICON):
        if (src / f).is_file():
            shutil.copyfile(src / f, out_dir / f)
    return meta


def to_fp16(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """fp16 weights: every float32 initializer of more than 16 elements stored as float16 and cast
    back to float32 where it is read, so the file halves and every runtime (sherpa-onnx on any
    CPU included) computes as before, in float32."""
    import onnx
    from onnx import helper, numpy_helper

    src, out_dir = Path(src), Path(out_dir)
    meta = _copy_dir_files(src, out_dir)
    proto = onnx.load(str(src / ONNX_NAME))
    g = proto.graph
    casts, keep = [], []
    for init in g.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32 and a.size > 16:
            half = numpy_helper.from_array(a.astype(np.float16), init.name + "_fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "_cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(proto)
    with atomic_path(out_dir / ONNX_NAME) as tmp:
        onnx.save(proto, tmp)
    info = dict(meta["onnx"], dtype="float16 weights (float32 compute)", bytes=(out_dir / ONNX_NAME).stat().st_size,
                weights=weight_report(out_dir / ONNX_NAME))
    meta = dict(meta, arch=meta["arch"])
    _write_yaml(out_dir, meta, info, {"stage": "onnx-fp16", "src": str(src)})
    return out_dir


class _FeatReader:
    """onnxruntime CalibrationDataReader over raw fbank of some utterances of a data dir."""

    def __init__(self, data_dir: Path, num_utts: int, seed: int = 0):
        import kaldiio

        data = read_data_dir(data_dir, need_features=True)
        rng = np.random.default_rng(seed)
        utts = list(rng.choice(data.utts, size=min(num_utts, len(data.utts)), replace=False))
        feats = kaldiio.load_scp(str(data.path / "feats.scp"))
        self._items = iter([{"x": np.asarray(feats[u], dtype=np.float32)[None],
                             "x_lens": np.array([len(feats[u])], dtype=np.int64)} for u in utts])

    def get_next(self):
        return next(self._items, None)


FLOAT_NODES = r"^/net/output/"  # the output layer (SVD's two factors too) stays float32 in int8 graphs


def quantize(src: str | os.PathLike, out_dir: str | os.PathLike, mode: str = "dynamic",
             calib_dir: str | os.PathLike | None = None, calib_utts: int = 100, per_channel: bool = True,
             float_nodes: str = FLOAT_NODES) -> Path:
    """int8 weights of an exported ONNX dir.

    ``dynamic``: onnxruntime's ``quantize_dynamic`` (int8 weights, activations quantised per
    call: MatMulInteger; a Conv would be a ConvInteger, slower than the float Conv, hence the
    time-major TDNN export has none). ``static``: QDQ int8 weights and activations, the
    activation ranges calibrated (MinMax) on ``calib_utts`` utterances of ``calib_dir``
    (training features). ``per_channel``: one scale per output channel. Nodes whose names
    ``float_nodes`` (a regex; empty: none) finds stay float32: by default the output layer, as
    is usual for the first and last layers of a quantised network -- on the SVD models the
    per-tensor int8 of its rank-r bottleneck raised the greedy PER of speechocean762's TT model
    from 76.8 to 95.3 % (dev), the output layer kept float gave 76.8 again.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, out_dir = Path(src), Path(out_dir)
    if mode not in ("dynamic", "static"):
        raise InputError("--mode", f"{mode!r} is not a quantisation mode", fix="dynamic or static")
    if mode == "static" and calib_dir is None:
        raise InputError("--calib-dir", "static quantisation needs calibration data",
                         fix="pass the training data dir (its feats.scp is read)")
    meta = _copy_dir_files(src, out_dir)
    if meta["onnx"].get("quantization", "none") != "none" or "float16" in str(meta["onnx"].get("dtype")):
        raise InputError(src, "is already quantised or fp16", fix="quantise the float32 export")
    import onnx

    if any(n.op_type == "Conv" for n in onnx.load(str(src / ONNX_NAME), load_external_data=False).graph.node):
        log.warning("%s has Conv nodes: int8 turns them into ConvInteger, which onnxruntime runs several times "
                    "slower than the float Conv; re-export it with this asrcomp (TDNNs export convs as MatMuls)",
                    src / ONNX_NAME)
    with tempfile.TemporaryDirectory() as td, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = Path(td) / "pre.onnx"
        quant_pre_process(str(src / ONNX_NAME), str(pre), skip_symbolic_shape=True)
        out = Path(td) / "q.onnx"
        ops = ["MatMul", "Gemm", "Conv"]
        keep = [n.name for n in onnx.load(str(pre)).graph.node if float_nodes and re.search(float_nodes, n.name)]
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(out), op_types_to_quantize=ops, per_channel=per_channel,
                             weight_type=QuantType.QInt8, nodes_to_exclude=keep)
        else:
            quantize_static(str(pre), str(out), _FeatReader(Path(calib_dir), calib_utts), nodes_to_exclude=keep,
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=ops, per_channel=per_channel,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        proto = onnx.load(str(out))
        _set_metadata(proto, dict(read_metadata(src / ONNX_NAME), quantization=f"int8-{mode}"))
        with atomic_path(out_dir / ONNX_NAME) as tmp:
            onnx.save(proto, tmp)
    info = dict(meta["onnx"], quantization=f"int8-{mode}" + ("-per-channel" if per_channel else ""),
                bytes=(out_dir / ONNX_NAME).stat().st_size, weights=weight_report(out_dir / ONNX_NAME),
                float_nodes=keep)
    if mode == "static":
        info["calibration"] = {"data_dir": str(calib_dir), "utterances": calib_utts}
    _write_yaml(out_dir, meta, info, {"stage": f"onnx-int8-{mode}", "src": str(src), "per_channel": per_channel,
                                      "float_nodes": float_nodes,
                                      **({"calib_dir": str(calib_dir), "calib_utts": calib_utts}
                                         if mode == "static" else {})})
    log.info("%s: int8 %s, %d bytes (float32 %d)", out_dir / ONNX_NAME, mode, info["bytes"],
             (src / ONNX_NAME).stat().st_size)
    return out_dir


# ----------------------------------------------------------------------------- onnxruntime decoding

def onnx_posteriors(onnx_dir: str | os.PathLike, data_dir: str | os.PathLike, threads: int = 1):
    """Yield ``(utt, log-posteriors (T', V), network seconds, audio seconds)`` per utterance of a
    data dir, its raw fbank run through an exported model in onnxruntime (``threads`` threads,
    batch 1, after one warm-up run). The caller's own work between items is not timed here."""
    import kaldiio

    onnx_dir, data_dir = Path(onnx_dir), Path(data_dir)
    cfg = read_model_yaml(onnx_dir)
    sess = _session(onnx_dir / ONNX_NAME, threads)
    data = read_data_dir(data_dir, need_features=True)
    feats = kaldiio.load_scp(str(data.path / "feats.scp"))
    durations = read_durations(data_dir)
    sess.run(None, {"x": np.zeros((1, 30, cfg["arch"]["feat_dim"]), np.float32), "x_lens": np.array([30])})
    for utt in data.utts:
        x = np.asarray(feats[utt], dtype=np.float32)
        t0 = time.perf_counter()
        lp = sess.run(None, {"x": x[None], "x_lens": np.array([len(x)], dtype=np.int64)})[0][0]
        secs = time.perf_counter() - t0
        yield utt, lp, secs, durations.get(utt, len(x) * cfg.get("frame_shift_ms", 10) / 1000)


def decode_onnx(onnx_dir: str | os.PathLike, data_dir: str | os.PathLike, graph_dir: str | os.PathLike | None,
                opts=None, threads: int = 1) -> dict:
    """Decode a data dir with an exported model in onnxruntime (``threads`` threads, batch 1).

    Reads the data dir's raw fbank (the graph applies its own CMVN), searches TLG and greedy
    exactly as ``asrcomp decode``, and writes ``<onnx-dir>/decode_<set>_<graph>/`` and
    ``decode_<set>_greedy/`` (``wer``, ``errs``, ``hyp.txt``, ``rtf``: onnxruntime + search
    seconds over audio seconds). Acoustic scale and blank penalty are whatever the export baked in.
    """
    onnx_dir, data_dir = Path(onnx_dir), Path(data_dir)
    cfg = read_model_yaml(onnx_dir)
    if "onnx" not in cfg or not (onnx_dir / ONNX_NAME).is_file():
        raise InputError(onnx_dir, f"not an exported ONNX dir ({ONNX_NAME} missing)", fix="run asrcomp export-onnx")
    check_features_match(cfg, data_dir, onnx_dir)
    opts = opts or DecodeOptions()
    if opts.acoustic_scale != 1.0 or opts.blank_penalty:
        raise InputError(onnx_dir, "acoustic scale and blank penalty are baked into model.onnx at export",
                         fix="export with --acoustic-scale / --blank-penalty instead")
    decoder = None
    if graph_dir is not None:
        check_token_set(onnx_dir, Path(graph_dir) / "tokens.txt")
        decoder = TlgDecoder(graph_dir, opts)
    id2tok = {i: t for t, i in read_symbol_table(onnx_dir / "tokens.txt").items()}
    outs = decode_dirs(onnx_dir, data_dir, graph_dir)
    hyps: dict[str, dict[str, str]] = {k: {} for k in outs}
    secs = {"nnet": 0.0, "search": 0.0, "audio": 0.0}
    for utt, lp, nnet, audio in onnx_posteriors(onnx_dir, data_dir, threads):
        t1 = time.perf_counter()
        if decoder is not None:
            hyps["tlg"][utt] = " ".join(decoder.decode(lp))
        t2 = time.perf_counter()
        hyps["greedy"][utt] = " ".join(tokens_to_words(ctc_greedy(lp), id2tok, cfg["tokens"]["token_type"]))
        secs["nnet"] += nnet
        secs["search"] += t2 - t1
        secs["audio"] += audio
    for kind, d in outs.items():
        d.mkdir(parents=True, exist_ok=True)
        write_table(d / "hyp.1.txt", {u: h or "" for u, h in hyps[kind].items()})
        with atomic_open(d / "rtf.1.yaml", "w") as f:
            yaml.safe_dump(dict(secs, search=secs["search"] if kind == "tlg" else 0.0), f)
    return merge_and_score(onnx_dir, data_dir, graph_dir, 1)


__all__ = ["export_onnx", "to_fp16", "quantize", "decode_onnx", "onnx_posteriors", "weight_report", "global_cmvn",
           "read_metadata", "DeployModel", "export_friendly"]
