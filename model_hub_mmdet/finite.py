"""Non-finite numbers during training: stop at once with one line, or (opt-in) skip a few batches.

A NaN/Inf loss or gradient norm stops the run before the optimizer step, so the weights (and every checkpoint
written so far) stay finite; the error names the batch, its image files, the loss terms that were not finite and
the last good checkpoint. ``hyperparameters.skip_nonfinite_batches: N`` skips up to N such batches instead (no
step is taken on them). With fp16's dynamic loss scale, torch's GradScaler keeps its own behaviour (it skips
overflowing steps and lowers the scale), so these checks stand aside.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from model_hub_mmdet.errors import UserError

logger = logging.getLogger("model_hub_mmdet")


# What fixes it, in MMDetection 2.x's config keys (the 3.x trial passes its own).
ADVICE = "lower optimizer.lr, add optimizer_config.grad_clip"


class NonFiniteError(UserError):
    """A loss, gradient or weight became NaN or Inf."""


def image_files(img_metas: Any, limit: int = 4) -> str:
    """The file names of a batch's images, for messages."""
    names = [str(m.get("ori_filename") or m.get("filename")) for m in (img_metas or []) if isinstance(m, Mapping)]
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "") if names else "(unknown images)"


class NonFiniteGuard:
    """Checks one batch's loss terms and gradient norm; raises :class:`NonFiniteError` or counts a skip.

    Used as ``clip_grads`` of ``context.step_optimizer``: it clips as mmcv's ``optimizer_config.grad_clip`` says
    (arguments of ``clip_grad_norm_``) when that is set, measures the total gradient norm in any case, and
    refuses a non-finite one before the optimizer steps.
    """

    def __init__(self, clip_kwargs: Mapping[str, Any] | None, max_skips: int = 0, enabled: bool = True,
                 advice: str = ADVICE) -> None:
        self.clip_kwargs = dict(clip_kwargs) if clip_kwargs else None
        self.max_skips = max(int(max_skips or 0), 0)
        self.enabled = enabled
        self.advice = advice  # the generation's config keys that fix it
        self.skipped = 0
        self.last_norm: float | None = None
        self.last_checkpoint: str | None = None
        self._where = ""

    def start_batch(self, batch_idx: int, img_metas: Any) -> None:
        self.last_norm = None
        self._where = f"batch {batch_idx} (images {image_files(img_metas)})"

    def loss_ok(self, log_vars: Mapping[str, Any]) -> bool:
        """False when this batch is to be skipped; raises when it may not be."""
        if not self.enabled:
            return True
        bad = {k: v for k, v in log_vars.items() if isinstance(v, (int, float)) and not math.isfinite(v)}
        if not bad:
            return True
        terms = ", ".join(f"{k}={v}" for k, v in bad.items())
        return self._skip_or_raise(f"the loss is not finite ({terms})")

    def __call__(self, params: Iterable[torch.nn.Parameter]) -> None:
        params = [p for p in params if p.requires_grad and p.grad is not None]
        if not params:
            return
        if self.clip_kwargs is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, **self.clip_kwargs)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        self.last_norm = float(norm)
        if not self.enabled or math.isfinite(self.last_norm):
            return
        if not self._skip_or_raise(f"the gradient norm is {self.last_norm}"):
            for p in params:  # the optimizer steps over no parameter: the batch is skipped
                p.grad = None

    def _skip_or_raise(self, what: str) -> bool:
        if self.skipped < self.max_skips:
            self.skipped += 1
            logger.warning("%s: %s; skipped (%d of at most %d)", self._where, what, self.skipped, self.max_skips)
            return False
        last = self.last_checkpoint or "none yet"
        raise NonFiniteError(
            f"{self._where}: {what}; stopped before the optimizer step, so no checkpoint holds non-finite weights"
            f" (last good checkpoint: {last}); {self.advice}, or set"
            " hyperparameters.skip_nonfinite_batches: N to skip up to N such batches"
        )


def check_finite_weights(state_dicts: Sequence[Mapping[str, Any]], advice: str = ADVICE) -> None:
    """Refuse to checkpoint a model with a NaN/Inf weight (one line naming the tensor)."""
    for state in state_dicts:
        for name, tensor in state.items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"the weights became non-finite ({name}); refusing to write a checkpoint with them; {advice}"
                )
