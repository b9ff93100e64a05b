"""Wrap a method of an mmdet class once, keeping the original reachable (the core's ``patch_registry``)."""

from model_hub_mmdet.patch_registry import MARK, wrap_method

__all__ = ["MARK", "wrap_method"]
