"""bench/loader_memory.py --generation 3 --quick: the table's shape (checks of tests/test_bench_loader_memory.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_loader_memory_checks", Path(__file__).resolve().parents[1] / "test_bench_loader_memory.py")
assert _spec is not None and _spec.loader is not None
checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checks)


def test_quick(tmp_path: Path) -> None:
    checks.run_quick(tmp_path, 3)
