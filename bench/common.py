"""Helpers shared by the benchmarks: process-tree memory sampling, medians of paired runs, tables, result files.

Only the standard library at import time (psutil is used when installed), so a benchmark's child processes that
import this module pay nothing for it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "runs" / "bench"  # ignored by git (/runs/) and by .detignore (runs/)
MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------- process tree
def _children_from_proc(root: int) -> list[int]:
    """Descendants of ``root`` found by scanning /proc (what psutil does; used when psutil is missing)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the command name may contain spaces
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (data-loader workers, torchrun children, ...)."""
    try:
        import psutil
    except ImportError:
        return [root, *_children_from_proc(root)]
    try:
        return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    except psutil.Error:
        return [root]


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them, so that a sum over forked
    workers does not count the parent's copy-on-write pages once per worker (a sum of RSS does)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class Sample:
    t: float  # time.monotonic() (one clock for every process on the machine)
    rss: int  # summed over the tree
    main_rss: int  # the root process alone
    procs: int
    pss: int | None  # summed over the tree; only every ``pss_every``-th sample (reading smaps costs more)


@dataclass
class TreeSampler:
    """Samples the memory of a process tree in a background thread every ``interval`` seconds.

    Use as a context manager around the life of the process; ``samples`` then hold the timeline and
    ``peak_*`` the maxima (RSS and PSS summed over the tree, RSS of the root alone)."""

    pid: int
    interval: float = 0.05
    pss_every: int = 5
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            pids = process_tree(self.pid)
            sizes = [rss_bytes(p) for p in pids]
            pss = sum(pss_bytes(p) for p in pids) if n % self.pss_every == 0 else None
            if sizes and sizes[0]:
                self.samples.append(Sample(time.monotonic(), sum(sizes), sizes[0], len(pids), pss))
            n += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self, until: float | None = None) -> dict[str, float]:
        """Peak RSS / PSS of the tree and RSS of the root in MB, over samples taken before ``until``."""
        kept = [s for s in self.samples if until is None or s.t < until]
        pss = [s.pss for s in kept if s.pss is not None]
        return {
            "peak_rss_mb": max((s.rss for s in kept), default=0) / MB,
            "peak_pss_mb": max(pss, default=0) / MB,
            "peak_main_rss_mb": max((s.main_rss for s in kept), default=0) / MB,
            "max_procs": max((s.procs for s in kept), default=0),
        }


# --------------------------------------------------------------------------------------------- timing
def timed_into(spent: dict[str, float], label: str, fn: Any, clock: Any = time.perf_counter) -> Any:
    """``fn`` wrapped so that each call adds its duration (by ``clock``) to ``spent[label]``, raise or not."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + clock() - start

    return wrapper


# --------------------------------------------------------------------------------------------- statistics
def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each pair (runs made side by side, so machine load cancels within a pair)."""
    return [x / y for x, y in zip(a, b) if y]


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of the least-squares line through (xs, ys); nan with fewer than two distinct xs."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return float("nan")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


# ------------------------------------------------------------------------------------------------ output
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` has one letter per column (l or r), default: first left, rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], path: str | os.PathLike | None = None) -> Path:
    """Write ``payload`` as JSON to ``path`` (default runs/bench/NAME-TIME.json, ignored by git) and return it."""
    out = Path(path) if path else RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "omp_num_threads": os.environ.get(
        "OMP_NUM_THREADS"), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out.write_text(json.dumps({"benchmark": name, "machine": meta, **payload}, indent=1, default=str))
    return out


def machine_line() -> str:
    """One line naming the conditions of a run (cores, load, threads), printed under every table."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"


# ------------------------------------------------------------------------------------------- generations
VENVS = {2: ".venv", 3: ".venv-mmdet3"}


def installed_generation() -> int | None:
    """2 or 3: the MMDetection generation of this Python's environment (None when none is installed)."""
    from model_hub_mmdet import generation

    name = generation.installed()
    return int(name[-1]) if name else None


def check_generation(wanted: int) -> None:
    """Exit with one line when this Python's environment does not hold MMDetection ``wanted``.x."""
    found = installed_generation()
    if found != wanted:
        have = f"MMDetection {found}.x" if found else "no supported MMDetection"
        raise SystemExit(f"--generation {wanted} needs MMDetection {wanted}.x, and this Python ({sys.executable})"
                         f" has {have}: run it with {VENVS[wanted]}/bin/python")


# ----------------------------------------------------------------------------------------- smaps rollup
ROLLUP_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty", "Shared_Clean",
                 "Shared_Dirty")


def smaps_rollup(pid: int) -> dict[str, int]:
    """The bytes of ``/proc/PID/smaps_rollup`` (Rss, Pss, Private_Dirty, ...; {} when the process is gone), plus
    ``Uss``: Private_Clean + Private_Dirty, what the process alone holds."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                name, _, rest = line.partition(b":")
                key = name.decode()
                if key in ROLLUP_FIELDS:
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    if out:
        out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out

