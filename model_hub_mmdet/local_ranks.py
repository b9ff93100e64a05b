"""``train --local --nproc N``: N training processes on this machine, and one line when one of them dies.

The ranks are started by torch's elastic launcher (what ``torchrun --standalone`` runs), called in this process
rather than as a ``torchrun`` command so that a failure arrives as data (which rank, which exit code or signal)
instead of torchrun's traceback and ``ChildFailedError`` table. The launcher's own log goes to ``launcher.log`` in
the run's folder; the ranks keep this process's console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher")
RUN_DIR_ENV = "MODEL_HUB_MMDET_RUN_DIR"  # the run folder, for the ranks' own logs
# Determined's chief binds two ZMQ ports for its broadcast, 12360 and 12360 + 16 unless these variables say
# otherwise: a second local multi-process run on the same machine would fail on them ("Address already in use").
IPC_PORT_ENVS = ("INTER_TRAIN_PROCESS_COMM_PORT_1", "INTER_TRAIN_PROCESS_COMM_PORT_2")
PEER_LOST_EXIT = 75  # a rank that stopped because another rank died (EX_TEMPFAIL)
# What gloo and NCCL say when the process at the other end of a collective is gone.
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted")


@dataclass(frozen=True)
class RankFailure:
    """How one rank ended: ``exitcode`` < 0 means killed by signal ``-exitcode``."""

    rank: int
    pid: int
    exitcode: int

    @property
    def signal_name(self) -> str | None:
        if self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    def describe(self) -> str:
        """``rank 1 (pid 123) was killed by SIGKILL`` / ``... exited with code 1``."""
        how = f"was killed by {self.signal_name}" if self.signal_name else f"exited with code {self.exitcode}"
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if self.signal_name == "SIGKILL" else ""
        return f"rank {self.rank} (pid {self.pid}) {how}{hint}"


def peer_lost(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another rank of this job is gone."""
    text = str(err)
    return any(marker in text for marker in _PEER_LOST)


def _write_traceback(err: BaseException) -> Path:
    """Write ``err``'s traceback to ``rank-N.log`` in the run folder; returns that path."""
    import traceback

    run_dir = Path(os.environ.get(RUN_DIR_ENV) or ".")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"rank-{os.environ.get('RANK', '0')}.log"
    log.write_text("".join(traceback.format_exception(err)))
    return log


def report_peer_lost(err: BaseException) -> int:
    """In a rank of a multi-rank run: write the traceback of a peer-lost error to ``rank-N.log`` in the run
    folder (the launcher names the rank that died) and return the exit code that says so."""
    _write_traceback(err)
    return PEER_LOST_EXIT


def report_crash(err: BaseException) -> int:
    """In a rank of a multi-rank run: an unexpected error ends the run in one line naming the rank, with the
    traceback in ``rank-N.log`` (N ranks' tracebacks interleaved on one console are unreadable). Returns 1."""
    log = _write_traceback(err)
    rank = os.environ.get("RANK", "0")
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    print(f"\nerror: rank {rank}: {type(err).__name__}: {message} (traceback: {log})", file=sys.stderr)
    return 1


def in_multi_rank_run() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and RUN_DIR_ENV in os.environ


def root_cause(failures: Sequence[RankFailure]) -> RankFailure:
    """The failure that brought the others down: a rank killed by a signal first, else the lowest rank. (When
    one rank dies, the others fail at their next collective or are stopped by the launcher with SIGTERM.)"""
    killed = [f for f in failures if f.signal_name and f.signal_name != "SIGTERM"]
    failed = [f for f in failures if f.exitcode != PEER_LOST_EXIT and f.signal_name != "SIGTERM"]
    return min(killed or failed or failures, key=lambda f: f.rank)


@contextlib.contextmanager
def launcher_log(path: Path) -> Iterator[None]:
    """Send the elastic launcher's log records to ``path`` instead of the console, for this block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = []
    for name in LAUNCHER_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, list(logger.handlers)))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate, handlers in saved:
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on this machine now (the OS picks them; all held until all are chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in socks]


def run_ranks(nproc: int, module_args: Sequence[str], env: dict[str, str], log_path: Path) -> list[RankFailure]:
    """Run ``python -m MODULE_ARGS`` as ``nproc`` ranks of one job (gloo on the CPU); [] when all succeed,
    else how each failed rank ended."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    saved = dict(os.environ)
    if not any(name in os.environ for name in IPC_PORT_ENVS):  # a user's choice stands
        env = {**dict(zip(IPC_PORT_ENVS, map(str, free_ports(2)))), **env}
    os.environ.update(env)  # the launcher passes its own environment (plus the rank variables) to each rank
    try:
        with launcher_log(log_path):
            elastic_launch(config, entrypoint=sys.executable)("-m", *module_args)
    except ChildFailedError as err:
        return [_failure(rank, f) for rank, f in sorted(err.failures.items())]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return []


def _failure(rank: int, failure: Any) -> RankFailure:
    return RankFailure(rank=int(rank), pid=int(getattr(failure, "pid", -1)), exitcode=int(failure.exitcode))
