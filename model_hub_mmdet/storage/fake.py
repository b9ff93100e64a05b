"""``backend: fake``: train on real annotation files without any image files.

Every image read returns one image, so a detector trains on the real boxes, masks and classes of a dataset (COCO's
annotation files, say) while reading no image data at all::

    data:
      file_client_args:
        backend: fake
        fake_img_path: /data/one.jpg     # optional; default: a 640x480 JPEG of shapes the package draws itself

This measures how fast the model trains when the data costs nothing but one JPEG decode per sample, which tells a
slow input pipeline from a slow model; Determined's model hub used it the same way. Losses and metrics mean
nothing: it is for throughput and smoke tests only.

**Sizes.** MMDetection builds masks at the size the annotation file gives for each image and pads them to the
loaded image, so an image of another size breaks Mask R-CNN's ``Pad``. The backend therefore reads the image
sizes of every COCO-style annotation file the datasets open through it (``images`` records with ``file_name``,
``width``, ``height``) and returns the image resized to the size of the requested file (looked up by the path's
tail, then by its stem, which also finds a panoptic PNG's image). Unknown paths get the image as it is. Resized
copies are cached per size.

Only images are faked: a path whose extension is an image format's (``.jpg``, ``.png``, ...). Everything else
(``.json``, ``.pkl``, ``.txt`` annotation and proposal files, read with ``get_local_path``, ``get`` or
``get_text``) comes from local disk at the configured path, as with the ``disk`` backend. Segmentation maps are
images too (``LoadPanopticAnnotations``, ``LoadAnnotations(with_seg=True)``): give those steps their own
``file_client_args: {backend: disk}`` to read real ones.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from model_hub_mmdet.errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"})
STOCK_SIZE = (640, 480)  # width, height: COCO's most common image size

# (width, height) of the images named by the annotation files read in this process: by file_name (a path tail)
# and by stem. Shared by every fake backend (a dataset and its pipeline steps make separate ones) and carried
# to spawned data-loader workers inside the pickled backends.
_SIZES: dict[str, tuple[int, int]] = {}
_STEM_SIZES: dict[str, tuple[int, int]] = {}

_FILE_NAME = re.compile(rb'"file_name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_DIMENSION = re.compile(rb'"(width|height)"\s*:\s*(\d+)')


def is_image_path(filepath: str | os.PathLike) -> bool:
    """Whether ``filepath`` names an image (by its extension), i.e. what the fake backend replaces."""
    return Path(str(filepath)).suffix.lower() in IMAGE_SUFFIXES


@functools.lru_cache(maxsize=1)
def stock_image() -> bytes:
    """The package's own fake image: a deterministic 640x480 JPEG of coloured shapes on a gradient, drawn here
    (nothing is downloaded or shipped as a file). Built once per process."""
    import cv2
    import numpy as np

    width, height = STOCK_SIZE
    ys, xs = np.mgrid[0:height, 0:width]
    img = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 255 // (width + height)], axis=-1)
    img = img.astype(np.uint8)
    cv2.rectangle(img, (60, 80), (260, 300), (40, 40, 220), thickness=-1)
    cv2.circle(img, (420, 160), 90, (40, 200, 40), thickness=-1)
    cv2.ellipse(img, (470, 370), (120, 60), 20, 0, 360, (220, 120, 30), thickness=-1)
    cv2.fillPoly(img, [np.array([[120, 440], [300, 330], [330, 460]], dtype=np.int32)], (200, 40, 200))
    return _encode(img)


def _encode(img: Any) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise DataError("the fake backend could not encode its image (cv2.imencode failed)")
    return encoded.tobytes()


@functools.lru_cache(maxsize=2)
def _decoded(data: bytes) -> Any:
    import cv2
    import numpy as np

    # What mmcv's and mmengine's ``imfrombytes`` do with their defaults (cv2 backend, colour, BGR).
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@functools.lru_cache(maxsize=256)
def resized(data: bytes, size: tuple[int, int]) -> bytes:
    """``data`` (an encoded image) resized to ``size`` = (width, height), as JPEG; ``data`` itself if it has
    that size already."""
    import cv2

    img = _decoded(data)
    if (img.shape[1], img.shape[0]) == tuple(size):
        return data
    return _encode(cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA))


def image_sizes(text: bytes) -> dict[str, tuple[int, int]]:
    """``file_name -> (width, height)`` of the image records in a COCO-style annotation file.

    Found by scanning for ``"file_name"`` and reading ``width``/``height`` from the same flat record, without
    building the whole JSON (COCO's train file is 450 MB); records without both (a panoptic annotation's
    ``file_name``) are skipped."""
    sizes = {}
    for match in _FILE_NAME.finditer(text):
        start, end = text.rfind(b"{", 0, match.start()), text.find(b"}", match.end())
        if start < 0 or end < 0:
            continue
        dims = {key: int(value) for key, value in _DIMENSION.findall(text[start:end])}
        if dims.get(b"width", 0) > 0 and dims.get(b"height", 0) > 0:
            try:
                name = json.loads(b'"' + match.group(1) + b'"')
            except ValueError:
                continue
            sizes[name] = (dims[b"width"], dims[b"height"])
    return sizes


def learn_sizes(text: bytes) -> int:
    """Remember the image sizes of an annotation file's text (see :func:`image_sizes`); returns how many."""
    sizes = image_sizes(text)
    _SIZES.update(sizes)
    _STEM_SIZES.update((PurePosixPath(name).stem, size) for name, size in sizes.items())
    return len(sizes)


def size_of(filepath: str | os.PathLike) -> tuple[int, int] | None:
    """The annotated (width, height) of the image at ``filepath``: the longest tail of the path that an
    annotation file named (``img_prefix`` + ``file_name``), else its stem; None if no annotation file did."""
    if not _SIZES:
        return None
    parts = str(filepath).replace("\\", "/").split("/")
    for i in range(len(parts)):
        size = _SIZES.get("/".join(parts[i:]))
        if size is not None:
            return size
    return _STEM_SIZES.get(PurePosixPath(parts[-1]).stem)


class FakeBackend:
    """A storage backend (registered with the installed generation's file I/O) that answers every image read
    with one image (at the annotated size) and reads
    other files from disk.

    Args:
        fake_img_path: a local image file to serve for every image (read once, when the backend is created);
            default: :func:`stock_image`.
    """

    def __init__(self, fake_img_path: str | os.PathLike | None = None, **unknown: object) -> None:
        if unknown:
            raise ConfigError(
                f"data.file_client_args: unknown key(s) {', '.join(sorted(unknown))} for the fake backend;"
                " known keys: backend, fake_img_path"
            )
        self.fake_img_path = None if fake_img_path is None else str(fake_img_path)
        self.data = stock_image() if fake_img_path is None else _read_image(str(fake_img_path))

    def get(self, filepath: str | os.PathLike) -> bytes:
        """The fake image for an image path (resized to its annotated size); the file from disk otherwise."""
        if is_image_path(filepath):
            size = size_of(filepath)
            return self.data if size is None else resized(self.data, size)
        data = Path(filepath).read_bytes()
        if str(filepath).endswith(".json"):
            learn_sizes(data)
        return data

    def get_text(self, filepath: str | os.PathLike, encoding: str = "utf-8") -> str:
        text = Path(filepath).read_text(encoding=encoding)
        if str(filepath).endswith(".json"):
            learn_sizes(text.encode(encoding))
        return text

    @contextlib.contextmanager
    def get_local_path(self, filepath: str | os.PathLike) -> Iterator[str]:
        """The path itself (files are local); an annotation file's image sizes are learnt once the caller (a
        dataset loading its ``ann_file``) is done with it."""
        yield str(filepath)
        if str(filepath).endswith(".json") and os.path.isfile(filepath):
            learn_sizes(Path(filepath).read_bytes())

    def exists(self, filepath: str | os.PathLike) -> bool:
        """Images always exist here (there are none on disk); other paths are looked up on disk."""
        return True if is_image_path(filepath) else os.path.exists(filepath)

    def isfile(self, filepath: str | os.PathLike) -> bool:
        return True if is_image_path(filepath) else os.path.isfile(filepath)

    def isdir(self, filepath: str | os.PathLike) -> bool:
        return os.path.isdir(filepath)

    def join_path(self, filepath: str | os.PathLike, *filepaths: str | os.PathLike) -> str:
        return os.path.join(filepath, *filepaths)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def allow_symlink(self) -> bool:
        return True

    def __getstate__(self) -> dict:
        # A spawned data-loader worker starts with empty size tables: the pickled backend brings them along.
        return {**self.__dict__, "_sizes": (dict(_SIZES), dict(_STEM_SIZES))}

    def __setstate__(self, state: dict) -> None:
        sizes, stems = state.pop("_sizes")
        _SIZES.update(sizes)
        _STEM_SIZES.update(stems)
        self.__dict__.update(state)


def _read_image(path: str) -> bytes:
    """The bytes of ``path``, checked to decode as an image (a wrong path fails now, not in a loader worker)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(
            f"data.file_client_args.fake_img_path: cannot read {path} ({err.strerror or err}); give an image file"
            " or leave fake_img_path out to use the built-in image"
        ) from err
    try:
        img = _decoded(data)
    except Exception as err:  # cv2/PIL raise several types for undecodable data
        raise DataError(f"data.file_client_args.fake_img_path: {path} is not a readable image ({err})") from err
    if img is None:
        raise DataError(f"data.file_client_args.fake_img_path: {path} is not a readable image")
    return data
