"""Rule 6: the final config dumps to an MMDetection ``.py`` that loads back, with secrets redacted."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cfgtest_utils import FASTER_RCNN, MASK_RCNN
from mmcv import Config

from model_hub_mmdet.mmdet2.config import build_mmdet_config, config_text, dump_config, redact
from model_hub_mmdet.mmdet2.config.dump import REDACTED

SECRETS = {
    "backend": "s3",
    "bucket_name": "my-bucket",
    "aws_access_key_id": "AKIAEXAMPLE1",
    "aws_secret_access_key": "SECRETVALUE2",
    "aws_session_token": "TOKENVALUE3",
    "proxy_password": "PASSWORDVALUE4",
    "endpoint_url": "http://127.0.0.1:9000",
}


def _final(tmp_path: Path, config_file: str = FASTER_RCNN, **overrides) -> Config:
    hparams = {"config_file": config_file, "override_mmdet_config": overrides}
    return build_mmdet_config(hparams, {"file_client_args": SECRETS}, context_dir=tmp_path)


@pytest.mark.parametrize("config_file", [FASTER_RCNN, MASK_RCNN])
def test_dump_loads_back_to_the_redacted_config(tmp_path: Path, config_file: str) -> None:
    cfg = _final(tmp_path, config_file, **{"data.train.pipeline.2.img_scale": [640, 480]})
    path = dump_config(cfg, tmp_path / "out" / "final_config.py")
    assert path.suffix == ".py" and path.is_file()
    reloaded = Config.fromfile(str(path))
    assert reloaded._cfg_dict.to_dict() == redact(cfg._cfg_dict.to_dict())
    assert reloaded.data.train.pipeline[2].img_scale == (640, 480)  # tuples survive the round trip


def test_secrets_are_redacted_and_nothing_else(tmp_path: Path) -> None:
    cfg = _final(tmp_path, **{"custom_imports": None, "api": {"auth_token": "T0K", "user_password": None}})
    text = config_text(cfg)
    for secret in ("AKIAEXAMPLE1", "SECRETVALUE2", "TOKENVALUE3", "PASSWORDVALUE4", "T0K"):
        assert secret not in text
    assert text.count(REDACTED) >= 4 * 7  # 4 secrets x (5 loading steps + 3 datasets) at least
    for kept in ("my-bucket", "http://127.0.0.1:9000", "num_classes=80", "lr=0.02"):
        assert kept in text
    reloaded = Config.fromstring(text, ".py")
    assert reloaded.api.user_password is None  # nothing to hide in a None
    assert reloaded.data.train.file_client_args.aws_secret_access_key == REDACTED


def test_dump_does_not_touch_the_config(tmp_path: Path) -> None:
    cfg = _final(tmp_path)
    before = copy.deepcopy(cfg._cfg_dict.to_dict())
    dump_config(cfg, tmp_path / "c.py")
    assert cfg._cfg_dict.to_dict() == before
    assert cfg.data.train.file_client_args.aws_secret_access_key == "SECRETVALUE2"  # training still has it


def test_values_mmcv_cannot_pretty_print_still_dump(tmp_path: Path) -> None:
    cfg = _final(tmp_path, **{"work_dir": "runs/it's here", "tags": {"note": 'say "hi"\n'}})
    with pytest.raises(Exception):  # noqa: B017 - the mmcv/yapf failure this fallback exists for
        _ = cfg.pretty_text
    path = dump_config(cfg, tmp_path / "c.py")
    reloaded = Config.fromfile(str(path))
    assert reloaded.work_dir == "runs/it's here" and reloaded.tags.note == 'say "hi"\n'
    assert reloaded._cfg_dict.to_dict() == redact(cfg._cfg_dict.to_dict())


@pytest.mark.parametrize(
    "key, redacted",
    [
        ("aws_access_key_id", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("client_secret", True),
        ("refresh_token", True),
        ("db_password", True),
        ("passwd", True),
        ("bucket_name", False),
        ("num_classes", False),
        ("backend", False),
    ],
)
def test_redact_key_names(key: str, redacted: bool) -> None:
    out = redact({"outer": [{key: "v"}], "t": ({key: "v"},)})
    assert (out["outer"][0][key] == REDACTED) is redacted
    assert isinstance(out["t"], tuple) and (out["t"][0][key] == REDACTED) is redacted
