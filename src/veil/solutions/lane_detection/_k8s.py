"""Kubernetes manifests equivalent to TR-4896's: the distributed training job (a Kubeflow
PyTorchJob where the seed submits a Run:AI MPI job), the VolumeSnapshot of the data PVC that the
seed's rank 0 takes when ENABLE_SNAPSHOT is true, and the seed's restore-snapshot-pvc.yaml.

Each replica runs `python -m veil.solutions.lane_detection._train --from-env`, configured by the
seed's environment variables (USE_WORKERS, NUM_WORKERS, BATCH_SIZE, USE_VAL, VAL_BATCH_SIZE) plus
DATA_DIR, OUT_DIR, MODEL and EPOCHS; the PyTorchJob operator sets MASTER_ADDR, RANK and
WORLD_SIZE. veil does not call the Kubernetes API: apply volumesnapshot.yaml once the job has
succeeded (so no snapshot holds a half-written model). Its name carries the time the manifests
were written; rename it when you reuse them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from veil.errors import InvalidArgument

_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _name(value: str, what: str) -> str:
    if not _K8S_NAME.fullmatch(value or "") or len(value) > 63:
        raise InvalidArgument(f"{value!r} is not a valid Kubernetes name for the {what}")
    return value


def pytorchjob(*, job: str, processes: int, pvc: str, namespace: str, image: str, gpus: int,
               data_dir: str, out_dir: str, model: str, epochs: int, batch_size: int,
               use_workers: bool, num_workers: int, use_val: bool, val_batch_size: int) -> dict:
    env = [{"name": k, "value": str(v)} for k, v in (
        ("DATA_DIR", f"/mnt/{data_dir.strip('/')}"),
        ("OUT_DIR", f"/mnt/{out_dir.strip('/')}/{job}"),
        ("MODEL", model), ("EPOCHS", epochs), ("BATCH_SIZE", batch_size),
        ("USE_WORKERS", str(use_workers).lower()), ("NUM_WORKERS", num_workers),
        ("USE_VAL", str(use_val).lower()), ("VAL_BATCH_SIZE", val_batch_size),
        ("DEVICE", "cuda" if gpus else "cpu"))]

    def template() -> dict:
        container: dict = {
            "name": "pytorch", "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-m", "veil.solutions.lane_detection._train", "--from-env"],
            "env": [dict(e) for e in env],  # no YAML anchors between replicas
            "volumeMounts": [{"name": "data", "mountPath": "/mnt"},
                             {"name": "dshm", "mountPath": "/dev/shm"}],  # the seed's --large-shm
        }
        if gpus:
            container["resources"] = {"limits": {"nvidia.com/gpu": gpus}}
        return {"spec": {"containers": [container], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": pvc}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}}]}}

    # Never: a replica that dies fails the job clearly, as locally (no silent restarts)
    specs = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template()}}
    if processes > 1:
        specs["Worker"] = {"replicas": processes - 1, "restartPolicy": "Never",
                           "template": template()}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": job, "namespace": namespace},
            "spec": {"pytorchReplicaSpecs": specs}}


def volume_snapshot(*, pvc: str, job: str, namespace: str, snapshot_class: str,
                    stamp: str) -> dict:
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": f"snap-{pvc}-{job}-{stamp}", "namespace": namespace},
            "spec": {"volumeSnapshotClassName": snapshot_class,
                     "source": {"persistentVolumeClaimName": pvc}}}


def restore_pvc(*, snapshot: str, name: str, namespace: str, storage_class: str,
                size: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"storageClassName": storage_class,
                     "dataSource": {"name": snapshot, "kind": "VolumeSnapshot",
                                    "apiGroup": "snapshot.storage.k8s.io"},
                     "accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": size}}}}


def emit(directory: Path, *, job: str = "dist-lane-detection-training", processes: int = 3,
         pvc: str = "pvc-download-tusimple-data-0", namespace: str = "runai-lane-detection",
         image: str = "veil:latest", gpus: int = 1, data_dir: str = "tusimple",
         out_dir: str = "runs", model: str = "light", epochs: int = 12, batch_size: int = 33,
         use_workers: bool = True, num_workers: int = 4, use_val: bool = False,
         val_batch_size: int = 99, snapshot_class: str = "csi-snapclass",
         restored_pvc: str = "restored-tusimple", storage_class: str = "azurenetappfiles",
         size: str = "100Gi") -> list[Path]:
    """Write pytorchjob.yaml, volumesnapshot.yaml and restore-snapshot-pvc.yaml."""
    import yaml

    for value, what in ((job, "job"), (pvc, "PVC"), (namespace, "namespace"),
                        (restored_pvc, "restored PVC"), (snapshot_class, "snapshot class"),
                        (storage_class, "storage class")):
        _name(value, what)
    if processes < 1 or gpus < 0:
        raise InvalidArgument("--processes must be >= 1 and --gpus >= 0")
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    snap = volume_snapshot(pvc=pvc, job=job, namespace=namespace, snapshot_class=snapshot_class,
                           stamp=stamp)
    docs = {
        "pytorchjob.yaml": pytorchjob(
            job=job, processes=processes, pvc=pvc, namespace=namespace, image=image, gpus=gpus,
            data_dir=data_dir, out_dir=out_dir, model=model, epochs=epochs,
            batch_size=batch_size, use_workers=use_workers, num_workers=num_workers,
            use_val=use_val, val_batch_size=val_batch_size),
        "volumesnapshot.yaml": snap,
        "restore-snapshot-pvc.yaml": restore_pvc(snapshot=snap["metadata"]["name"],
                                                 name=restored_pvc, namespace=namespace,
                                                 storage_class=storage_class, size=size),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, doc in docs.items():
        (directory / name).write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
        out.append(directory / name)
    return out
