"""Knowledge distillation into a smaller student (``asrcomp distill``).

Loss per batch (Hinton et al. 2015): ``(1 - alpha) * CTC(student, transcripts)
+ alpha * T^2 * sum_frames KL(softmax(teacher / T) || softmax(student / T))``, the teacher's
frame posteriors computed on the fly on the same (augmented) input. Optionally a
FitNets hint (Romero et al. 2015): ``hint_weight * sum_frames ||R(h_student) - h_teacher||^2``
between two named layers, ``R`` a learned 1x1 projection that is not part of the saved
student but is checkpointed with it every epoch (a resumed run continues with it), initialised
from the training seed. Teacher and student must share the token set and the frame rate.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from asrcomp.modeldir import check_token_set, load_model_dir
from asrcomp.nnet.tdnn import lengths_to_mask
from asrcomp.train import FitHooks, fit, state_digest
from asrcomp.utils import InputError

log = logging.getLogger(__name__)


def kd_loss_sum(student_lp: torch.Tensor, teacher_lp: torch.Tensor, lens: torch.Tensor,
                temperature: float) -> torch.Tensor:
    """``T^2 * sum`` over the first ``lens[n]`` frames of ``KL(teacher_T || student_T)``; inputs ``(N, T', V)`` log-probs."""
    t = temperature
    s = F.log_softmax(student_lp / t, dim=-1)
    p = F.log_softmax(teacher_lp / t, dim=-1)
    kl = (p.exp() * (p - s)).sum(-1)  # (N, T')
    mask = lengths_to_mask(lens, kl.shape[1])
    return (t * t) * kl.masked_select(mask).sum()


def _output_of(module: nn.Module, store: dict, key: str):
    def hook(_m, _inputs, output):
        store[key] = output[0] if isinstance(output, tuple) else output
    return module.register_forward_hook(hook)


class DistillLoss:
    """``loss(model, x, x_lens, y, y_lens) -> summed loss``, for :class:`asrcomp.train.FitHooks`."""

    def __init__(self, teacher: nn.Module, alpha: float, temperature: float, student: nn.Module | None = None,
                 hint_layer: str | None = None, teacher_hint_layer: str | None = None, hint_weight: float = 0.0,
                 seed: int = 0):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], not {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        self.teacher, self.alpha, self.temperature = teacher.eval(), float(alpha), float(temperature)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.hint_weight, self.regressor, self._acts = float(hint_weight), None, {}
        if hint_layer:
            s_mod = _named(student, hint_layer, "student")
            t_mod = _named(teacher, teacher_hint_layer or hint_layer, "teacher")
            _output_of(s_mod, self._acts, "student")
            _output_of(t_mod, self._acts, "teacher")
            s_dim, t_dim = _channels(s_mod), _channels(t_mod)
            with torch.random.fork_rng(devices=[]):  # the same projection whatever ran before
                torch.manual_seed(seed)
                self.regressor = nn.Conv1d(s_dim, t_dim, 1)

    def __call__(self, model, x, x_lens, y, y_lens) -> torch.Tensor:
        s_lp, lens = model(x, x_lens)
        ctc = F.ctc_loss(s_lp.transpose(0, 1), y, lens, y_lens, blank=0, reduction="sum", zero_infinity=True)
        if self.alpha == 0.0 and self.regressor is None:  # CTC only: the teacher's forward would be wasted
            return (1.0 - self.alpha) * ctc
        if next(self.teacher.parameters()).device != x.device:
            self.teacher.to(x.device)
            if self.regressor is not None:
                self.regressor.to(x.device)
        with torch.no_grad():
            t_lp, t_lens = self.teacher(x, x_lens)
        if t_lp.shape != s_lp.shape or not torch.equal(t_lens, lens):
            raise ValueError(f"teacher output {tuple(t_lp.shape)} and student output {tuple(s_lp.shape)} differ: "
                             "they need the same token set and frame rate")
        loss = (1.0 - self.alpha) * ctc + self.alpha * kd_loss_sum(s_lp, t_lp, lens, self.temperature)
        if self.regressor is not None:
            hs, ht = self.regressor(self._acts["student"]), self._acts["teacher"]
            if hs.shape != ht.shape:
                raise ValueError(f"hint layers give {tuple(hs.shape)} (student, projected) and {tuple(ht.shape)} "
                                 "(teacher): pick layers at the same frame rate")
            loss = loss + self.hint_weight * ((hs.float() - ht.float()) ** 2).sum()  # fp32 sum under amp
        return loss


def _named(model: nn.Module, name: str, who: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as e:
        names = [n for n, _ in model.named_children()] + [f"layers.{i}" for i in range(len(getattr(model, "layers", [])))]
        raise ValueError(f"{who} has no layer {name!r} (e.g. {', '.join(names)})") from e


def _channels(module: nn.Module) -> int:
    bn = getattr(module, "bn", None)
    if isinstance(bn, nn.BatchNorm1d):
        return bn.num_features
    raise ValueError(f"cannot tell the output channels of {type(module).__name__}; use a TDNN layer (layers.N)")


def check_compatible(teacher_dir: Path, teacher_meta: dict, student: nn.Module, lang_dir: Path) -> None:
    """InputError unless teacher and student share the token set (via the lang dir) and the frame rate."""
    check_token_set(teacher_dir, lang_dir / "tokens.txt")
    if teacher_meta["subsampling_factor"] != student.subsampling_factor:
        raise InputError(teacher_dir / "model.yaml",
                         f"teacher subsampling factor {teacher_meta['subsampling_factor']} differs from the "
                         f"student's {student.subsampling_factor}: frame-level distillation needs the same frame rate",
                         fix="give the student the teacher's subsampling_factor")
    if teacher_meta["tokens"]["num_tokens"] != student.num_tokens:
        raise InputError(teacher_dir / "model.yaml",
                         f"teacher has {teacher_meta['tokens']['num_tokens']} tokens, the student {student.num_tokens}",
                         fix="use the lang dir the teacher was trained with")


def distill(out_dir, teacher_dir, student: nn.Module, train_dir, valid_dir, lang_dir, cfg, alpha: float = 0.5,
            temperature: float = 2.0, hint_layer: str | None = None, teacher_hint_layer: str | None = None,
            hint_weight: float = 0.0, history: list[dict] | None = None) -> Path:
    """Train ``student`` from the teacher model dir into ``out_dir`` (a model dir)."""
    teacher_dir, lang_dir = Path(teacher_dir), Path(lang_dir)
    teacher, meta = load_model_dir(teacher_dir)
    check_compatible(teacher_dir, meta, student, lang_dir)
    try:
        loss = DistillLoss(teacher, alpha, temperature, student, hint_layer, teacher_hint_layer, hint_weight,
                           seed=cfg.seed)
    except ValueError as e:
        raise InputError(teacher_dir, str(e), fix="check --alpha, --temperature and the hint layers") from e
    options = {"alpha": alpha, "temperature": temperature, "hint_layer": hint_layer,
               "teacher_hint_layer": teacher_hint_layer, "hint_weight": hint_weight}
    has_hint = loss.regressor is not None
    hooks = FitHooks(loss=loss, params=list(loss.regressor.parameters()) if has_hint else [],
                     state={"hint_regressor": loss.regressor} if has_hint else {},
                     identity=dict(options, teacher_weights=state_digest(teacher)))
    stage = {"stage": "distill", "teacher": str(teacher_dir), **options}
    return fit(student, out_dir, train_dir, valid_dir, lang_dir, cfg, hooks=hooks, history=history, stage=stage)
