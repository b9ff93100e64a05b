"""Runs the compiled mmcv ops that detectors use on fixed random inputs, so that two builds or two devices can be
compared value by value (mmcv-full 1.7 and mmcv 2.1 have the same ``mmcv.ops`` API for these).

    python scripts/mmcv_ops_probe.py --device cpu --out cpu.pt     # ops with a CPU kernel, the rest in plain torch
    python scripts/mmcv_ops_probe.py --device cuda --out cuda.pt   # every op on its CUDA kernel
    python scripts/mmcv_ops_probe.py --compare cpu.pt cuda.pt      # one line per op; exit 1 on a mismatch

Ops without a CPU kernel in mmcv (sigmoid focal loss, multi-scale deformable attention) are computed on the CPU
by a plain-torch reference: mmdet's own formula for the focal loss, mmcv's ``multi_scale_deformable_attn_pytorch``
for the attention. Used by scripts/check_cuda_wheel.py (CPU kernels of two builds) and bench/gpu_check.py (CUDA
against CPU). Run it with the Python whose mmcv is to be probed (PYTHONPATH may put another build first).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

# What each op's outputs may differ by between a CUDA kernel and the CPU one (atomicAdd order, fused multiply-add);
# between two builds of the same CPU kernel they must agree to rounding.
TOLERANCE = {"default": (1e-4, 1e-4), "ms_deform_attn": (1e-3, 1e-3)}


def _boxes(gen: torch.Generator, n: int, size: float) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size * 0.7
    wh = torch.rand(n, 2, generator=gen) * size * 0.3 + 1.0
    return torch.cat([xy, xy + wh], dim=1)


def _focal_loss_reference(logits: torch.Tensor, target: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """mmdet's ``py_sigmoid_focal_loss`` per element (class index ``num_classes`` is background)."""
    one_hot = torch.nn.functional.one_hot(target, logits.size(1) + 1)[:, :-1].to(logits.dtype)
    p = logits.sigmoid()
    pt = (1 - p) * one_hot + p * (1 - one_hot)
    weight = (alpha * one_hot + (1 - alpha) * (1 - one_hot)) * pt.pow(gamma)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, one_hot, reduction="none") * weight


def run_ops(device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every probed op's outputs (and input gradients) on ``device``, as CPU tensors keyed ``op/what``."""
    from mmcv import ops  # the build under test: whichever mmcv this Python imports

    gen = torch.Generator().manual_seed(seed)
    cuda = device != "cpu"
    out: dict[str, torch.Tensor] = {}

    def on(t: torch.Tensor, grad: bool = False) -> torch.Tensor:
        t = t.to(device)
        return t.requires_grad_() if grad else t

    def record(name: str, fn: Callable[[], torch.Tensor], *grads: torch.Tensor) -> None:
        value = fn()
        out[f"{name}/out"] = value.detach().float().cpu()
        if grads:
            # A fixed, non-uniform upstream gradient, so that the backward kernels' weighting shows.
            upstream = torch.rand(value.shape, generator=gen).to(value)
            for i, g in enumerate(torch.autograd.grad(value, grads, upstream)):
                out[f"{name}/grad{i}"] = g.float().cpu()

    # NMS (every detector's post-processing): kept boxes and their order.
    boxes, scores = _boxes(gen, 300, 100.0), torch.rand(300, generator=gen)
    dets, keep = ops.nms(on(boxes), on(scores), 0.5)
    out["nms/keep"], out["nms/dets"] = keep.cpu().float(), dets.cpu()
    if not cuda:  # soft-NMS has only a CPU kernel
        dets, keep = ops.soft_nms(boxes, scores, 0.3, sigma=0.5, min_score=1e-3, method="gaussian")
        out["soft_nms/keep"], out["soft_nms/dets"] = keep.float(), dets

    # RoIAlign (Mask/Faster/Cascade R-CNN), both sampling modes, forward and backward.
    feat = torch.rand(2, 8, 32, 32, generator=gen)
    rois = torch.cat([torch.randint(0, 2, (24, 1), generator=gen).float(), _boxes(gen, 24, 60.0)], dim=1)
    for ratio in (0, 2):
        x = on(feat, grad=True)
        record(f"roi_align_r{ratio}", lambda x=x, r=ratio: ops.roi_align(x, on(rois), (7, 7), 0.5, r, "avg", True), x)

    # Deformable convolution (DCN, SAC, RepPoints, VFNet) and its modulated form (DCNv2, DyHead).
    x_in, weight = torch.rand(2, 4, 12, 12, generator=gen), torch.rand(6, 4, 3, 3, generator=gen) - 0.5
    offset = (torch.rand(2, 18, 12, 12, generator=gen) - 0.5) * 4
    mask = torch.rand(2, 9, 12, 12, generator=gen)
    x, o, w = on(x_in, True), on(offset, True), on(weight, True)
    record("deform_conv", lambda: ops.deform_conv2d(x, o, w, 1, 1, 1, 1, 1), x, o, w)
    x, o, m, w = on(x_in, True), on(offset, True), on(mask, True), on(weight, True)
    record("modulated_deform_conv", lambda: ops.modulated_deform_conv2d(x, o, m, w, None, 1, 1, 1, 1, 1), x, o, m, w)

    # Box overlaps (assigners in some heads).
    a, b = _boxes(gen, 40, 50.0), _boxes(gen, 30, 50.0)
    out["bbox_overlaps/iou"] = ops.bbox_overlaps(on(a), on(b)).cpu()

    # Sigmoid focal loss (RetinaNet, FCOS, ATSS, ...): CUDA kernel, else mmdet's plain-torch formula.
    logits, target = torch.randn(64, 5, generator=gen), torch.randint(0, 6, (64,), generator=gen)
    x = on(logits, True)
    if cuda:
        record("sigmoid_focal_loss", lambda: ops.sigmoid_focal_loss(x, on(target), 2.0, 0.25, None, "none"), x)
    else:
        record("sigmoid_focal_loss", lambda: _focal_loss_reference(x, target, 2.0, 0.25), x)

    # Multi-scale deformable attention (Deformable DETR, DINO): CUDA kernel, else mmcv's plain-torch version.
    from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch

    shapes = torch.tensor([[8, 8], [4, 4]])
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    value = torch.rand(2, int((shapes[:, 0] * shapes[:, 1]).sum()), 2, 8, generator=gen)
    loc = torch.rand(2, 10, 2, 2, 4, 2, generator=gen)
    attn = torch.rand(2, 10, 2, 2, 4, generator=gen)
    attn = attn / attn.sum(dim=(-1, -2), keepdim=True)
    v, lo, at = on(value, True), on(loc, True), on(attn, True)
    if cuda:
        record("ms_deform_attn", lambda: MultiScaleDeformableAttnFunction.apply(
            v, on(shapes), on(starts), lo, at, 64), v, lo, at)
    else:
        record("ms_deform_attn", lambda: multi_scale_deformable_attn_pytorch(v, shapes, lo, at), v, lo, at)
    return out


def compare(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> list[tuple[str, float, bool]]:
    """(output, largest absolute difference, within tolerance) for every output both runs produced."""
    rows = []
    for name in sorted(set(expected) & set(actual)):
        a, b = expected[name], actual[name]
        if a.shape != b.shape:
            rows.append((name, float("inf"), False))
            continue
        rtol, atol = TOLERANCE.get(name.split("/")[0], TOLERANCE["default"])
        diff = float((a - b).abs().max()) if a.numel() else 0.0
        rows.append((name, diff, bool(torch.allclose(a, b, rtol=rtol, atol=atol))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="save the outputs here (torch.save)")
    parser.add_argument("--compare", nargs=2, metavar=("EXPECTED", "ACTUAL"))
    args = parser.parse_args(argv)
    if args.compare:
        rows = compare(*(torch.load(p, weights_only=True) for p in args.compare))
        for name, diff, ok in rows:
            print(f"{'ok ' if ok else 'BAD'} {name:32s} max |diff| {diff:.3g}")
        return 0 if rows and all(ok for _, _, ok in rows) else 1
    outputs = run_ops(args.device, args.seed)
    if args.out:
        torch.save(outputs, args.out)
    print(f"{len(outputs)} outputs on {args.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
