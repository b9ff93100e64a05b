"""Secrets out of everything written for people: configs, checkpoints' load data, logs."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

SECRET_KEY = re.compile(r"secret|token|passw|credential|private_key|aws_access_key_id|access_key", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with the value of every key that looks like a secret replaced by ``<redacted>``."""
    if isinstance(obj, Mapping):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v is not None else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return copy.deepcopy(obj)
