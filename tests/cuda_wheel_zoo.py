"""What the CUDA wheel check (scripts/check_cuda_wheel.py) must cover: every mmcv op type the installed mmdet's
zoo configs name (``type='...'``), found among mmcv's registered modules and ``mmcv.ops``' names."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from model_hub_mmdet.generation import bundled_config_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import check_cuda_wheel  # noqa: E402


def mmcv_op_names(registries: list) -> set[str]:
    """The names a config can give an mmcv op: ``mmcv.ops``' own, and those registered from ``mmcv.ops``."""
    import mmcv.ops

    names = set(mmcv.ops.__all__)

    def walk(registry) -> None:
        for name, cls in registry.module_dict.items():
            if getattr(cls, "__module__", "").startswith("mmcv.ops"):
                names.add(name)
        for child in getattr(registry, "children", {}).values():
            walk(child)

    for registry in registries:
        walk(registry)
    return names


def uncovered(registries: list) -> tuple[set[str], set[str]]:
    """(the mmcv op types the zoo names, those the check neither checks nor knows to have no CUDA kernel)."""
    configs = bundled_config_dir()
    named = set()
    for path in configs.rglob("*.py"):
        named |= set(re.findall(r"type\s*=\s*['\"]([A-Za-z0-9_]+)['\"]", path.read_text(errors="replace")))
    ops = named & mmcv_op_names(registries)
    known = set(check_cuda_wheel.ZOO_TYPES) | check_cuda_wheel.NO_CUDA_KERNEL
    assert set(check_cuda_wheel.ZOO_TYPES.values()) <= set(check_cuda_wheel.CUDA_ENTRY_POINTS)
    return ops, ops - known
