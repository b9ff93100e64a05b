"""The trial's training step next to a bare step, interleaved batch by batch inside one Determined training run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/step_ab.py [--batches 44] [--workers 1]

The demo experiment of ``bench/compute.py`` (``backend: fake``) runs under ``train_local``. Even batches go through
``MMDetTrial.train_batch`` (schedule hook, non-finite guard, metrics, Determined's ``backward``/``step_optimizer``),
odd ones through a bare step on the same model and optimizer (forward, ``_parse_losses``, backward, clipping as the
demo configures it, ``optimizer.step()``). Both see the same loader, process and model state, so the difference of
their medians is what the trial's step adds; the time between two ``train_batch`` calls is the loader's hand-over
plus Determined's loop. Printed: median milliseconds of each and the throughput ratio they imply.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compute  # noqa: E402  (its demo experiment; imports model_hub_mmdet first)
import torch  # noqa: E402

from model_hub_mmdet.local import train_local  # noqa: E402
from model_hub_mmdet.mmdet2.data import unwrap_batch  # noqa: E402
from model_hub_mmdet.mmdet2.trial import MMDetTrial  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=44)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="data.workers_per_gpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-step-ab-"))
    os.environ["XDG_DATA_HOME"] = str(work / "xdg")
    exp = compute.demo_experiment(work, args.workers)
    (work / "cwd").mkdir()
    os.chdir(work / "cwd")
    logging.getLogger("determined").setLevel(logging.WARNING)
    times: dict[str, list[float]] = {"trial step": [], "bare step": [], "between steps": []}
    state: dict[str, Any] = {}

    class Interleaved(MMDetTrial):
        def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            started = time.perf_counter()
            if "end" in state:
                times["between steps"].append(started - state["end"])
            if batch_idx % 2 == 0 or batch_idx < args.warmup:
                metrics = super().train_batch(batch, epoch_idx, batch_idx)
                state["metrics"] = metrics  # Determined wants the same metric names every batch
                label = "trial step"
            else:
                data = unwrap_batch(batch, self.context.device)
                loss, _ = self.detector._parse_losses(self.model(**data))
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 35)  # the demo's grad_clip
                self.optimizer.step()
                self.batches_trained += 1
                metrics = dict(state["metrics"])
                label = "bare step"
            if batch_idx >= args.warmup:
                times[label].append(time.perf_counter() - started)
            state["end"] = time.perf_counter()
            return metrics

    train_local(exp, Interleaved, max_batches=args.batches, validation_period=10**6)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for label, ms in med.items():
        print(f"{label:<14} {ms:7.1f} ms (median of {len(times[label])})")
    bare, trial = med["bare step"], med["trial step"] + med["between steps"]
    print(f"throughput implied, trial loop / bare step: {bare / trial:.3f}  (threads {torch.get_num_threads()},"
          f" workers {args.workers})")


if __name__ == "__main__":
    main()
