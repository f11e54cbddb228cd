"""Kubernetes manifests equivalent to TR-4896's: the distributed training job (a Kubeflow
PyTorchJob where the seed submits a Run:AI MPI job), the VolumeSnapshot of the data PVC that the
seed's rank 0 takes when ENABLE_SNAPSHOT is true, and the seed's restore-snapshot-pvc.yaml.

Each replica runs `python -m veil.train veil.solutions.lane_detection._train:worker --from-env
...`, configured by the seed's environment variables (USE_WORKERS, NUM_WORKERS, BATCH_SIZE,
USE_VAL, VAL_BATCH_SIZE) plus DATA_DIR, OUT_DIR, MODEL, EPOCHS, ...; the PyTorchJob operator
sets MASTER_ADDR, RANK and WORLD_SIZE. veil does not call the Kubernetes API: apply
volumesnapshot.yaml once the job has succeeded (so no snapshot holds a half-written model). Its
name carries the time the manifests were written; rename it when you reuse them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from veil import k8s
from veil.errors import InvalidArgument
from veil.solutions.lane_detection._train import WORKER, TrainConfig
from veil.train import ref, stamp, to_env

# a Kubernetes quantity for storage: digits (with a decimal part), then a suffix
_QUANTITY = re.compile(r"([0-9]{1,18}(?:\.[0-9]{1,9})?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


@dataclass
class ExportOptions:
    """Where the training job's data lives on the cluster, and how its snapshot is restored."""

    job_name: str = field(default="dist-lane-detection-training", metadata={
        "help": "The PyTorchJob's name (also in the snapshot's)."})
    pvc: str = field(default="pvc-download-tusimple-data-0", metadata={
        "help": "The data PVC, mounted at /mnt (the seed's PVC_NAME)."})
    restored_pvc: str = field(default="restored-tusimple", metadata={
        "help": "The PVC to restore the snapshot into."})
    storage_class: str = field(default="azurenetappfiles", metadata={
        "help": "The restored PVC's storage class."})
    snapshot_class: str = field(default="csi-snapclass", metadata={
        "help": "The VolumeSnapshotClass."})
    size: str = field(default="100Gi", metadata={"help": "The restored PVC's size."})


def manifests(cfg: TrainConfig, target: k8s.Target, opts: ExportOptions, *,
              data: str = "tusimple") -> dict[str, dict]:
    """pytorchjob.yaml, volumesnapshot.yaml and restore-snapshot-pvc.yaml."""
    target.check()
    cfg.check()
    if ".." in Path(data).parts:
        raise InvalidArgument(f"--data {data} leads outside the data PVC ('..' is refused)")
    size = _QUANTITY.fullmatch(opts.size)
    if not size or not float(size.group(1)) > 0:
        raise InvalidArgument(f"--size must be a storage size such as 100Gi (a number above "
                              f"0 and Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E), not "
                              f"{opts.size!r}")
    job, ns = k8s.check_name(opts.job_name, "job"), target.namespace
    worker_cfg = replace(cfg, data=f"/mnt/{data.strip('/')}", out=f"/mnt/runs/{job}",
                         device="cuda" if target.gpus else "cpu", init=None)
    env = {k: v for k, v in to_env(worker_cfg).items() if k != "NPROC"}
    command = ["python", "-m", "veil.train", WORKER, "--from-env", ref(TrainConfig)]
    c = k8s.container("pytorch", target.image, command, env_vars=env, gpus=target.gpus,
                      mounts={"data": "/mnt", "dshm": "/dev/shm"})  # the seed's --large-shm
    template = k8s.pod_template([c], [k8s.pvc_volume("data", opts.pvc), k8s.shm_volume()],
                                project=target.project)
    snap = k8s.volume_snapshot(f"snap-{opts.pvc}-{job}-{stamp()}", ns, pvc=opts.pvc,
                               snapshot_class=opts.snapshot_class)
    return {
        "pytorchjob.yaml": k8s.pytorchjob(job, ns, template, cfg.processes,
                                          project=target.project),
        "volumesnapshot.yaml": snap,
        "restore-snapshot-pvc.yaml": k8s.restore_pvc(
            opts.restored_pvc, ns, snapshot=snap["metadata"]["name"],
            storage_class=opts.storage_class, size=opts.size),
    }
