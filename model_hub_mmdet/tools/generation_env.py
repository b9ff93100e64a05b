"""Which MMDetection generation ``startup-hook.sh`` installs for an experiment, read from its experiment file.

On a cluster the task image gets this package and one MMDetection generation from ``startup-hook.sh``, which
installs generation 2 unless ``MODEL_HUB_MMDET_GENERATION=3`` is among the experiment's
``environment.environment_variables`` (Determined sets them before it runs the hook). So the experiment file,
not the machine it was written on, decides the generation: ``init`` writes the variable for a 3.x config, and
``check`` refuses an experiment whose config is of the other generation than the hook would install.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VARIABLE = "MODEL_HUB_MMDET_GENERATION"
DEFAULT = "2"  # startup-hook.sh's default
HOOK = "startup-hook.sh"


def setting(generation: str) -> str:
    """The ``environment_variables`` entry that makes ``startup-hook.sh`` install ``generation``."""
    return f"{VARIABLE}={generation}"


def _variables(conf: Mapping[str, Any]) -> list[Any]:
    """The variables a task of this experiment gets: the list form, or the mapping form's list for the kind of
    slot it runs on (``cuda``/``gpu`` with slots, ``cpu`` with ``slots_per_trial: 0``)."""
    environment = conf.get("environment")
    variables = environment.get("environment_variables") if isinstance(environment, Mapping) else None
    if isinstance(variables, Mapping):
        resources = conf.get("resources")
        slots = resources.get("slots_per_trial", 1) if isinstance(resources, Mapping) else 1
        kinds = ("cpu",) if slots == 0 else ("cuda", "gpu")
        variables = [v for kind in kinds for v in (variables.get(kind) or [])]
    return list(variables) if isinstance(variables, list) else []


def hook_generation(conf: Mapping[str, Any]) -> str | None:
    """The ``MODEL_HUB_MMDET_GENERATION`` value a task of this experiment gets (the last one set wins, as in a
    shell), or None when the experiment does not set it (the hook then installs :data:`DEFAULT`)."""
    value = None
    for entry in _variables(conf):
        if isinstance(entry, str) and entry.partition("=")[0].strip() == VARIABLE:
            value = entry.partition("=")[2].strip()
    return value


def hook_installs_generations(context_dir: str | os.PathLike) -> bool:
    """Whether the context directory has a ``startup-hook.sh`` that picks the generation by :data:`VARIABLE`
    (without one, Determined installs nothing and the image decides)."""
    hook = Path(context_dir) / HOOK
    try:
        return VARIABLE in hook.read_text(errors="replace")
    except OSError:
        return False


def generation_problems(conf: Mapping[str, Any], config_generation: str, context_dir: str | os.PathLike) -> list[str]:
    """One line when ``startup-hook.sh`` would install another generation than the config's ("2" or "3")."""
    if not hook_installs_generations(context_dir):
        return []
    value = hook_generation(conf)
    installs = DEFAULT if value is None else value
    if installs not in ("2", "3"):
        return [f"environment.environment_variables: {setting(value)}: {HOOK} installs MMDetection 2 or 3; set "
                f"{setting(config_generation)} for this MMDetection {config_generation}.x config"]
    if installs == config_generation:
        return []
    why = f"{VARIABLE} is not set" if value is None else f"it sets {setting(value)}"
    if value is None:
        fix = (f"add the line `environment: {{environment_variables: [{setting(config_generation)}]}}` (or that "
               "entry to the environment_variables you have)")
    else:
        fix = f"replace {setting(value)} with {setting(config_generation)} in environment.environment_variables"
    return [f"environment.environment_variables: {HOOK} would install MMDetection {installs}.x on the cluster "
            f"({why}) but the config is an MMDetection {config_generation}.x config: {fix}"]
