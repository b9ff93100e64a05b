"""scripts/install.sh: a cold install on a disk too full for it stops in one line before pip starts; CUDA=1
finds the toolkit (through an nvcc wrapper), keys the wheel by CUDA version and architectures, and refuses a
toolkit of another CUDA version in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("python3.11") is None, reason="install.sh needs python3.11")
def test_a_cold_install_without_the_space_stops_before_pip(tmp_path: Path) -> None:
    venv = tmp_path / "env"
    env = {**os.environ, "VENV": str(venv), "MMDET": "3", "MODEL_HUB_MMDET_NEED_GIB": "1000000"}
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("install.sh: error:")]
    assert len(errors) == 1, result.stderr
    assert f"GiB free for the environment (VENV) ({venv}); a cold install needs about 1000000 GiB" in errors[0]
    # Nothing was installed: the new environment holds pip alone.
    site = next(venv.glob("lib/python*/site-packages"))
    assert not any(site.glob("torch*")), sorted(p.name for p in site.iterdir())


# ------------------------------------------------------------------ CUDA ops without a GPU (CUDA=1 BUILD_ONLY=1)
def _cuda_torch() -> bool:
    import torch

    return torch.version.cuda is not None


needs_cuda_build = pytest.mark.skipif(shutil.which("nvcc") is None or not _cuda_torch(),
                                      reason="needs an nvcc on PATH and a CUDA build of torch")


def _build_only(tmp_path: Path, key_dir: str | None, **env: str) -> subprocess.CompletedProcess:
    """install.sh --wheel-only with CUDA=1 against this environment's torch, a wheel cache in tmp_path holding a
    stand-in wheel under ``key_dir`` (so that nothing is compiled: what is checked is how the key is made)."""
    import sys

    cache = tmp_path / "cache"
    if key_dir:
        (cache / key_dir).mkdir(parents=True)
        (cache / key_dir / "mmcv_full-1.7.2-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    full = {**os.environ, "MMDET": "2", "VENV": sys.prefix, "CUDA": "1", "MODEL_HUB_MMDET_WHEEL_CACHE": str(cache),
            **env}
    return subprocess.run(["bash", str(REPO / "scripts" / "install.sh"), "--wheel-only"], env=full,
                          capture_output=True, text=True, timeout=300)


def _key(arch: str) -> str:
    import sys

    import torch

    py = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"mmcv_full-1.7.2/{py}-torch{torch.__version__.replace('+', '_')}-cuda{torch.version.cuda}-arch{arch}"


@needs_cuda_build
def test_the_toolkit_behind_an_nvcc_wrapper_and_the_default_architectures_make_the_key(tmp_path: Path) -> None:
    real = subprocess.run(["nvcc", "--dryrun", "-c", "-x", "cu", os.devnull], capture_output=True, text=True)
    here = next(line.split("=", 1)[1] for line in (real.stdout + real.stderr).splitlines()
                if line.startswith("#$ _HERE_="))
    wrapper = tmp_path / "bin" / "nvcc"  # a 2-line wrapper script, as this machine's own
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {here}/nvcc "$@"\n')
    wrapper.chmod(0o755)
    archs = subprocess.run([f"{here}/nvcc", "--list-gpu-arch"], capture_output=True, text=True).stdout
    default = "7.0_8.0_9.0+PTX" if "compute_70" in archs else "7.5_8.0_9.0+PTX"  # CUDA 13 has no Volta
    env = {"PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}", "CUDA_HOME": ""}  # empty: not given
    result = _build_only(tmp_path, _key(default), **env)
    assert result.returncode == 0, result.stdout + result.stderr
    toolkit = str(Path(here).parent.resolve())
    assert f"toolkit {toolkit} (from the nvcc on PATH ({wrapper}))" in result.stdout
    assert f"done: {tmp_path / 'cache' / _key(default)}/" in result.stdout  # the cached wheel, nothing built


@needs_cuda_build
def test_the_architecture_list_given_is_in_the_key(tmp_path: Path) -> None:
    result = _build_only(tmp_path, _key("8.0_9.0"), TORCH_CUDA_ARCH_LIST="8.0 9.0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "architectures 8.0 9.0" in result.stdout
    assert f"done: {tmp_path / 'cache' / _key('8.0_9.0')}/" in result.stdout


@needs_cuda_build
def test_a_toolkit_of_another_cuda_version_is_refused_in_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "cuda-12.4"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4, V12.4.131'\n")
    (fake / "bin" / "nvcc").chmod(0o755)
    result = _build_only(tmp_path, None, CUDA_HOME=str(fake))
    import torch

    cuda = ".".join(torch.version.cuda.split(".")[:2])
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("install.sh: error:")]
    assert errors == [f"install.sh: error: the CUDA toolkit in {fake} (from CUDA_HOME) is CUDA 12.4 but torch was "
                      f"built with CUDA {cuda}: set CUDA_HOME to a CUDA {cuda} toolkit (or unset it and take nvcc "
                      f"off PATH to use NVIDIA's PyPI packages nvidia-cuda-nvcc=={cuda}.*)"], result.stderr
