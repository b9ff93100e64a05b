"""Export to native mmdet checkpoints: hand-made checkpoint dirs (fast) and the train -> export -> init_detector
round trip through MMDetTrial (slow)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from weights_helpers import build_tiny, tiny_detector_cfg

from model_hub_mmdet.errors import WeightsError
from model_hub_mmdet.mmdet2.export import config_path_for
from model_hub_mmdet.weights import export_checkpoint, warm_start

CLASSES = ["rectangle", "ellipse", "triangle"]


def _trial_checkpoint(ckpt_dir: Path, ddp: bool = True, meta: bool = True) -> dict[str, torch.Tensor]:
    """A checkpoint dir in the format MMDetTrial writes (Determined's state_dict.pth + mmdet_meta + config)."""
    cfg = tiny_detector_cfg(num_classes=3)
    model = build_tiny(cfg, seed=3)
    state = model.state_dict()
    prefix = "module." if ddp else ""
    payload = {
        "models_state_dict": [{prefix + k: v for k, v in state.items()}],
        "optimizers_state_dict": [{}],
        "callbacks": {},
        "rng_state": {"np_rng_state": np.random.get_state()},
    }
    if meta:
        payload["mmdet_meta"] = {"config": cfg.pretty_text, "CLASSES": CLASSES, "mmdet_version": "2.28.2"}
    ckpt_dir.mkdir(parents=True)
    torch.save(payload, ckpt_dir / "state_dict.pth")
    (ckpt_dir / "mmdet_config.py").write_text(cfg.pretty_text)
    return state


def test_export_writes_a_native_checkpoint_and_config(tmp_path: Path):
    state = _trial_checkpoint(tmp_path / "ckpt")
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "out" / "model.pth")

    native = torch.load(out, map_location="cpu", weights_only=True)  # plain data only: loads with the safe loader
    assert set(native) == {"meta", "state_dict"}
    assert native["meta"]["CLASSES"] == tuple(CLASSES)
    assert native["meta"]["mmdet_version"] == "2.28.2" and native["meta"]["mmcv_version"]
    assert native["state_dict"].keys() == state.keys()  # no "module." prefixes
    assert all(torch.equal(native["state_dict"][k], v) for k, v in state.items())
    assert config_path_for(out) == tmp_path / "out" / "model.py"
    assert config_path_for(out).read_text() == native["meta"]["config"]
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_export_by_uuid_from_local_determined_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DET_MASTER", raising=False)
    ckpt_uuid = str(uuid.uuid4())
    _trial_checkpoint(tmp_path / "xdg" / "determined" / ckpt_uuid)
    assert export_checkpoint(ckpt_uuid, tmp_path / "m.pth").is_file()
    with pytest.raises(WeightsError, match=r"is not in .*xdg/determined; set DET_MASTER"):
        export_checkpoint(str(uuid.uuid4()), tmp_path / "n.pth")
    with pytest.raises(WeightsError, match="neither a checkpoint directory nor a checkpoint UUID"):
        export_checkpoint(tmp_path / "nowhere", tmp_path / "n.pth")


def test_export_by_uuid_through_an_unreachable_master_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from helpers import free_port

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no stored det CLI login
    master = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the real SDK call fails to connect
    monkeypatch.setenv("DET_MASTER", master)
    with pytest.raises(WeightsError, match=f"from DET_MASTER={master}: .*det user login"):
        export_checkpoint(str(uuid.uuid4()), tmp_path / "m.pth")


def test_export_needs_mmdet_metadata(tmp_path: Path):
    _trial_checkpoint(tmp_path / "ckpt", meta=False)
    (tmp_path / "ckpt" / "mmdet_config.py").unlink()
    with pytest.raises(WeightsError, match="was it written by MMDetTrial"):
        export_checkpoint(tmp_path / "ckpt", tmp_path / "m.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="has no state_dict.pth"):
        export_checkpoint(tmp_path / "empty", tmp_path / "m.pth")


def test_exported_checkpoint_seeds_a_warm_start(tmp_path: Path):
    state = _trial_checkpoint(tmp_path / "ckpt", ddp=False)
    out = export_checkpoint(tmp_path / "ckpt", tmp_path / "model.pth")
    cfg = tiny_detector_cfg(num_classes=3)
    cfg.load_from = str(out)
    model = build_tiny(cfg, seed=0)
    report = warm_start(model, cfg, {})
    assert (report["matched"], report["missing"], report["unexpected"], report["mismatched"]) == (len(state), 0, 0, 0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


# Runs in a fresh interpreter that imports only mmdet, as a user's inference or deployment script would.
_INFER = """
import json, sys
from mmdet.apis import inference_detector, init_detector
model = init_detector(sys.argv[1], sys.argv[2], device="cpu")
out = {"CLASSES": list(model.CLASSES), "results": []}
for image in sys.argv[3:]:
    out["results"].append([boxes.tolist() for boxes in inference_detector(model, image)])
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_train_export_init_detector_round_trip(shapes_dir: Path, det_local: Path, tmp_path: Path, caplog):
    from helpers import tiny_experiment

    from model_hub_mmdet.local import train_local
    from model_hub_mmdet.mmdet2.trial import MMDetTrial

    seen: list[list] = []

    class Recording(MMDetTrial):
        """MMDetTrial that keeps the detections its own evaluation scored."""

        def evaluate(self, results):
            seen.append(list(results))
            return super().evaluate(results)

    result = train_local(tiny_experiment(shapes_dir, model="faster_rcnn", max_batches=4), trial_cls=Recording)
    (trial_results,) = seen
    ckpt = Path(result.checkpoints[-1])
    out = export_checkpoint(ckpt.name, tmp_path / "export" / "faster_rcnn_tiny.pth")  # by UUID, as the CLI does

    val = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    images = [str(shapes_dir / "val" / im["file_name"]) for im in sorted(val["images"], key=lambda i: i["id"])]
    proc = subprocess.run(
        [sys.executable, "-c", _INFER, str(config_path_for(out)), str(out), *images],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    native = json.loads(proc.stdout.split("RESULT", 1)[1])

    assert native["CLASSES"] == CLASSES
    assert len(native["results"]) == len(trial_results) == len(images)
    total, worst = 0, 0.0
    for theirs, ours in zip(native["results"], trial_results):
        assert len(theirs) == len(ours) == len(CLASSES)
        for boxes, expected in zip(theirs, ours):
            boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            np.testing.assert_allclose(boxes, expected, rtol=1e-4, atol=1e-3)
            total += len(boxes)
            worst = max(worst, float(np.abs(boxes - expected).max(initial=0.0)))
    assert total > 0  # compared real detections, not two empty lists
    print(f"round trip: {total} detections on {len(images)} images match, max |difference| {worst:.2e}")

    # Import: the exported native checkpoint seeds a new experiment through load_from.
    caplog.set_level(logging.INFO, logger="model_hub_mmdet")
    seeded = tiny_experiment(shapes_dir, model="faster_rcnn", max_batches=1, overrides={"load_from": str(out)})
    train_local(seeded)
    n = len(torch.load(out, weights_only=True)["state_dict"])
    assert f"loaded {n} of the model's {n} tensors" in caplog.text
