"""bench/loader_memory.py --quick: the table of both loaders at 0 and 2 workers, and its result file (shape only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_quick(tmp_path: Path, generation: int) -> None:
    """Run the benchmark's smoke run in this Python's environment and check what it prints and writes."""
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "loader_memory.py"), "--generation", str(generation),
                           "--quick", "--interval", "0.1", "--data", str(tmp_path / "data"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| loader | workers |"))
    rows = [line.split(" | ") for line in lines[header + 2:header + 6]]
    assert len(rows) == 4 and all(len(row) == 11 for row in rows)
    assert [row[1] for row in rows] == ["0", "0", "2", "2"]
    assert [row[-1].strip(" |") for row in rows[:2]] == ["1.00", "1.00"]  # PSS over the same loader's at 0 workers
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert [(r["loader"], r["workers"]) for r in runs] == [("runner", 0), ("ours", 0), ("runner", 2), ("ours", 2)]
    for r in runs:
        s = r["summary"]
        assert s["seen"] >= r["target"] and s["pss_mb"] > 0 and s["peak_pss_mb"] >= s["pss_mb"]
        # the workers' memory was sampled while they ran (a quick run can end between two samples of its end point)
        assert s["workers_seen"] == r["workers"] or any(p.get("workers") == r["workers"] for p in r["timeline"])
    assert f"loader memory (MMDetection {generation}.x)" in proc.stdout


def test_quick(tmp_path: Path) -> None:
    run_quick(tmp_path, 2)
