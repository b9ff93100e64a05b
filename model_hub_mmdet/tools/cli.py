"""``model-hub-mmdet``: write an experiment from a config, check, train locally, print the final config, export
checkpoints, make demo data.

``check``, ``train`` and ``print-config`` take an experiment YAML or an MMDetection ``.py`` config (the
experiment ``init`` would write for it), and mmdet's ``--cfg-options KEY=VALUE ...``. Errors a user can fix print
one line and exit 1 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from model_hub_mmdet.errors import UserError


def _is_config(path: str) -> bool:
    """An MMDetection config (``.py``) given where an experiment YAML is expected."""
    return str(path).endswith(".py")


def _cfg_options(args: argparse.Namespace) -> dict[str, Any]:
    from model_hub_mmdet.tools.cfg_options import parse_cfg_options

    return parse_cfg_options(getattr(args, "cfg_options", None))


def _experiment(args: argparse.Namespace, slots: int | None = None) -> dict[str, Any]:
    """The experiment a command works on: the YAML file, or for a ``.py`` config what ``init`` would write for it
    (``slots``: its GPU count), with ``--cfg-options`` appended to ``override_mmdet_config``."""
    from model_hub_mmdet.expconf import load_experiment
    from model_hub_mmdet.tools.cfg_options import with_cfg_options

    options = _cfg_options(args)
    if _is_config(args.experiment):
        from model_hub_mmdet.tools.init import experiment_for_config

        # the options shape the experiment too: runner.max_epochs=24 is a 24-epoch searcher length
        conf = experiment_for_config(args.experiment, slots=slots, context_dir=args.context or ".",
                                     cfg_options=options).conf
    else:
        conf = load_experiment(args.experiment)
    return with_cfg_options(conf, options)  # (again for a config: YAML turned its tuples into lists)


def _cmd_init(args: argparse.Namespace) -> int:
    from model_hub_mmdet.tools.init import experiment_for_config

    if args.out and Path(args.out).exists() and not args.force:  # it may hold the user's edits
        raise UserError(f"init: {args.out} exists; give --force to overwrite it")
    result = experiment_for_config(
        args.config, slots=args.slots, data=args.data, context_dir=args.context or ".",
        out_name=args.out or "EXP.yaml", cfg_options=_cfg_options(args),
    )
    if not args.out:
        print(result.text, end="")
        return 0
    Path(args.out).write_text(result.text, encoding="utf-8")
    print(f"wrote {args.out}; next: model-hub-mmdet check {args.out} && det experiment create -f {args.out} .")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from model_hub_mmdet.tools.cfg_options import as_option_message
    from model_hub_mmdet.tools.check import check_experiment

    options = _cfg_options(args)
    conf = _experiment(args) if options or _is_config(args.experiment) else None
    report = check_experiment(args.experiment, args.context, conf=conf)
    report.problems = [as_option_message(p, options) for p in report.problems]
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.ok:
        print(f"{args.experiment}: OK")
        for key, value in report.summary.items():
            print(f"  {key:<12} {value}")
        return 0
    print(f"{args.experiment}: {len(report.problems)} problem(s)", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def _cmd_print_config(args: argparse.Namespace) -> int:
    from model_hub_mmdet import generation
    from model_hub_mmdet.expconf import local_hparams, section

    conf = _experiment(args)
    context = args.context or "."
    config = generation.adapter("config")
    cfg = config.build_mmdet_config(local_hparams(section(conf, "hyperparameters")), section(conf, "data"), context)
    print(config.config_text(cfg))
    return 0


def _cmd_make_shapes(args: argparse.Namespace) -> int:
    from model_hub_mmdet.tools.shapes import make_shapes

    paths = make_shapes(args.out_dir, train=args.train, val=args.val, size=args.size, seed=args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from model_hub_mmdet.weights import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.out)
    print(f"wrote {out} (and {Path(out).with_suffix('.py')})")
    return 0


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this command as ``--nproc`` local ranks (gloo on CPU); a rank that dies ends the run in one line."""
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from model_hub_mmdet.local_ranks import RUN_DIR_ENV, root_cause, run_ranks

    argv, skip = [], False
    for arg in args.argv:  # this command's own arguments (python -m model_hub_mmdet.run passes its own)
        if skip or arg.startswith("--nproc="):
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        argv.append(arg)
    # Every rank must write to the same run folder, so it is chosen here, once.
    out = _run_dir(args, _experiment(args, slots=args.nproc))
    if not args.out:
        argv += ["--out", str(out)]
    # The arguments travel in the environment: the launcher's own parser would claim options such as --local.
    env = {"MODEL_HUB_MMDET_ARGV": json.dumps(argv), "USE_TORCH_DISTRIBUTED": "1", RUN_DIR_ENV: str(out)}
    # The cores shared out between the ranks; set for MKL too, as mmengine's runner (env_cfg.mp_cfg) otherwise
    # sets it to 1 in each rank with a warning.
    threads = str(max(1, (os.cpu_count() or 1) // args.nproc))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = os.environ.get(name) or threads
    log = out / "launcher.log"
    try:
        failures = run_ranks(args.nproc, ["model_hub_mmdet.tools.cli"], env, log)
    except (KeyboardInterrupt, SignalException):  # Ctrl-C reaches the ranks too: the chief says what to do
        return 130
    if not failures:
        return 0
    cause = root_cause(failures)
    if cause.exitcode == 1 and not cause.signal_name:  # a rank stopped on an error it reported itself (one line)
        return 1
    print(
        # on a line of its own: the chief's progress bar was stopped mid-line
        f"\nerror: {cause.describe()}; {_newest_line(out)}continue with: {_again(args, out)}"
        f" (launcher log: {log})",
        file=sys.stderr,
    )
    return 1


def _run_dir(args: argparse.Namespace, conf: dict[str, Any]) -> Path:
    name = conf.get("name") or Path(args.experiment).stem
    return Path(args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()


def _ranks(args: argparse.Namespace) -> int:
    return int(os.environ.get("WORLD_SIZE", getattr(args, "nproc", 1)))  # a rank's own argv has no --nproc


def _again(args: argparse.Namespace, out: Path) -> str:
    ranks = _ranks(args)
    nproc = f" --nproc {ranks}" if ranks > 1 else ""
    options = getattr(args, "cfg_options", None)
    options = " --cfg-options " + " ".join(shlex.quote(o) for o in options) if options else ""
    return f"model-hub-mmdet train {args.experiment} --local{nproc}{options} --out {out} --auto-resume"


def _cmd_train(args: argparse.Namespace) -> int:
    if not args.local:
        print(
            "model-hub-mmdet train runs on this machine and needs --local; for a cluster use"
            f" `det experiment create -f {args.experiment} .`",
            file=sys.stderr,
        )
        return 1
    if args.nproc > 1 and "RANK" not in os.environ:
        return _torchrun(args)
    from model_hub_mmdet.expconf import entrypoint_class
    from model_hub_mmdet.launch import load_trial_class
    from model_hub_mmdet.local import train_local

    # A config trains what `init --slots N` writes, N = the local processes: each trains the config's per-GPU batch.
    conf = _experiment(args, slots=_ranks(args))
    if int(os.environ.get("RANK", "0")) == 0:
        from model_hub_mmdet.tools.migrate import legacy_warnings

        for warning in legacy_warnings(conf):
            print(f"warning: {warning}", file=sys.stderr)
    if args.context:
        os.chdir(args.context)
    trial_cls = load_trial_class(args.trial or entrypoint_class(conf.get("entrypoint")), ".")
    out = _run_dir(args, conf)
    chief = int(os.environ.get("RANK", "0")) == 0
    resume = _resume_from(args, out)
    again = _again(args, out)
    if chief:  # the experiment as trained (a config's generated one, --cfg-options included), before it can fail
        _save_experiment(conf, out)
    started = time.time()
    try:
        result = train_local(
            conf,
            trial_cls,
            max_batches=args.max_batches,
            validation_period=args.validation_period,
            resume=resume,
            tensorboard_dir=out / "tensorboard",
            test_mode=args.test,
            show_progress=True,
            run_dir=out,
        )
    except KeyboardInterrupt:
        if chief:
            print(f"\ninterrupted; {_newest_line(out)}continue with: {again}", file=sys.stderr)
        return 130
    except OSError as err:
        where = _disk_full_path(err)
        if where is None:
            raise
        raise UserError(
            f"no space left on the device writing {where}; {_newest_line(out)}free space and continue with: {again}"
        ) from err
    if not chief:
        return 0
    _finish_run(conf, result, out, time.time() - started, cfg_options=_cfg_options(args))
    return 0


class _Dumper(yaml.SafeDumper):
    """Safe YAML that writes tuples (``--cfg-options a="(1,2)"``) as lists; the overrides make them tuples again
    where the config has one."""


_Dumper.add_representer(tuple, lambda dumper, value: dumper.represent_list(list(value)))


def _save_experiment(conf: dict[str, Any], out: Path) -> Path:
    """The run folder's ``experiment.yaml``: the experiment as trained, secret-looking values redacted."""
    from model_hub_mmdet.redact import redact

    out.mkdir(parents=True, exist_ok=True)
    path = out / "experiment.yaml"
    path.write_text(yaml.dump(redact(conf), Dumper=_Dumper, sort_keys=False), encoding="utf-8")
    return path


def _resume_from(args: argparse.Namespace, out: Path) -> str | None:
    """``--resume DIR``, or with ``--auto-resume`` the newest complete checkpoint logged in ``--out``."""
    from model_hub_mmdet import checkpoints

    if not args.auto_resume:
        return args.resume
    if args.resume:
        raise UserError("--resume and --auto-resume exclude each other; give one")
    if not args.out:
        raise UserError("--auto-resume needs --out RUN_DIR (the run directory whose checkpoints it continues from)")
    newest = checkpoints.newest_complete(out)
    if newest is None:
        print(f"--auto-resume: no complete checkpoint in {out} yet; starting from the beginning", file=sys.stderr)
        return None
    print(f"--auto-resume: continuing from {newest}", file=sys.stderr)
    return str(newest)


def _disk_full_path(err: OSError) -> str | None:
    """The file being written when the disk filled up, or None when ``err`` is not a full disk."""
    full = (errno.ENOSPC, errno.EDQUOT)
    if err.errno in full:
        return str(err.filename or "a checkpoint")
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list):  # copytree gathers errors
        for entry in err.args[0]:
            if any(f"[Errno {code}]" in str(entry) for code in full):
                return str(entry[1]) if isinstance(entry, tuple) and len(entry) > 1 else "a checkpoint"
    return None


def _newest_line(out: Path) -> str:
    from model_hub_mmdet import checkpoints

    newest = checkpoints.newest_complete(out)
    return f"the newest complete checkpoint is {newest}; " if newest else "no checkpoint was completed; "


def _finish_run(
    conf: dict[str, Any], result: Any, out: Path, seconds: float, cfg_options: dict[str, Any] | None = None
) -> None:
    """Plots, a native mmdet export, predictions on a few validation images, and where everything is.
    ``metrics.json`` records the ``--cfg-options`` the run was trained with (``cfg_options``)."""
    from model_hub_mmdet.tools.report import export_and_draw, plot_curves

    out.mkdir(parents=True, exist_ok=True)
    metrics = {"training": result.training, "validations": result.validations, "cfg_options": cfg_options or {}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    curves = plot_curves(result.training, result.validations, out / "curves.png")
    print(f"\ntrained {result.batches_trained} batches in {seconds / 60:.1f} min")
    if result.validations:
        last = result.validations[-1]
        print("final validation: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(last.items()) if k != "batches"))
    print(f"curves:      {curves}")
    print(f"tensorboard: {out / 'tensorboard'}")
    if result.checkpoints:
        ckpt = result.checkpoints[-1]
        print(f"checkpoint:  {ckpt}")
        # the export and the picture fail apart: "could not export" only when the export itself failed
        for line in export_and_draw(ckpt, out):
            print(line)


def _cmd_migrate(args: argparse.Namespace) -> int:
    """Rewrite a model-hub experiment file. Without ``-o`` the new YAML goes to stdout with the changes as leading
    comments (so ``> NEW.yaml`` is a valid file); with ``-o`` the changes are listed and the file is written."""
    import yaml

    from model_hub_mmdet.experiment_schema import schema_problems
    from model_hub_mmdet.tools.migrate import legacy_entrypoint_message, legacy_warnings, migrate_file

    if args.in_place and args.out:
        raise UserError("migrate: give -o NEW.yaml or --in-place, not both")
    new, changes = migrate_file(args.experiment, args.out, in_place=args.in_place)
    written = args.out or (args.experiment if args.in_place else None)
    conf = yaml.safe_load(new)
    left = [m for m in [legacy_entrypoint_message((conf or {}).get("entrypoint"))] if m]
    left += legacy_warnings(conf or {}) + schema_problems(conf or {})
    lines = [f"changed {c}" for c in changes] or [f"{args.experiment}: nothing to migrate"]
    lines += [f"still to fix: {p}" for p in left]
    if written:
        print("\n".join(lines + [f"wrote {written}"]))
    else:
        print("\n".join(f"# {line}" for line in lines))
        print(new, end="" if new.endswith("\n") else "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="model-hub-mmdet", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    experiment_help = "experiment YAML, or an MMDetection .py config (the experiment init would write for it)"
    options_help = ("override config keys as mmdet's tools/train.py does (a.b=1 a=[1,2] a=\"(1,2)\"); applied after"
                    " override_mmdet_config")

    p = sub.add_parser("init", help="write a commented experiment YAML for an MMDetection config")
    p.add_argument("config", help="an mmdet config: a path, or a name inside mmdet (ssd/ssd300_coco.py)")
    p.add_argument("-o", "--out", help="write the YAML here (default: print it)")
    p.add_argument("--slots", type=int, help="GPUs (slots per trial; default: from the config's name, else 8)")
    p.add_argument("--data", help="read images and annotations from s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    p.add_argument("--context", help="context directory a relative config is looked up in (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite -o if it exists")
    p.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE",
                   help=options_help + "; written there, and the schedule and batch are read after them")
    p.set_defaults(func=_cmd_init)

    def experiment_command(name: str, help_: str, func: Any, context: str = "current directory") -> Any:
        """A subcommand of one experiment (or config), its context directory and --cfg-options."""
        p = sub.add_parser(name, help=help_)
        p.add_argument("experiment", help=experiment_help + ("; with --nproc N, N slots" if name == "train" else ""))
        p.add_argument("--context", help=f"context directory (default: {context})")
        p.add_argument("--cfg-options", nargs="+", metavar="KEY=VALUE", help=options_help)
        p.set_defaults(func=func)
        return p

    experiment_command("check", "validate an experiment YAML offline and summarise it", _cmd_check,
                       context="current directory, as det experiment create .")
    p = experiment_command("train", "train an experiment on this machine with Determined's Trainer", _cmd_train)
    p.add_argument("--local", action="store_true", help="run here, without a cluster (required)")
    p.add_argument("--max-batches", type=int, help="train this many batches (default: searcher.max_length)")
    p.add_argument("--validation-period", type=int, help="validate every N batches")
    p.add_argument("--test", action="store_true",
                   help="Determined's test mode: train one batch, validate one batch (det experiment create --test)")
    p.add_argument("--trial", help="module:Class of the trial (default: the experiment's entrypoint)")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun; gloo on CPU)")
    p.add_argument("--resume", help="Determined checkpoint directory to continue from")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue from the newest complete checkpoint of --out (like mmdet's --auto-resume)")
    p.add_argument("--out", help="output directory for plots, logs and exports (default: runs/NAME-TIME)")
    experiment_command("print-config", "print the final MMDetection config (secrets redacted)", _cmd_print_config)

    p = sub.add_parser("export", help="write a native mmdet checkpoint (+ config .py) from a Determined checkpoint")
    p.add_argument("checkpoint", help="checkpoint directory or UUID")
    p.add_argument("out", help="output .pth path")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("migrate", help="rewrite an experiment file of Determined's model hub for this package")
    p.add_argument("experiment", help="the old experiment YAML (never overwritten without --in-place)")
    p.add_argument("-o", "--out", help="write the new YAML here (default: print it, with the changes as comments)")
    p.add_argument("--in-place", action="store_true", help="overwrite the old file with the new YAML")
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser("make-shapes", help="write the synthetic COCO-format shapes dataset")
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=400, help="training images")
    p.add_argument("--val", type=int, default=50, help="validation images")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_shapes)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and "MODEL_HUB_MMDET_ARGV" in os.environ:  # a worker started by _torchrun
        argv = json.loads(os.environ["MODEL_HUB_MMDET_ARGV"])
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.debug:  # INFO lines from the chief only: N ranks would print each of them N times
        chief = int(os.environ.get("RANK", "0")) == 0
        logging.getLogger("model_hub_mmdet").setLevel(logging.INFO if chief else logging.WARNING)
    try:
        if args.func in _NEEDS_MMDET:
            from model_hub_mmdet import generation

            generation.setup()  # the generation's patches (checked, then applied) and storage backends
        return args.func(args)
    except UserError as err:
        if args.debug:
            raise
        from model_hub_mmdet.tools.cfg_options import as_option_message

        options = getattr(args, "cfg_options", None) or []
        keys = {str(o).partition("=")[0].strip(): None for o in options}  # as parsed: only the keys matter here
        print(f"error: {as_option_message(str(err), keys)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from model_hub_mmdet.local_ranks import in_multi_rank_run, peer_lost, report_crash, report_peer_lost

        if args.debug or not in_multi_rank_run():
            raise
        if peer_lost(err):  # another rank died: the launcher says which, in one line
            return report_peer_lost(err)
        return report_crash(err)


# Commands that run MMDetection code (check and migrate need it only for part of their work, and say so).
_NEEDS_MMDET = (_cmd_init, _cmd_print_config, _cmd_export, _cmd_train)

if __name__ == "__main__":
    sys.exit(main())
