"""`veil train ...`: data-parallel training runs (TR-4896)."""

from __future__ import annotations

from pathlib import Path

import typer

from veil.cli._render import console, err_console, print_json

app = typer.Typer(help="Data-parallel training (torchrun, DistributedDataParallel).",
                  no_args_is_help=True)


@app.command("lane-detection")
def lane_detection(
    data: Path = typer.Option(None, "--data", help="TuSimple folder (label_data_*.json, "
                              "clips/); with --volume, a path inside the volume."),
    volume: str = typer.Option(None, "--volume", help="Read the data from this veil volume "
                               "(the seed's PVC_NAME)."),
    out: Path = typer.Option(None, "--out", help="Run folder: checkpoint.pt, model.pt, train.log, "
                             "metrics.json, predictions.json (with --volume, relative to the "
                             "volume; default there: runs/JOB-TIME)."),
    job: str = typer.Option("lane-detection", "--job", help="Job name (in the run's and the "
                            "snapshot's names)."),
    enable_snapshot: bool = typer.Option(False, "--enable-snapshot/--no-enable-snapshot",
                                         help="Snapshot the volume (data, model, logs) after "
                                         "training (ENABLE_SNAPSHOT)."),
    track: bool = typer.Option(True, "--track/--no-track", help="Record the run and its "
                               "lineage in MLflow (VEIL_HOME/mlflow.db)."),
    processes: int = typer.Option(1, "--processes", help="Data-parallel replicas (torchrun, "
                                  "gloo on CPU, NCCL on GPU)."),
    model: str = typer.Option("light", "--model", help="light (trains on a CPU in minutes) or "
                              "scnn (the report's model)."),
    epochs: int = typer.Option(12, "--epochs"),
    batch_size: int = typer.Option(8, "--batch-size", help="Per process (BATCH_SIZE)."),
    use_workers: bool = typer.Option(True, "--use-workers/--no-use-workers", help="Load data "
                                     "in worker processes (USE_WORKERS)."),
    num_workers: int = typer.Option(1, "--num-workers", help="Loader processes per replica "
                                    "(NUM_WORKERS)."),
    use_val: bool = typer.Option(True, "--use-val/--no-use-val", help="Score test_label.json "
                                 "after training (USE_VAL)."),
    val_batch_size: int = typer.Option(16, "--val-batch-size", help="VAL_BATCH_SIZE."),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate (one-cycle)."),
    threads: int = typer.Option(1, "--threads", help="torch threads per process."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    init: Path = typer.Option(None, "--init", help="Start from these weights (model.pt)."),
    val_every: int = typer.Option(0, "--val-every", help="Also score the test labels every N "
                                  "epochs (0: only at the end)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run's metrics as JSON."),
    emit_k8s: Path = typer.Option(None, "--emit-k8s", help="Instead of training, write the "
                                  "Kubeflow PyTorchJob, the VolumeSnapshot and the restore PVC "
                                  "for this job into this folder."),
    pvc: str = typer.Option("pvc-download-tusimple-data-0", "--pvc", help="With --emit-k8s: "
                            "the data PVC, mounted at /mnt (PVC_NAME)."),
    namespace: str = typer.Option("runai-lane-detection", "--namespace", help="With "
                                  "--emit-k8s."),
    image: str = typer.Option("veil:latest", "--image", help="With --emit-k8s."),
    gpus: int = typer.Option(1, "--gpus", help="With --emit-k8s: GPUs per process."),
    restored_pvc: str = typer.Option("restored-tusimple", "--restored-pvc", help="With "
                                     "--emit-k8s: the PVC to restore the snapshot into."),
    storage_class: str = typer.Option("azurenetappfiles", "--storage-class", help="With "
                                      "--emit-k8s: for the restored PVC."),
    snapshot_class: str = typer.Option("csi-snapclass", "--snapshot-class", help="With "
                                       "--emit-k8s: the VolumeSnapshotClass."),
) -> None:
    """Train a lane detector data-parallel on TuSimple-format data, scoring it on the test
    labels at the end (TR-4896)."""
    if emit_k8s is not None:
        from veil.solutions.lane_detection import _k8s

        files = _k8s.emit(emit_k8s, job=job if job != "lane-detection" else
                          "dist-lane-detection-training", processes=processes, pvc=pvc,
                          namespace=namespace, image=image, gpus=gpus,
                          data_dir=str(data or "tusimple"), out_dir="runs", model=model,
                          epochs=epochs, batch_size=batch_size, use_workers=use_workers,
                          num_workers=num_workers, use_val=use_val,
                          val_batch_size=val_batch_size, snapshot_class=snapshot_class,
                          restored_pvc=restored_pvc, storage_class=storage_class)
        for f in files:
            console.print(f"wrote {f}", markup=False)
        return
    if data is None:
        from veil.errors import InvalidArgument

        raise InvalidArgument("--data is required (a TuSimple folder)")
    try:
        import torch  # noqa: F401
    except ImportError:
        from veil.errors import VeilError

        raise VeilError("veil train needs PyTorch: pip install 'veil[torch]'") from None
    import time

    from veil.errors import InvalidArgument
    from veil.solutions.face_privacy._job import resolve_dataset
    from veil.solutions.lane_detection._job import train_job
    from veil.solutions.lane_detection._train import TrainConfig

    path = resolve_dataset(data, volume)
    if out is not None and volume is not None and not out.is_absolute():
        from veil import data as vdata

        out = vdata.volume_path(volume) / out  # relative to the volume, as --data is
    if out is None:
        if volume is None:
            raise InvalidArgument("--out is required without --volume")
        from veil import data as vdata

        out = vdata.volume_path(volume) / "runs" / f"{job}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = TrainConfig(data=str(path.absolute()), out=str(out.absolute()), model=model,
                      epochs=epochs, batch_size=batch_size, lr=lr, use_workers=use_workers,
                      num_workers=num_workers, use_val=use_val, val_batch_size=val_batch_size,
                      seed=seed, threads=threads, device=device, val_every=val_every,
                      init=str(init.absolute()) if init else None)
    err_console.print(f"Training {model} on {path} with {processes} process(es) ...",
                      markup=False)
    job_res = train_job(cfg, processes, job=job, volume=volume, snapshot=enable_snapshot,
                        track=track, echo=lambda m: err_console.print(m, markup=False))
    res = job_res.run
    if as_json:
        return print_json({**res.metrics, "run_id": job_res.run_id,
                           "snapshot": job_res.snapshot, "out": str(res.out)})
    test = res.metrics.get("test")
    console.print(f"Trained in {res.seconds:.1f} s; model: {res.out / 'model.pt'}", markup=False)
    if job_res.run_id:
        console.print(f"MLflow run: {job_res.run_id}", markup=False)
    if job_res.snapshot:
        console.print(f"Snapshot: {job_res.snapshot} (volume {volume})", markup=False)
    if test:
        console.print(f"Accuracy {test['Accuracy']:.4f}  FP {test['FP']:.4f}  FN {test['FN']:.4f}"
                      f"  F1 {test['F1']:.4f}", markup=False)
