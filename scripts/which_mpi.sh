#!/usr/bin/env bash
# Which MPI the install should use; prints "system PATH_TO_MPICC" or "wheel", and a reason on stderr.
#   scripts/which_mpi.sh             DSGD_MPI=auto|system|wheel (default auto)
# auto: a system Open MPI built with CUDA support (the cluster's own, often also tuned for its
# network) is used, and mpi4py is built against it; anything else gets the Open MPI 5 wheel.
# A system MPI without CUDA support is named, so the user can pick it with DSGD_MPI=system.
# Exit status 2 when DSGD_MPI=system but no system MPI is found, or DSGD_MPI is not a choice.
set -euo pipefail
choice="${DSGD_MPI:-auto}"
case "$choice" in auto|system|wheel) ;; *) echo "DSGD_MPI must be auto, system or wheel, got '$choice'" >&2; exit 2 ;; esac
# Skip the PATH entry of a venv's own wheel MPI: it is not the system's.
system_mpicc="" system_info=""
IFS=: read -r -a dirs <<< "${PATH:-}"
for d in "${dirs[@]}"; do
  [ -n "$d" ] && [ -x "$d/mpicc" ] || continue
  [ -f "$d/activate" ] || [ -f "$d/../pyvenv.cfg" ] && continue
  system_mpicc="$d/mpicc"
  [ -x "$d/ompi_info" ] && system_info="$d/ompi_info"
  break
done
cuda=false
if [ -n "$system_info" ] && "$system_info" --parsable --all 2>/dev/null | grep -Eq '(mpi|opal)_built_with_cuda_support:value:true'; then
  cuda=true
fi
case "$choice" in
  wheel) echo "MPI: the Open MPI 5 wheel (DSGD_MPI=wheel)" >&2; echo wheel ;;
  system)
    [ -n "$system_mpicc" ] || { echo "DSGD_MPI=system but no mpicc outside a virtualenv is on PATH" >&2; exit 2; }
    echo "MPI: the system MPI at $system_mpicc (DSGD_MPI=system; CUDA-aware: $cuda)" >&2
    echo "system $system_mpicc" ;;
  auto)
    if [ -n "$system_mpicc" ] && [ "$cuda" = true ]; then
      echo "MPI: the system's CUDA-aware Open MPI at $system_mpicc (set DSGD_MPI=wheel to use the wheel instead)" >&2
      echo "system $system_mpicc"
    else
      if [ -n "$system_mpicc" ]; then
        echo "MPI: found $system_mpicc without CUDA support; installing the Open MPI 5 wheel (DSGD_MPI=system uses the system one)" >&2
      else
        echo "MPI: no system MPI found; installing the Open MPI 5 wheel" >&2
      fi
      echo wheel
    fi ;;
esac
