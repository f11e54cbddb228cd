#!/usr/bin/env bash
# Everything `make demo` and `make test` need on a fresh machine: Debian packages (when root),
# a virtual environment in .venv, and veil installed into it with PyTorch (CPU), Triton (PyTriton) and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

need=()
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "setup: ${need[*]} not installed and not root: veil will use its copy driver" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,torch,serve,track,dask]'
# The Dask Kubernetes operator's CRDs (DaskJob, DaskCluster), to check the manifests veil writes
# against them offline: its wheel, not installed (veil never runs the operator).
DASK_K8S=dask_kubernetes-2026.3.0-py3-none-any.whl
if [ ! -f ".venv/share/veil/$DASK_K8S" ]; then
  .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps \
    -d .venv/share/veil dask-kubernetes==2026.3.0
fi
