"""Determined 0.38's experiment-config schema, compactly, for offline checks of experiment YAML files.

Determined's master validates an experiment against JSON Schemas (``schemas/expconf/v0/`` of the public
determined-ai/determined repository) and a few runtime checks (``master/pkg/schemas/expconf/searcher_config.go``),
but the installed ``determined`` package ships neither, so a misspelt key (``searchr:``) is only rejected when the
experiment is submitted. This module describes the same rules in a small tree of nodes, written from those files
for Determined 0.38.1, and :func:`schema_problems` reports every violation as one line naming the dotted key::

    searchr: unknown key; did you mean searcher?
    searcher.max_length.batches: must be an integer, got 'ten'

What is checked: unknown keys at every level (with the closest valid key, or where the key belongs), value types,
ranges and enums, ``searcher`` and its ``name``/``metric`` (searcher-specific fields, and the searchers 0.38
removed or changed), lengths (``{batches|records|epochs: N}``), checkpoint storage per ``type``, and hyperparameter
specs (``const``/``categorical``/``int``/``double``/``log``, with ``count`` under grid search). Free-form sections
stay free-form: ``data``, ``data_layer``, ``environment.pod_spec``, the values of ``hyperparameters`` (any nested
mapping without a ``type`` key, list or scalar) and the contents of environment-variable strings.

Values a cluster supplies (``checkpoint_storage.type``, ``environment.image``, a ``name``) are not required here,
as the master merges the cluster's defaults before it validates. Only the standard library is used (``difflib``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["schema_problems", "EXPERIMENT", "HYPERPARAMETER_TYPES"]

Problems = list[str]
Check = Callable[[Mapping, str, Problems], None]

_KIND_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "mapping": "a mapping", "list": "a list", "null": "null"}


def _kind(value: Any) -> str:
    """The YAML kind of a parsed value (bool is not an integer here, as in JSON Schema)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _join(path: str, key: Any) -> str:
    # a key with control characters (a stray "\r" in the YAML) is shown quoted: the problem stays one line
    text = str(key) if str(key).isprintable() and str(key) else repr(key)
    return f"{path}.{text}" if path else text


def _closest(word: Any, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    if not isinstance(word, str):
        return None
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _present(value: Any, kind: str, path: str, out: Problems) -> bool:
    """Whether ``value`` is to be checked further: not null (unset), and of ``kind`` (else a problem)."""
    if value is None:
        return False
    if _kind(value) != kind:
        out.append(f"{path or 'the experiment config'}: must be {_KIND_NAMES[kind]}, got {_got(value)}")
        return False
    return True


class Node:
    """A rule for one value of the config."""

    def check(self, value: Any, path: str, out: Problems) -> None:
        raise NotImplementedError

    def fields(self) -> dict[str, Node]:
        """Named children, for the index of where each key belongs."""
        return {}


class Anything(Node):
    """Free-form: any value (``kinds`` restricts the top-level kind, e.g. ``data`` must be a mapping)."""

    def __init__(self, *kinds: str) -> None:
        self.kinds = kinds

    def check(self, value: Any, path: str, out: Problems) -> None:
        if self.kinds and _kind(value) not in (*self.kinds, "null"):
            out.append(f"{path}: must be {' or '.join(_KIND_NAMES[k] for k in self.kinds)}, got {_got(value)}")


class Value(Node):
    """A scalar of one of ``kinds`` (null is always allowed: Determined reads it as "unset")."""

    def __init__(self, *kinds: str, minimum: float | None = None, maximum: float | None = None,
                 choices: Sequence[Any] | None = None, pattern: str | None = None, pattern_hint: str = "",
                 nullable: bool = True) -> None:
        self.kinds, self.minimum, self.maximum = kinds, minimum, maximum
        self.choices, self.pattern, self.pattern_hint, self.nullable = choices, pattern, pattern_hint, nullable

    def check(self, value: Any, path: str, out: Problems) -> None:
        kind = _kind(value)
        if kind == "null" and self.nullable:
            return
        if self.choices is not None:
            if value not in self.choices:
                names = ", ".join(map(str, self.choices))
                close = _closest(value, [str(c) for c in self.choices])
                hint = f"; did you mean {close}?" if close else ""
                out.append(f"{path}: must be one of {names}, got {_got(value)}{hint}")
            return
        ok = kind in self.kinds or (kind == "integer" and "number" in self.kinds)
        if not ok:
            expected = " or ".join(_KIND_NAMES[k] for k in self.kinds)
            hint = ""
            if kind == "string" and ("integer" in self.kinds or "number" in self.kinds) and _is_number(value):
                hint = " (a quoted number is a string: remove the quotes)"
            elif kind == "string" and "boolean" in self.kinds and value.lower() in ("true", "false", "yes", "no"):
                hint = " (a quoted boolean is a string: remove the quotes)"
            out.append(f"{path}: must be {expected}, got {_got(value)}{hint}")
            return
        if kind in ("integer", "number"):
            if self.minimum is not None and value < self.minimum:
                out.append(f"{path}: must be >= {self.minimum:g}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                out.append(f"{path}: must be <= {self.maximum:g}, got {value!r}")
        if kind == "string" and self.pattern and not re.search(self.pattern, value):
            out.append(f"{path}: {self.pattern_hint}, got {_got(value)}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ListOf(Node):
    """A list whose items all follow ``item``."""

    def __init__(self, item: Node) -> None:
        self.item = item

    def check(self, value: Any, path: str, out: Problems) -> None:
        if not _present(value, "list", path, out):
            return
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]", out)

    def fields(self) -> dict[str, Node]:
        return self.item.fields()


class ByKind(Node):
    """One of several shapes, chosen by the value's kind (``environment.image``: a string or a mapping)."""

    def __init__(self, message: str, **by_kind: Node) -> None:
        self.message, self.by_kind = message, by_kind

    def check(self, value: Any, path: str, out: Problems) -> None:
        if value is None:
            return
        kind = _kind(value)
        node = self.by_kind.get(kind) or (self.by_kind.get("number") if kind == "integer" else None)
        if node is None:
            out.append(f"{path}: {self.message}, got {_got(value)}")
        else:
            node.check(value, path, out)

    def fields(self) -> dict[str, Node]:
        merged: dict[str, Node] = {}
        for node in self.by_kind.values():
            merged.update(node.fields())
        return merged


class Record(Node):
    """A mapping with a closed set of keys: unknown keys are reported with the closest valid one.

    ``required`` keys must be present and not null; ``checks`` run on the whole mapping (cross-field rules);
    ``label`` names the record in messages ("the single searcher").
    """

    def __init__(self, fields: Mapping[str, Node], required: Sequence[str] = (), checks: Sequence[Check] = (),
                 label: str = "") -> None:
        self._fields, self.required, self.checks, self.label = dict(fields), tuple(required), checks, label

    def fields(self) -> dict[str, Node]:
        return self._fields

    def check(self, value: Any, path: str, out: Problems, elsewhere: Mapping[str, Sequence[str]] | None = None
              ) -> None:
        if not _present(value, "mapping", path, out):
            return
        suggested = set()
        for key, item in value.items():
            node = self._fields.get(key)
            if node is None:
                message, close = self._unknown(key, path, elsewhere or {})
                out.append(f"{_join(path, key)}: {message}")
                suggested.add(close)
            else:
                node.check(item, _join(path, key), out)
        for key in self.required:
            if value.get(key) is None and key not in suggested:  # `min: 1` already said "did you mean minval?"
                out.append(f"{_join(path, key)}: required{' by ' + self.label if self.label else ''}")
        for rule in self.checks:
            rule(value, path, out)

    def _unknown(self, key: Any, path: str, elsewhere: Mapping[str, Sequence[str]]) -> tuple[str, str | None]:
        """The message for an unknown key, and the key of this record it suggests instead (if any)."""
        where = f"unknown key{' for ' + self.label if self.label else ''}"
        if key in elsewhere:  # a field of a sibling variant (another searcher, another storage type)
            return f"{where} (it is used with {', '.join(elsewhere[key])})", None
        # A near-certain typo here first, then the same key at another level, then a looser typo here.
        close = _closest(key, list(self._fields), cutoff=0.8)
        homes = [p for p in _key_index().get(key, ()) if p != _join(path, key)]
        if not close and homes:
            return f"{where}; did you mean {' or '.join(homes[:2])}?", None
        close = close or _closest(key, list(self._fields))
        if close:
            return f"{where}; did you mean {close}?", close
        return f"{where} (valid keys: {', '.join(self._fields)})", None


class Tagged(Node):
    """A mapping whose ``tag`` key (``name``, ``type``) selects a :class:`Record` among ``variants``.

    Without the tag, ``untagged`` validates it (checkpoint storage without ``type`` takes the cluster's);
    ``removed`` maps tags Determined still parses but no longer runs to what to do instead.
    """

    def __init__(self, tag: str, variants: Mapping[str, Record], what: str, untagged: Node | None = None,
                 removed: Mapping[str, str] | None = None) -> None:
        self.tag, self.variants, self.what = tag, dict(variants), what
        self.untagged, self.removed = untagged, dict(removed or {})

    def fields(self) -> dict[str, Node]:
        merged: dict[str, Node] = {self.tag: Value("string")}
        for variant in self.variants.values():
            merged.update(variant.fields())
        return merged

    def check(self, value: Any, path: str, out: Problems) -> None:
        if not _present(value, "mapping", path, out):
            return
        tag = value.get(self.tag)
        tag_path = _join(path, self.tag)
        if tag is None:
            if self.untagged is None:
                out.append(f"{tag_path}: required (one of {', '.join(self.variants)})")
                Record(self.fields()).check(value, path, out)  # still name keys no variant knows
            else:
                self.untagged.check(value, path, out)
            return
        if tag in self.removed:
            out.append(f"{tag_path}: {self.removed[tag]}")
            return
        variant = self.variants.get(tag) if isinstance(tag, str) else None
        if variant is None:
            close = _closest(tag, list(self.variants))
            hint = f"; did you mean {close}?" if close else ""
            out.append(f"{tag_path}: {_got(tag)} is not a {self.what} (one of {', '.join(self.variants)}){hint}")
            return
        own = variant.fields()
        elsewhere = {
            key: [name for name, other in self.variants.items() if key in other.fields()]
            for key in value if key not in own and any(key in other.fields() for other in self.variants.values())
        }
        elsewhere = {key: [f"{self.tag}: {', '.join(names)}"] for key, names in elsewhere.items()}
        variant.check(value, path, out, elsewhere)


class Length(Node):
    """A training length: ``{batches: N}``, ``{records: N}`` or ``{epochs: N}`` (one unit, an integer >= minimum);
    ``allow_int`` also accepts a bare integer (``searcher.max_length`` since 0.30)."""

    UNITS = ("batches", "records", "epochs")

    def __init__(self, minimum: int = 0, allow_int: bool = False) -> None:
        self.minimum, self.allow_int = minimum, allow_int

    def fields(self) -> dict[str, Node]:
        return {unit: Value("integer") for unit in self.UNITS}

    def check(self, value: Any, path: str, out: Problems) -> None:
        kind = _kind(value)
        if kind == "null":
            return
        if kind == "integer" and self.allow_int:
            Value("integer", minimum=0).check(value, path, out)
            return
        shape = "a length: {batches: N}, {records: N} or {epochs: N}"
        if kind != "mapping":
            out.append(f"{path}: must be {shape}{' or an integer' if self.allow_int else ''}, got {_got(value)}")
            return
        unknown = [k for k in value if k not in self.UNITS]
        for key in unknown:
            close = _closest(key, self.UNITS)
            hint = f"did you mean {close}?" if close else f"a length's unit is one of {', '.join(self.UNITS)}"
            out.append(f"{_join(path, key)}: unknown unit; {hint}")
        units = [k for k in value if k in self.UNITS]
        if len(units) > 1:
            out.append(f"{path}: give one unit, not {' and '.join(units)}")
        elif not units and not unknown:
            out.append(f"{path}: must be {shape}")
        for unit in units:
            Value("integer", minimum=self.minimum, nullable=False).check(value[unit], _join(path, unit), out)


# ------------------------------------------------------------------------------------------ cross-field rules
def _ordered(low: str, high: str, strict: bool) -> Check:
    def rule(value: Mapping, path: str, out: Problems) -> None:
        a, b = value.get(low), value.get(high)
        if _kind(a) in ("integer", "number") and _kind(b) in ("integer", "number") and (a >= b if strict else a > b):
            out.append(f"{_join(path, low)}: must be {'<' if strict else '<='} {high} ({a!r} vs {b!r})")

    return rule


def _not_both(a: str, b: str) -> Check:
    def rule(value: Mapping, path: str, out: Problems) -> None:
        if value.get(a) is not None and value.get(b) is not None:
            out.append(f"{path}: give {a} or {b}, not both")

    return rule


def _needs_time_metric(name: str) -> Check:
    # Determined 0.38 runs ASHA searches only on a reported time metric (searcher_config.go, AssertCurrent).
    def rule(value: Mapping, path: str, out: Problems) -> None:
        missing = [k for k in ("max_time", "time_metric") if value.get(k) is None]
        if missing:
            out.append(
                f"{path}: the {name} searcher of Determined 0.38 needs max_time and time_metric (missing"
                f" {' and '.join(missing)}), e.g. time_metric: batches, max_time: 1800 (the trial reports"
                f" batches with every validation; max_length is deprecated)"
            )

    return rule


def _log_policy_named(value: Mapping, path: str, out: Problems) -> None:
    if value.get("name") is None and (value.get("pattern") is None or value.get("action") is None):
        out.append(f"{path}: needs a name (or, in the legacy form, both pattern and action)")


def _no_dotdot(value: Mapping, path: str, out: Problems) -> None:
    prefix = value.get("prefix")
    if isinstance(prefix, str) and ".." in prefix.split("/"):
        out.append(f"{_join(path, 'prefix')}: must not contain a '..' segment, got {prefix!r}")


def _absolute_host_path(value: Mapping, path: str, out: Problems) -> None:
    host = value.get("host_path")
    if isinstance(host, str) and not host.startswith("/"):
        out.append(f"{_join(path, 'host_path')}: must be an absolute path, got {host!r}")
    if value.get("container_path") == ".":
        out.append(f"{_join(path, 'container_path')}: must not be '.'")


# ------------------------------------------------------------------------------------------ the experiment
STRING, INT, BOOL, NUMBER = Value("string"), Value("integer"), Value("boolean"), Value("number")
COUNT = Value("integer", minimum=0)
STRINGS = ListOf(Value("string", nullable=False))

_SAVE = {"save_experiment_best": COUNT, "save_trial_best": COUNT, "save_trial_latest": COUNT}
_STORAGE = {
    "shared_fs": Record({"type": STRING, "host_path": STRING, "storage_path": STRING, "propagation": STRING,
                         "container_path": STRING, "checkpoint_path": STRING, "tensorboard_path": STRING, **_SAVE},
                        label="shared_fs checkpoint storage"),
    "directory": Record({"type": STRING, "container_path": STRING, **_SAVE}, label="directory checkpoint storage"),
    "s3": Record({"type": STRING, "bucket": STRING, "access_key": STRING, "secret_key": STRING,
                  "endpoint_url": STRING, "prefix": STRING, **_SAVE}, checks=[_no_dotdot],
                 label="s3 checkpoint storage"),
    "gcs": Record({"type": STRING, "bucket": STRING, "prefix": STRING, **_SAVE}, checks=[_no_dotdot],
                  label="gcs checkpoint storage"),
    "azure": Record({"type": STRING, "container": STRING, "connection_string": STRING, "account_url": STRING,
                     "credential": STRING, **_SAVE}, checks=[_not_both("connection_string", "credential")],
                    label="azure checkpoint storage"),
}
# Without `type` the cluster's storage is used and only the retention counts (or any storage key) may be given.
_ANY_STORAGE = Record({key: node for variant in _STORAGE.values() for key, node in variant.fields().items()})
CHECKPOINT_STORAGE = Tagged("type", _STORAGE, "checkpoint storage type", untagged=_ANY_STORAGE)

_COMMON_SEARCHER = {"name": STRING, "metric": STRING, "smaller_is_better": BOOL, "source_trial_id": INT,
                    "source_checkpoint_uuid": STRING}
_MAX_LENGTH = Length(minimum=1, allow_int=True)
_MAX_CONCURRENT = Value("integer", minimum=0)
_MODE = Value("string", choices=("aggressive", "standard", "conservative"))
_SEARCHERS = {
    "single": Record({**_COMMON_SEARCHER, "max_length": _MAX_LENGTH}, required=["metric"],
                     label="the single searcher"),
    "random": Record({**_COMMON_SEARCHER, "max_length": _MAX_LENGTH, "max_trials": Value("integer", minimum=1),
                      "max_concurrent_trials": _MAX_CONCURRENT}, required=["metric", "max_trials"],
                     label="the random searcher"),
    "grid": Record({**_COMMON_SEARCHER, "max_length": _MAX_LENGTH, "max_concurrent_trials": _MAX_CONCURRENT},
                   required=["metric"], label="the grid searcher"),
    "adaptive_asha": Record(
        {**_COMMON_SEARCHER, "max_trials": Value("integer", minimum=1), "max_time": INT, "time_metric": STRING,
         "bracket_rungs": ListOf(Value("integer", nullable=False)), "mode": _MODE, "divisor": NUMBER,
         "max_rungs": Value("integer", minimum=1), "max_concurrent_trials": _MAX_CONCURRENT,
         "max_length": _MAX_LENGTH, "stop_once": BOOL},
        required=["metric", "max_trials"], checks=[_needs_time_metric("adaptive_asha")],
        label="the adaptive_asha searcher"),
    "async_halving": Record(
        {**_COMMON_SEARCHER, "num_rungs": Value("integer", minimum=1), "max_trials": Value("integer", minimum=1),
         "max_time": INT, "time_metric": STRING, "divisor": NUMBER, "max_concurrent_trials": _MAX_CONCURRENT,
         "max_length": Length(minimum=1), "stop_once": BOOL},
        required=["metric", "num_rungs", "max_trials"], checks=[_needs_time_metric("async_halving")],
        label="the async_halving searcher"),
}
_REMOVED = "searcher was removed in Determined 0.38 (it still parses old experiments, but new ones are rejected)"
SEARCHER = Tagged(
    "name", _SEARCHERS, "searcher",
    removed={name: f"the {name!r} {_REMOVED}; use single, random, grid or adaptive_asha"
             for name in ("custom", "adaptive", "adaptive_simple", "sync_halving")},
)

_IMAGE_MAP = Record({"cpu": STRING, "cuda": STRING, "rocm": STRING, "gpu": STRING}, label="environment.image")
_VARS_MAP = Record({"cpu": STRINGS, "cuda": STRINGS, "rocm": STRINGS, "gpu": STRINGS},
                   label="environment.environment_variables")
ENVIRONMENT = Record({
    "image": ByKind("must be an image name or a mapping of cpu/cuda/rocm to image names",
                    string=Value("string"), mapping=_IMAGE_MAP),
    "environment_variables": ByKind("must be a list of NAME=VALUE strings or a mapping of cpu/cuda/rocm to such"
                                    " lists", list=STRINGS, mapping=_VARS_MAP),
    "proxy_ports": ListOf(Record({"proxy_port": Value("number", nullable=False), "proxy_tcp": BOOL,
                                  "unauthenticated": BOOL, "default_service_id": BOOL}, required=["proxy_port"])),
    "ports": ByKind("must be a mapping of names to port numbers", mapping=Anything("mapping")),
    "force_pull_image": BOOL,
    "registry_auth": Record({k: STRING for k in ("username", "password", "auth", "email", "serveraddress",
                                                 "identitytoken", "registrytoken")}),
    "add_capabilities": STRINGS,
    "drop_capabilities": STRINGS,
    "pod_spec": Anything("mapping"),  # a Kubernetes pod spec: Kubernetes validates it
})

_DEVICE = ByKind("must be a host:container[:mode] string or a mapping with host_path and container_path",
                 string=Value("string", pattern=r"^/[^:]*:/[^:]*(:[rwm]*)?$",
                              pattern_hint="must look like /dev/x:/dev/x[:rwm]"),
                 mapping=Record({"host_path": Value("string", nullable=False),
                                 "container_path": Value("string", nullable=False), "mode": STRING},
                                required=["host_path", "container_path"]))
RESOURCES = Record({
    "slots_per_trial": Value("integer", minimum=0), "max_slots": INT, "slots": INT,
    "weight": NUMBER, "priority": Value("integer", minimum=1, maximum=99), "resource_pool": STRING,
    "agent_label": STRING, "native_parallel": BOOL, "is_single_node": BOOL,
    "shm_size": ByKind("must be a size in bytes or a string such as 4GB", integer=Value("integer"),
                       string=Value("string", pattern=r"^([0-9]*[.])?[0-9]+ ?(([kmgtpKMGTP]([iI]?[bB])?)|[bB])?$",
                                    pattern_hint="must be a memory size such as 4GB or 512MiB")),
    "devices": ListOf(_DEVICE),
})

OPTIMIZATIONS = Record({
    "aggregation_frequency": Value("integer", minimum=1), "average_aggregated_gradients": BOOL,
    "average_training_metrics": BOOL, "gradient_compression": BOOL, "auto_tune_tensor_fusion": BOOL,
    "tensor_fusion_threshold": Value("integer", minimum=0), "tensor_fusion_cycle_time": Value("integer", minimum=0),
    "grad_updates_size_file": STRING, "mixed_precision": Value("string", choices=("O0", "O1", "O2", "O3")),
})

PROFILING = Record({"enabled": BOOL, "begin_on_batch": Value("integer", minimum=0),
                    "end_after_batch": Value("integer", minimum=0), "sync_timings": BOOL},
                   checks=[_ordered("begin_on_batch", "end_after_batch", strict=False)])

BIND_MOUNT = Record({"host_path": Value("string", nullable=False), "container_path": Value("string", nullable=False),
                     "read_only": BOOL, "propagation": STRING},
                    required=["host_path", "container_path"], checks=[_absolute_host_path])

_LOG_ACTION = ByKind(
    "must be cancel_retries or exclude_node",
    string=Value("string", choices=("cancel_retries", "exclude_node")),
    mapping=Record({"type": Value("string", choices=("cancel_retries", "exclude_node"), nullable=False)},
                   required=["type"]),
)
LOG_POLICIES = ListOf(Record({"name": STRING, "pattern": STRING, "action": _LOG_ACTION},
                             checks=[_log_policy_named]))

INTEGRATIONS = Record({
    "pachyderm": Record({
        "pachd": Record({"host": STRING, "port": INT}, required=["host", "port"]),
        "proxy": Record({"scheme": STRING, "host": STRING, "port": INT}, required=["scheme", "host", "port"]),
        "dataset": Record({k: STRING for k in ("project", "repo", "commit", "branch", "token")},
                          required=["project", "repo", "commit", "branch", "token"]),
    }, required=["pachd", "proxy", "dataset"]),
    "webhooks": Record({"webhook_id": ListOf(Value("integer", nullable=False)), "webhook_name": STRINGS,
                        "exclude": BOOL}),
})


# ---------------------------------------------------------------------------------------- hyperparameters
HYPERPARAMETER_TYPES = ("const", "categorical", "int", "double", "log")
_HP_SPECS = {
    "const": Record({"type": STRING, "val": Anything()}, required=["val"], label="a const hyperparameter"),
    "categorical": Record({"type": STRING, "vals": ListOf(Anything())}, required=["vals"],
                          label="a categorical hyperparameter"),
    "int": Record({"type": STRING, "minval": Value("integer"), "maxval": Value("integer"),
                   "count": Value("integer", minimum=1)}, required=["minval", "maxval"],
                  checks=[_ordered("minval", "maxval", strict=True)], label="an int hyperparameter"),
    "double": Record({"type": STRING, "minval": NUMBER, "maxval": NUMBER, "count": Value("integer", minimum=1)},
                     required=["minval", "maxval"], checks=[_ordered("minval", "maxval", strict=True)],
                     label="a double hyperparameter"),
    "log": Record({"type": STRING, "minval": NUMBER, "maxval": NUMBER, "base": NUMBER,
                   "count": Value("integer", minimum=1)}, required=["minval", "maxval", "base"],
                  checks=[_ordered("minval", "maxval", strict=True)], label="a log hyperparameter"),
}


class Hyperparameters(Node):
    """``hyperparameters``: names to values. A mapping with a ``type`` key is a search spec and is checked; any
    other mapping is a nested group (its keys are the user's); lists and scalars are constants. Under grid search
    every int/double/log spec needs a ``count``."""

    def check(self, value: Any, path: str, out: Problems, grid: bool = False) -> None:
        if value is None:
            return
        if _kind(value) != "mapping":
            out.append(f"{path}: must be a mapping of names to values or specs, got {_got(value)}")
            return
        for key, item in value.items():
            self._one(item, _join(path, key), out, grid)

    def _one(self, value: Any, path: str, out: Problems, grid: bool) -> None:
        if _kind(value) != "mapping":
            return  # a constant: anything goes
        if "type" not in value:
            for key, item in value.items():
                self._one(item, _join(path, key), out, grid)
            return
        kind = value["type"]
        spec = _HP_SPECS.get(kind) if isinstance(kind, str) else None
        if spec is None:
            close = _closest(kind, HYPERPARAMETER_TYPES, cutoff=0.75)
            if close:
                out.append(f"{_join(path, 'type')}: {_got(kind)} is not a hyperparameter type; did you mean {close}?")
                return
            leaf = path.rsplit(".", 1)[-1]
            out.append(
                f"{path}: a mapping with type: {_got(kind)} is read by Determined as a hyperparameter spec, and"
                f" {_got(kind)} is not one of {', '.join(HYPERPARAMETER_TYPES)}; write an mmdet dict with dotted keys"
                f" ({leaf}.type: {kind}) or as {{type: const, val: {{...}}}}"
            )
            return
        spec.check(value, path, out)
        if grid and kind in ("int", "double", "log") and value.get("count") is None:
            out.append(f"{_join(path, 'count')}: required by grid search for a {kind} hyperparameter")


HYPERPARAMETERS = Hyperparameters()


class Experiment(Record):
    """The whole experiment config; ``searcher`` is required, and grid search asks hyperparameters for counts."""

    def check(self, value: Any, path: str = "", out: Problems | None = None,
              elsewhere: Mapping[str, Sequence[str]] | None = None) -> None:
        assert out is not None
        if _kind(value) != "mapping":
            out.append(f"the experiment config must be a mapping, got {_got(value)}")
            return
        hparams = value.get("hyperparameters")
        rest = {k: v for k, v in value.items() if k != "hyperparameters"}
        super().check(rest, path, out)
        searcher = value.get("searcher")
        grid = isinstance(searcher, Mapping) and searcher.get("name") == "grid"
        if "hyperparameters" in value:
            HYPERPARAMETERS.check(hparams, "hyperparameters", out, grid=grid)
        if value.get("searcher") is None:
            out.append(
                "searcher: required; e.g. searcher: {name: single, metric: bbox_mAP, smaller_is_better: false,"
                " max_length: {batches: 1000}}"
            )

    def fields(self) -> dict[str, Node]:
        return self._fields


EXPERIMENT = Experiment({
    "name": STRING,
    "description": STRING,
    "labels": STRINGS,
    "entrypoint": ByKind("must be a command string or a list of strings", string=Value("string"), list=STRINGS),
    "hyperparameters": HYPERPARAMETERS,
    "searcher": SEARCHER,
    "resources": RESOURCES,
    "min_validation_period": Length(),
    "min_checkpoint_period": Length(),
    "checkpoint_storage": CHECKPOINT_STORAGE,
    "checkpoint_policy": Value("string", choices=("best", "all", "none")),
    "max_restarts": Value("integer", minimum=0),
    "records_per_epoch": Value("integer", minimum=0),
    "scheduling_unit": Value("integer", minimum=1),
    "perform_initial_validation": BOOL,
    "optimizations": OPTIMIZATIONS,
    "profiling": PROFILING,
    "reproducibility": Record({"experiment_seed": Value("integer", minimum=0)}),
    "environment": ENVIRONMENT,
    "bind_mounts": ListOf(BIND_MOUNT),
    "data": Anything("mapping"),
    "data_layer": Anything("mapping"),  # removed in 0.19.10; Determined ignores it
    "debug": BOOL,
    "workspace": STRING,
    "project": STRING,
    "log_policies": LOG_POLICIES,
    "integrations": INTEGRATIONS,
    "retention_policy": Record({"log_retention_days": Value("integer", minimum=-1, maximum=32767)}),
    "preemption_timeout": INT,
    "security": Record({"kerberos": Record({"config_file": Value("string", nullable=False)},
                                           required=["config_file"])}),
    "slurm": Record({"slots_per_node": Value("integer", minimum=1), "gpu_type": STRING, "sbatch_args": STRINGS}),
    "pbs": Record({"slots_per_node": Value("integer", minimum=1), "pbsbatch_args": STRINGS}),
    "tensorboard_storage": Anything("mapping"),  # deprecated; Determined ignores it
    "internal": Value("null"),
}, label="")


_INDEX: dict[str, list[str]] | None = None


def _key_index() -> dict[str, list[str]]:
    """Every key of the schema with the dotted paths it lives at (``slots_per_trial`` -> resources.slots_per_trial),
    to say where a key that is unknown at one level belongs."""
    global _INDEX
    if _INDEX is None:
        index: dict[str, list[str]] = {}

        def walk(node: Node, path: str, depth: int) -> None:
            for key, child in node.fields().items():
                full = _join(path, key)
                if full not in index.setdefault(key, []):
                    index[key].append(full)
                if depth < 3:
                    walk(child, full, depth + 1)

        walk(EXPERIMENT, "", 0)
        _INDEX = index
    return _INDEX


def schema_problems(conf: Mapping) -> list[str]:
    """Every way ``conf`` (a parsed experiment YAML) breaks Determined 0.38's experiment schema, one line each,
    starting with the dotted key (``searchr: unknown key; did you mean searcher?``). Empty when it conforms."""
    out: Problems = []
    EXPERIMENT.check(conf, "", out)
    return out
