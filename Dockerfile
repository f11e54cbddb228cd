# veil's image: the `veil` command with its PyTorch (CPU build), serving (PyTriton), lineage
# (MLflow) and Dask (the CTR job's scheduler, workers and engines) extras. The Kubernetes manifests veil writes run `veil:latest` unless given --image:
#   docker build -t veil:latest .        (docs/container.md: the tag, --image, a registry)
FROM python:3.11-slim-bookworm

# btrfs-progs and xfsprogs: the btrfs and reflink data drivers; mount: mount, umount and losetup
# for veil's loop-backed btrfs pool (which needs a privileged container: elsewhere veil uses its
# copy driver, as `veil doctor` says). Debian's versions follow the base image's release.
# The user veil runs as is made here too: not root (see USER below).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends btrfs-progs xfsprogs mount \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group veil

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# PyTorch's CPU build from PyTorch's own index first: veil[torch]'s torch==2.13.0 is then met
# and pip does not fetch the CUDA build from PyPI. Triton (bundled by PyTriton) links against
# libpython3.11.so, which this base image has (its Python is built shared).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /opt/veil
COPY pyproject.toml README.md ./
COPY src ./src
# veil's dependencies are as pyproject.toml gives them (not repeated here)
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[torch,serve,track,dask]"

# Not root: the home (VEIL_HOME defaults to ~/.veil) and the working folder, where veil writes
# its ./veil-privacy-TASK folders, belong to the user veil. Numeric, so that a pod's
# runAsNonRoot can check it.
USER 1000:1000
WORKDIR /home/veil
ENTRYPOINT ["veil"]
CMD ["--help"]
