"""``python3 -m model_hub_mmdet.run``: the script-style entrypoint Determined 0.38 recommends.

In an experiment file::

    entrypoint: python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run
    # or, for a subclass in the context directory:
    entrypoint: >-
      python3 -m determined.launch.torch_distributed python3 -m model_hub_mmdet.run --trial my_trial:MyTrial

On a cluster it reads ``det.get_cluster_info()`` (hyperparameters, experiment config, latest checkpoint; the trial
seed is applied by ``pytorch.init``), builds the trial and trains it with ``det.pytorch.Trainer``, calling
``pytorch.init`` and ``Trainer.fit`` with the arguments Determined's own harness would use
(:mod:`model_hub_mmdet.launch`). Off a cluster the same module trains an experiment file on this machine::

    python3 -m model_hub_mmdet.run EXPERIMENT.yaml [--trial module:Class] [model-hub-mmdet train options]

which is ``model-hub-mmdet train EXPERIMENT.yaml --local``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from model_hub_mmdet.errors import UserError
from model_hub_mmdet.expconf import entrypoint_class

logger = logging.getLogger("model_hub_mmdet")


def run_on_cluster(info: Any, trial_spec: str | None = None, context_dir: str = ".") -> None:
    """Train the trial of a Determined cluster task described by ``info`` (a ``det.ClusterInfo``)."""
    from determined import pytorch

    from model_hub_mmdet import determined_patches, generation
    from model_hub_mmdet.launch import configure_context, fit_kwargs, init_kwargs, load_trial_class

    generation.setup()
    exp_conf = determined_patches.cluster_experiment_config(info)
    hparams = info.trial.hparams
    trial_cls = load_trial_class(trial_spec or entrypoint_class(exp_conf.get("entrypoint")), context_dir)
    with pytorch.init(hparams=hparams, exp_conf=exp_conf, **init_kwargs(exp_conf)) as context:
        configure_context(context, exp_conf)
        trial = trial_cls(context)
        if context.distributed.size > 1 and context.distributed.rank != 0:
            logging.getLogger().setLevel(logging.DEBUG if determined_patches.cluster_debug(info) else logging.WARNING)
        trainer = pytorch.Trainer(trial, context)
        trainer.fit(**fit_kwargs(exp_conf, hparams, latest_checkpoint=info.latest_checkpoint))


def main(argv: list[str] | None = None) -> int:
    import determined as det

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python3 -m model_hub_mmdet.run", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", help="experiment YAML (off-cluster only)")
    parser.add_argument("--trial", help="module:Class of the trial (default: model_hub_mmdet:MMDetTrial)")
    args, rest = parser.parse_known_args(argv)
    info = det.get_cluster_info()
    if info is not None and info.task_type == "TRIAL":
        if args.experiment:
            logger.warning("on a cluster the experiment comes from Determined; ignoring %s", args.experiment)
        try:
            run_on_cluster(info, args.trial)
        except UserError as err:  # one line in the trial log instead of a traceback
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if not args.experiment:
        print(
            "error: not on a Determined cluster; to train here give the experiment file:"
            " python3 -m model_hub_mmdet.run EXPERIMENT.yaml (or model-hub-mmdet train EXPERIMENT.yaml --local)",
            file=sys.stderr,
        )
        return 1
    from model_hub_mmdet.tools import cli

    trial = ["--trial", args.trial] if args.trial else []
    return cli.main(["train", args.experiment, "--local", *trial, *rest])


if __name__ == "__main__":
    sys.exit(main())
