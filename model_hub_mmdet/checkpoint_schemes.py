"""The checkpoint URI schemes of both generations' ``CheckpointLoader``, routed through the core's cache and safe
loader, and the generations' name tables.

``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')``, ``load_from`` and mmdet's own tools
resolve a checkpoint through the ``CheckpointLoader`` of mmcv 1.x (``mmcv.runner.checkpoint``) or of mmengine
(``mmengine.runner.checkpoint``). Their stock loaders download with ``torch.hub`` into ``~/.cache/torch`` on rank 0
behind a barrier, cannot read ``gs://``, and unpickle without limits (mmcv) or, under torch >= 2.6, with
``weights_only=True`` and no allow-list (mmengine 0.10.7, which fails on its own checkpoints' ``message_hub``).
:class:`CheckpointSchemes` puts :meth:`~CheckpointSchemes.load_from_model_hub_cache` in their place: the shared,
locked, resumable cache, and the trust rules of ``warm_start`` (downloads as plain tensors only, the user's own
files in full, with a warning when they hold more). Each generation's ``checkpoint_schemes.py`` names its module
and the prefixes it takes over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from model_hub_mmdet import generation


class CheckpointSchemes:
    """One generation's ``CheckpointLoader`` schemes and name tables.

    Args:
        prefixes: the ``CheckpointLoader`` prefixes (its scheme keys) routed through the core.
        checkpoint_module: imports the generation's ``runner.checkpoint`` module (``CheckpointLoader``, the tables).
        home: the name of that module's function giving the home of relative ``open-mmlab://`` table entries.
    """

    def __init__(self, prefixes: Iterable[str], checkpoint_module: Callable[[], ModuleType], home: str) -> None:
        self.prefixes = tuple(prefixes)
        self.module = checkpoint_module
        self.home = home
        self.loader = self.load_from_model_hub_cache  # one bound method: what is registered, compared by identity

    def load_from_model_hub_cache(self, filename: str, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        """A ``CheckpointLoader`` loader: ``filename`` through ``resolve_weights``, then the trust-aware load.
        (mmcv and mmengine log ``loader.__name__[10:]``, hence the ``load_from_`` prefix.)"""
        from model_hub_mmdet.weights.loading import load_checkpoint_file, resolve_weights

        src = resolve_weights(filename)
        checkpoint = load_checkpoint_file(src.path, src.trusted, filename, map_location=map_location)
        if filename.startswith("mmcls://"):
            checkpoint = self.module()._process_mmcls_checkpoint(checkpoint)
        return checkpoint

    def register(self) -> None:
        """Make the ``CheckpointLoader`` use :attr:`loader` for :attr:`prefixes` (idempotent);
        its other loaders (Ceph's ``open-mmlab:s3://``, ``pavi://``, ``petrel://``) stay in place."""
        loader = self.module().CheckpointLoader
        loader.register_scheme(prefixes=list(self.prefixes), loader=self.loader, force=True)

    def torchvision_models(self) -> dict[str, str]:
        """``torchvision://`` names -> URLs, as the generation builds them from the installed torchvision."""
        return self.module().get_torchvision_models()

    def external_models(self) -> dict[str, str]:
        """``open-mmlab://`` names -> URLs (or paths under :meth:`openmmlab_home`): the generation's table plus the
        user's."""
        return self.module().get_external_models()

    def deprecated_model_names(self) -> dict[str, str]:
        """Renamed ``open-mmlab://`` names -> their replacement."""
        return self.module().get_deprecated_model_names()

    def mmcls_models(self) -> dict[str, str]:
        """``mmcls://`` names -> URLs."""
        return self.module().get_mmcls_models()

    def openmmlab_home(self) -> str:
        """``$MMCV_HOME`` (2.x) or ``$MMENGINE_HOME`` (3.x): where relative ``open-mmlab://`` entries are found."""
        return getattr(self.module(), self.home)()


def installed() -> CheckpointSchemes:
    """The installed generation's :class:`CheckpointSchemes`."""
    return generation.adapter("checkpoint_schemes").SCHEMES
