"""Memory soak: train the demo model for many batches and check that memory stays flat (issue 12, item 8).

    OMP_NUM_THREADS=2 .venv/bin/python bench/soak.py [--batches 3000] [--validation-period 500] [--quick]

Runs ``model-hub-mmdet train EXP --local`` (the console script, from the repository root as ``make demo`` does)
on examples/shapes/shapes.yaml with freshly generated shapes data, ``--max-batches`` and ``--validation-period``
as given and one checkpoint at the end. While it runs, the memory of the whole process tree (the trainer and its
data-loader workers) is sampled every ``--interval`` seconds together with the batch count read from the
progress bar. Reported per window of ``--window`` batches (default: the validation period): the median RSS of
the main process, the median and peak PSS of the tree (PSS shares copy-on-write pages out among the processes
that share them; a sum of RSS counts them once per worker and is shown as well).

The slope is the least-squares line through the windows' medians (MB per 1000 batches), leaving out the first
window (allocator and caches warming up, the first validation); samples taken after training (the CLI's export
and predictions picture, which build a second model) are reported apart. Memory is called flat when the slopes of the
main process's RSS and of the tree's PSS are both under ``--flat-mb`` MB per 1000 batches.
"""

from __future__ import annotations

import argparse
import codecs
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    MB,
    REPO,
    least_squares_slope,
    machine_line,
    markdown_table,
    median,
    process_tree,
    pss_bytes,
    rss_bytes,
    write_results,
)

PROGRESS = re.compile(r"(\d+)/(\d+) \[")  # tqdm: " 12%|#2   | 360/3000 [02:01<14:50, ...]"
VALIDATION = re.compile(r"\[validation @ (\d+) batches\] (.*)")


def write_experiment(work: Path, batches: int, train: int, val: int) -> Path:
    """The demo's experiment on generated data, with one checkpoint at the end."""
    import yaml

    from model_hub_mmdet import generation  # noqa: E402,I001

    generation.setup()  # the generation's fixes before mmcv/mmdet are used; registers s3/gcs
    from model_hub_mmdet.expconf import load_experiment
    from model_hub_mmdet.tools.shapes import make_shapes

    data = work / "data"
    make_shapes(data, train=train, val=val, size=128, seed=0)
    exp = load_experiment(REPO / "examples/shapes/shapes.yaml")
    hp = exp["hyperparameters"]
    hp["config_file"] = str(REPO / hp["config_file"])
    over = dict(hp.get("override_mmdet_config") or {})
    for split, folder in (("train", "train"), ("val", "val"), ("test", "val")):
        over[f"data.{split}.ann_file"] = str(data / "annotations" / f"{folder}.json")
        over[f"data.{split}.img_prefix"] = f"{data / folder}/"
    hp["override_mmdet_config"] = over
    exp["min_checkpoint_period"] = {"batches": batches}
    path = work / "soak.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


class _Reader(threading.Thread):
    """Reads one pipe of the child, copying it to a log file and keeping the latest batch count."""

    def __init__(self, pipe: Any, log: Path) -> None:
        super().__init__(daemon=True)
        self.pipe, self.log = pipe, log
        self.batches = 0
        self.finished = False  # "trained N batches" printed: what follows is the CLI's export and pictures
        self.validations: list[tuple[int, str]] = []

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # tqdm's bar characters span chunks
        with open(self.log, "w") as log:
            buf = ""
            while raw := self.pipe.read1(65536):
                chunk = decoder.decode(raw)
                log.write(chunk)
                buf += chunk
                *parts, buf = re.split(r"[\r\n]", buf)
                for part in parts:
                    self._line(part)
            self._line(buf)

    def _line(self, line: str) -> None:
        if line.startswith("trained "):
            self.finished = True
        elif m := VALIDATION.search(line):
            self.validations.append((int(m.group(1)), m.group(2)))
        elif m := PROGRESS.search(line):
            self.batches = int(m.group(1))


def soak(exp: Path, work: Path, batches: int, period: int, interval: float) -> dict[str, Any]:
    cli = Path(sys.executable).with_name("model-hub-mmdet")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "model_hub_mmdet.tools.cli"]
    cmd += ["train", str(exp), "--local", "--max-batches", str(batches), "--validation-period", str(period),
            "--out", str(work / "out")]
    env = dict(os.environ, XDG_DATA_HOME=str(work / "xdg"))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = _Reader(proc.stdout, work / "stdout.log"), _Reader(proc.stderr, work / "stderr.log")
    out.start()
    err.start()
    samples = []
    while proc.poll() is None:
        pids = process_tree(proc.pid)
        rss = [rss_bytes(p) for p in pids]
        if rss and rss[0]:
            samples.append({"t": time.monotonic() - started, "batches": max(out.batches, err.batches),
                            "main_rss": rss[0] / MB, "tree_rss": sum(rss) / MB,
                            "tree_pss": sum(pss_bytes(p) for p in pids) / MB, "procs": len(pids),
                            "extras": out.finished})
        time.sleep(interval)
    out.join()
    err.join()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        tail = (work / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"training failed (exit {proc.returncode}):\n{tail}")
    return {"wall_s": wall, "samples": samples, "validations": out.validations + err.validations}


def analyse(samples: list[dict[str, Any]], batches: int, window: int, flat_mb: float) -> dict[str, Any]:
    extras = [s for s in samples if s["extras"]]
    samples = [s for s in samples if not s["extras"]]
    windows = []
    for start in range(0, batches, window):
        inside = [s for s in samples if start <= s["batches"] < start + window
                  or (start + window >= batches and s["batches"] >= start)]
        if not inside:
            continue
        windows.append({"from": start, "to": min(start + window, batches), "samples": len(inside),
                        "main_rss_mb": median(s["main_rss"] for s in inside),
                        "tree_pss_mb": median(s["tree_pss"] for s in inside),
                        "tree_pss_peak_mb": max(s["tree_pss"] for s in inside),
                        "tree_rss_mb": median(s["tree_rss"] for s in inside),
                        "tree_rss_peak_mb": max(s["tree_rss"] for s in inside)})
    fitted = windows[1:] if len(windows) > 2 else windows
    xs = [(w["from"] + w["to"]) / 2 for w in fitted]
    slopes = {key: least_squares_slope(xs, [w[key] for w in fitted]) * 1000
              for key in ("main_rss_mb", "tree_pss_mb", "tree_rss_mb")}
    flat = all(abs(slopes[k]) < flat_mb for k in ("main_rss_mb", "tree_pss_mb"))
    return {"windows": windows, "slope_mb_per_1000_batches": slopes, "flat": flat, "flat_mb": flat_mb,
            "fitted_windows": len(fitted), "extras_tree_pss_peak_mb": max((s["tree_pss"] for s in extras), default=0),
            "extras_main_rss_peak_mb": max((s["main_rss"] for s in extras), default=0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--batches", type=int, default=3000, help="training batches (default 3000)")
    parser.add_argument("--validation-period", type=int, default=500, help="validate every N batches (default 500)")
    parser.add_argument("--window", type=int, help="batches per reported window (default: the validation period)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between memory samples (default 1)")
    parser.add_argument("--train", type=int, default=400, help="training images (default 400, as make demo)")
    parser.add_argument("--val", type=int, default=50, help="validation images (default 50, as make demo)")
    parser.add_argument("--flat-mb", type=float, default=10.0,
                        help="largest slope, MB per 1000 batches, still called flat (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 batches, validation every 20, small data")
    parser.add_argument("--json", help="results file (default runs/bench/soak-TIME.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.validation_period, args.train, args.val, args.interval = 60, 20, 64, 8, 0.25
    window = args.window or args.validation_period
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        exp = write_experiment(work, args.batches, args.train, args.val)
        run = soak(exp, work, args.batches, args.validation_period, args.interval)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = analyse(run["samples"], args.batches, window, args.flat_mb)
    print(f"\n### soak: demo Mask R-CNN, {args.batches} batches of 8, validation every {args.validation_period}"
          f" ({args.val} images), {run['wall_s'] / 60:.1f} min\n")
    rows = [(f"{w['from']}-{w['to']}", f"{w['main_rss_mb']:.0f}", f"{w['tree_pss_mb']:.0f}",
             f"{w['tree_pss_peak_mb']:.0f}", f"{w['tree_rss_mb']:.0f}", w["samples"]) for w in result["windows"]]
    print(markdown_table(["batches", "main RSS MB (median)", "tree PSS MB (median)", "tree PSS MB (peak)",
                          "tree RSS MB (median)", "samples"], rows))
    slopes = result["slope_mb_per_1000_batches"]
    print(f"\nSlope (least squares over the medians of windows 2-{len(result['windows'])}), MB per 1000 batches:"
          f" main RSS {slopes['main_rss_mb']:+.2f}, tree PSS {slopes['tree_pss_mb']:+.2f},"
          f" tree RSS {slopes['tree_rss_mb']:+.2f}.")
    print(f"After training (export, predictions picture): peak main RSS {result['extras_main_rss_peak_mb']:.0f} MB,"
          f" peak tree PSS {result['extras_tree_pss_peak_mb']:.0f} MB (not in the windows).")
    verdict = "flat" if result["flat"] else "NOT flat"
    print(f"Memory is {verdict} (threshold {args.flat_mb:g} MB per 1000 batches). {machine_line()}.")
    for at, line in run["validations"]:
        print(f"  validation @ {at}: {line}")
    payload = {"args": vars(args), **result, "wall_s": run["wall_s"], "validations": run["validations"],
               "samples": run["samples"]}
    print(f"\nresults: {write_results('soak', payload, args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
