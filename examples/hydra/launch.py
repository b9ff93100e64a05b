"""Compose an experiment config with Hydra, then submit it, train it here, or print it.

    python examples/hydra/launch.py                                   # print the composed YAML
    python examples/hydra/launch.py data=s3 searcher=adaptive         # other groups
    python examples/hydra/launch.py mode=local max_batches=50         # train locally (Determined Trainer)
    DET_MASTER=https://master:8080 python examples/hydra/launch.py    # submit with Determined's Python SDK
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
import yaml
from omegaconf import DictConfig, OmegaConf


def compose_experiment(cfg: DictConfig) -> dict[str, Any]:
    """The plain experiment config (what an experiment YAML would hold)."""
    return OmegaConf.to_container(cfg.experiment, resolve=True)  # type: ignore[return-value]


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    experiment = compose_experiment(cfg)
    context = Path(cfg.context_dir).resolve()
    mode = "submit" if os.environ.get("DET_MASTER") else cfg.mode
    if mode == "submit":
        from determined.experimental import client

        exp = client.create_experiment(config=experiment, model_dir=str(context))
        print(f"submitted experiment {exp.id} to {os.environ.get('DET_MASTER')}")
    elif mode == "local":
        from model_hub_mmdet.local import train_local

        os.chdir(context)
        result = train_local(experiment, max_batches=cfg.max_batches, show_progress=True)
        print(yaml.safe_dump({"validations": result.validations}, sort_keys=False))
    elif mode == "print":
        print(yaml.safe_dump(experiment, sort_keys=False))
    else:
        sys.exit(f"mode must be print, local or submit, got {mode!r}")


if __name__ == "__main__":
    main()
