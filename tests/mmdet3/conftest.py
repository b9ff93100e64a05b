"""The 3.x tests run only in .venv-mmdet3 (``.venv-mmdet3/bin/pytest tests/mmdet3``)."""

from __future__ import annotations

import pytest

from model_hub_mmdet import generation

if generation.installed() != "mmdet3":
    collect_ignore_glob = ["*.py"]


def pytest_configure(config: pytest.Config) -> None:
    # mmdet 3.3's own modules use torch.cuda.amp.autocast, deprecated in torch 2.4: nothing a user can act on.
    config.addinivalue_line("filterwarnings", r"ignore:`torch.cuda.amp.autocast\(args...\)` is deprecated")
    config.addinivalue_line("filterwarnings", "ignore:torch.meshgrid:UserWarning")
