"""Helpers of the weights tests: a real HTTP file server on 127.0.0.1 and tiny real mmdet detectors."""

from __future__ import annotations

import hashlib
import io
import socket
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from model_hub_mmdet.mmdet2.config import bundled_config_dir

FASTER_RCNN = "faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"


@dataclass
class Served:
    """One file on the test server, and how the server misbehaves when sending it."""

    body: bytes
    drop_after: int | None = None  # close the first response's connection after this many body bytes
    delay_s: float = 0.0  # pause between 64 KiB blocks, so concurrent clients overlap
    fail_first: int = 0  # answer this many requests with 503 first


@dataclass
class FileServer:
    """A real HTTP/1.1 server with ``Range`` support; ``requests`` logs (path, Range header) of every GET."""

    port: int
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, path: str, body: bytes, **kwargs) -> str:
        self.files[path] = Served(body, **kwargs)
        return self.base + path

    def gets(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


def file_handler(server: FileServer):
    """The request handler class of a :class:`FileServer`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            served = server.files.get(self.path)
            rng = self.headers.get("Range")
            server.requests.append((self.path, rng))
            if served is None:
                self.send_error(404)
                return
            if served.fail_first:
                served.fail_first -= 1
                self.send_error(503)
                return
            body, start = served.body, 0
            if rng and rng.startswith("bytes="):
                start = int(rng[len("bytes=") :].split("-")[0])
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if served.drop_after is not None:
                self.wfile.write(payload[: served.drop_after])
                self.wfile.flush()
                served.drop_after = None  # only the first response is cut
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            for i in range(0, len(payload), 1 << 16):
                self.wfile.write(payload[i : i + (1 << 16)])
                if served.delay_s:
                    time.sleep(served.delay_s)

    return Handler


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_detector_cfg(num_classes: int = 3, img_size: int = 64):
    """The bundled Faster R-CNN R50-FPN config shrunk to a ResNet-18 of 16 base channels (under 1 M parameters),
    no pretrained backbone, small test images: a real mmdet detector that builds and runs in well under a second."""
    from mmcv import Config

    cfg = Config.fromfile(str(bundled_config_dir() / FASTER_RCNN))
    width = 32
    cfg.merge_from_dict(
        {
            "model.backbone.depth": 18,
            "model.backbone.base_channels": 16,
            "model.backbone.init_cfg": None,
            "model.neck.in_channels": [16, 32, 64, 128],
            "model.neck.out_channels": width,
            "model.rpn_head.in_channels": width,
            "model.rpn_head.feat_channels": width,
            "model.roi_head.bbox_roi_extractor.out_channels": width,
            "model.roi_head.bbox_head.in_channels": width,
            "model.roi_head.bbox_head.fc_out_channels": 64,
            "model.roi_head.bbox_head.num_classes": num_classes,
        }
    )
    for split in ("val", "test"):
        cfg.data[split].pipeline[1].img_scale = (img_size, img_size)
    return cfg


def build_tiny(cfg, seed: int = 0):
    """Build and initialise the detector of ``cfg`` (deterministically: same seed, same weights)."""
    import torch
    from mmdet.models import build_detector

    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    return model


def mmdet_checkpoint_bytes(model, classes: tuple[str, ...]) -> bytes:
    """``model`` saved the way mmdet's runner saves checkpoints (``mmcv.runner.save_checkpoint``), as bytes."""
    import tempfile

    from mmcv.runner import save_checkpoint

    model.CLASSES = classes
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pth"
        save_checkpoint(model, str(path), meta={"config": "# tiny"})
        return path.read_bytes()


def zoo_style_path(name: str, body: bytes) -> str:
    """A path shaped like a model zoo file's, with the body's real sha256 prefix in its name."""
    return f"/mmdetection/v2.0/tiny/{name}/{name}_20990101_000000-{sha256(body)[:8]}.pth"


def buffer_of(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()
