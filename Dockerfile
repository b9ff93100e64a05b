# A Determined task image with model_hub_mmdet and one MMDetection generation baked in, on a CUDA torch image.
# It runs the same steps as the stand-in image test (tests/standin_image.py): the generation's mmcv wheel, built
# once with CUDA kernels, is installed by startup-hook.sh into the image's Python, keeping its torch; on the
# cluster the hook then finds mmcv importable and only reinstalls the package from the uploaded context.
#
#   docker build -t my/mmdet2 .                                     # MMDetection 2.28 (mmcv-full 1.7.2)
#   docker build -t my/mmdet3 --build-arg MMDET=3 .                 # MMDetection 3.3 (mmcv 2.1.0)
#   docker build --build-arg BASE=<your CUDA torch image> --build-arg TORCH_CUDA_ARCH_LIST="8.0 9.0" .
#
# BASE must have torch with CUDA and the CUDA toolkit (nvcc) of torch's CUDA version: a "devel" image. Without nvcc,
# scripts/install.sh fetches NVIDIA's PyPI toolkit packages pinned to torch's CUDA version (network needed).
# The build compiles every CUDA kernel for each architecture: about 40 CPU-seconds per .cu file and
# architecture (55 files for 2.x, 58 for 3.x), so give it cores. Then, in the experiment file:
#   environment: {image: {cuda: my/mmdet3}, environment_variables: [MODEL_HUB_MMDET_GENERATION=3]}
ARG BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-devel

FROM ${BASE} AS mmcv
ARG MMDET=2
# Empty: scripts/install.sh's default, the GPUs of Determined clusters (see docs/cluster.md).
ARG TORCH_CUDA_ARCH_LIST=
WORKDIR /src
COPY scripts/ scripts/
# The build tools mmcv's setup.py needs (build-only mode installs nothing itself); this stage is thrown away.
RUN python3 -m pip install --no-cache-dir ninja wheel "setuptools<70" \
 && MMDET=$MMDET VENV=none PYTHON=python3 CUDA=1 BUILD_ONLY=1 WHEEL_OUT=/wheels MAX_JOBS="$(nproc)" \
    TORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST" bash scripts/install.sh

FROM ${BASE}
ARG MMDET=2
COPY --from=mmcv /wheels/ /opt/model_hub_mmdet/wheels/
COPY . /opt/model_hub_mmdet/src/
WORKDIR /opt/model_hub_mmdet/src
RUN MODEL_HUB_MMDET_GENERATION=$MMDET MMCV_WHEEL="$(ls /opt/model_hub_mmdet/wheels/*.whl)" bash startup-hook.sh \
 && python3 -c "import mmcv.ops, mmdet; print('mmdet', mmdet.__version__, 'mmcv CUDA', mmcv.ops.get_compiling_cuda_version())"
ENV MODEL_HUB_MMDET_GENERATION=$MMDET
