"""The model zoo mapping, read from the metafiles bundled with the installed mmdet."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mmcv import Config

from model_hub_mmdet.errors import ConfigError, WeightsError
from model_hub_mmdet.mmdet2.config import bundled_config_dir
from model_hub_mmdet.weights import zoo

# mmdet 2.28.2's metafiles list 512 models with weights for 511 distinct configs (one config is listed twice).
ZOO_CONFIGS_MMDET_2_28_2 = 511


def _raw_entries() -> list[tuple[Path, dict]]:
    """Every model with weights in the bundled metafiles, read plainly, independent of the code under test."""
    found = []
    for metafile in sorted(bundled_config_dir().glob("*/metafile.yml")):
        doc = yaml.safe_load(metafile.read_text())
        for model in doc["Models"] if isinstance(doc, dict) else doc:
            if model.get("Weights"):
                found.append((metafile, model))
    return found


def test_index_covers_every_zoo_config():
    index = zoo.zoo_index()
    raw = _raw_entries()
    assert len(index) == ZOO_CONFIGS_MMDET_2_28_2
    # Every metafile model is in the index under its config file (by directory of the metafile + file name,
    # since a few metafiles name a directory that does not exist), with its weights URL.
    for metafile, model in raw:
        key = f"{metafile.parent.name}/{Path(model['Config']).name}"
        assert index[key].weights == model["Weights"], key
    for key, entry in index.items():
        assert (bundled_config_dir() / key).is_file(), key
        assert entry.weights.startswith(zoo.OPENMMLAB_DOWNLOAD + "/"), entry
        assert zoo.hash_in_name(entry.weights), entry.weights


def test_known_entries():
    index = zoo.zoo_index()
    assert index["faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"].weights.endswith("_20200130-047c8118.pth")
    assert index["mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py"].name == "mask_rcnn_r50_fpn_1x_coco"
    # simple_copy_paste's metafile names a "simplecopypaste/" directory; objects365's metafile is a bare list.
    assert any(k.startswith("simple_copy_paste/") for k in index)
    assert any(k.startswith("objects365/") for k in index)


@pytest.mark.parametrize("stride", [37])
def test_sample_of_configs_load_and_map_back(stride: int):
    """A spread sample of zoo configs parse with mmcv and map from their resolved file name to their own entry."""
    index = zoo.zoo_index()
    sample = sorted(index)[::stride]
    loaded = []
    for key in sample:
        try:
            cfg = Config.fromfile(str(bundled_config_dir() / key))
        except ImportError:  # custom_imports of a package not installed here (mmcls for ConvNeXt)
            continue
        assert "type" in cfg.model, key
        assert zoo.zoo_entry_for_config(cfg.filename) == index[key]
        loaded.append(key)
    assert len(loaded) >= 12, loaded


def test_config_from_a_checkout_or_copy_maps_by_path(tmp_path: Path):
    checkout = tmp_path / "mmdetection" / "configs" / "retinanet" / "retinanet_r50_fpn_1x_coco.py"
    checkout.parent.mkdir(parents=True)
    checkout.write_text("# a checkout's copy\n")
    assert zoo.zoo_entry_for_config(checkout).config == "retinanet/retinanet_r50_fpn_1x_coco.py"
    copy = tmp_path / "mine" / "retinanet_r50_fpn_1x_coco.py"
    copy.parent.mkdir()
    copy.write_text("# a copy under the user's own name\n")
    assert zoo.zoo_entry_for_config(copy).config == "retinanet/retinanet_r50_fpn_1x_coco.py"


def test_config_without_zoo_checkpoint_is_an_error(tmp_path: Path):
    base_only = bundled_config_dir() / "_base_" / "models" / "faster_rcnn_r50_fpn.py"
    with pytest.raises(ConfigError, match=r"no checkpoint in the MMDetection model zoo \(511 configs do\)"):
        zoo.zoo_entry_for_config(base_only)
    own = tmp_path / "faster_rcnn_r50_fpn_1x_mine.py"
    own.write_text("")
    with pytest.raises(ConfigError, match="closest with weights: .*faster_rcnn_r50_fpn_1x"):
        zoo.zoo_entry_for_config(own)
    with pytest.raises(ConfigError, match="pretrained_weights"):
        zoo.zoo_entry_for_config(None)


def test_extra_metafile_overrides_and_adds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    extra = tmp_path / "private.yml"
    extra.write_text(
        yaml.safe_dump(
            {
                "Models": [
                    {
                        "Name": "mirror",
                        "Config": "configs/faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py",
                        "Weights": "https://example.test/frcnn-0123abcd.pth",
                    }
                ]
            }
        )
    )
    monkeypatch.setenv(zoo.ZOO_INDEX_ENV, str(extra))
    assert zoo.zoo_index()["faster_rcnn/faster_rcnn_r50_fpn_1x_coco.py"].name == "mirror"
    monkeypatch.setenv(zoo.ZOO_INDEX_ENV, str(tmp_path / "missing.yml"))
    with pytest.raises(WeightsError, match="missing.yml does not exist"):
        zoo.zoo_index()


def test_zoo_url_rewrite_and_hash(monkeypatch: pytest.MonkeyPatch):
    url = "https://download.openmmlab.com/mmdetection/v2.0/x/x_20200130-047c8118.pth"
    assert zoo.zoo_url(url) == url
    monkeypatch.setenv(zoo.ZOO_URL_ENV, "http://127.0.0.1:1/mirror/")
    assert zoo.zoo_url(url) == "http://127.0.0.1:1/mirror/mmdetection/v2.0/x/x_20200130-047c8118.pth"
    assert zoo.zoo_url("https://example.com/a.pth") == "https://example.com/a.pth"
    assert zoo.expected_hash(url) == "047c8118"
    # Elsewhere a hex-looking suffix may be a date, not a hash.
    assert zoo.expected_hash("https://example.com/ckpt-20240101.pth") is None
    assert zoo.expected_hash("https://download.pytorch.org/models/resnet50-0676ba61.pth") == "0676ba61"


def test_backbone_names():
    assert zoo.torchvision_url("resnet50") == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert zoo.torchvision_url("ResNet50_Weights.IMAGENET1K_V2").startswith("https://download.pytorch.org/")
    with pytest.raises(WeightsError, match="did you mean resnet50"):
        zoo.torchvision_url("resnet5O")
    assert zoo.openmmlab_url("detectron2/resnet50_caffe").endswith("resnet50_msra-5891d200.pth")
    with pytest.raises(WeightsError, match="not in mmcv's open-mmlab model table"):
        zoo.openmmlab_url("no/such_model")
