"""Data-parallel training of a lane model: one process per replica (torchrun),
DistributedDataParallel over gloo on CPU or NCCL on GPU, a DistributedSampler, and rank 0
writing the checkpoints, the log and the scores. `launch` starts the replicas through
`veil.train.launch` (each runs `python -m veil.train veil.solutions.lane_detection._train:worker
CONFIG.json`); on Kubernetes each replica reads the configuration from the environment.

Rank 0 writes into the run folder:
    checkpoint.pt   model and optimizer after the last finished epoch (replaced atomically)
    model.pt        the trained weights, written only once training finished
    train.log       one line per epoch (loss, images/s, share of time waiting for input)
    metrics.json    the configuration, per-epoch figures and the test scores
    predictions.json  the test predictions in TuSimple's format (with run_time)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from veil.errors import InvalidArgument, VeilError
from veil.train import MAX_SEED, check_fields

MODEL_NAMES = ("light", "scnn")  # the keys of _model.MODELS
MAX_BATCH = 4096  # frames per step: 320 x 176 inputs, 0.7 MB each
MAX_PROCESSES = 1024  # replicas, loader processes, threads


@dataclass
class TrainConfig:
    """A lane-detection training run. On Kubernetes each field is read from an environment
    variable: the seed's USE_WORKERS, NUM_WORKERS, BATCH_SIZE, USE_VAL, VAL_BATCH_SIZE, plus
    DATA_DIR, OUT_DIR, MODEL, EPOCHS, LR, SEED, DEVICE, ..."""

    data: str = field(metadata={"env": "DATA_DIR", "shared": True})
    out: str = field(metadata={"env": "OUT_DIR", "shared": True})
    model: str = field(default="light", metadata={
        "help": "light (trains on a CPU in minutes) or scnn (the report's model).",
        "choices": MODEL_NAMES})
    epochs: int = field(default=12, metadata={"help": "Passes over the training frames.",
                                              "min": 1, "max": 100_000})
    batch_size: int = field(default=8, metadata={"help": "Frames per step per process "
                                                 "(BATCH_SIZE).", "min": 1, "max": MAX_BATCH})
    lr: float = field(default=3e-3, metadata={"help": "Peak learning rate (one-cycle), in "
                                              "(0, 1].", "above": 0.0, "max": 1.0})
    use_workers: bool = field(default=True, metadata={"help": "Load data in worker processes "
                                                      "(USE_WORKERS)."})
    num_workers: int = field(default=1, metadata={"help": "Loader processes per replica "
                                                  "(NUM_WORKERS).", "min": 0,
                                                  "max": MAX_PROCESSES})
    use_val: bool = field(default=True, metadata={"help": "Score test_label.json after "
                                                  "training (USE_VAL)."})
    val_batch_size: int = field(default=16, metadata={"help": "VAL_BATCH_SIZE.", "min": 1,
                                                      "max": MAX_BATCH})
    seed: int = field(default=0, metadata={"shared": True, "min": 0, "max": MAX_SEED})
    threads: int = field(default=1, metadata={"help": "torch threads per process.", "min": 1,
                                              "max": MAX_PROCESSES})
    device: str = field(default="cpu", metadata={"shared": True})
    init: str | None = field(default=None, metadata={"help": "Start from these weights "
                                                     "(model.pt, or a checkpoint.pt).",
                                                     "path": True, "export": False})
    val_every: int = field(default=0, metadata={"help": "Also score the test labels every N "
                                                "epochs (0: only at the end).", "min": 0})
    processes: int = field(default=1, metadata={"help": "Data-parallel replicas (torchrun, "
                                                "gloo on CPU, NCCL on GPU).", "env": "NPROC",
                                                "min": 1, "max": MAX_PROCESSES})

    def check(self) -> TrainConfig:
        """The options' ranges, from the fields' bounds (imports no torch: manifests are
        checked with it too)."""
        return check_fields(self)


def train_labels(data: Path):
    from veil.solutions.lane_detection._tusimple import read_labels

    files = sorted(Path(data).glob("label_data_*.json"))
    if not files:
        raise InvalidArgument(f"{data} has no label_data_*.json (TuSimple's training labels)")
    labels = []
    for f in files:
        labels += read_labels(f, images=Path(data))[0]
    return labels


def predict(model, data: Path, labels, batch_size: int, device, progress=None) -> list:
    """TuSimple predictions (with run_time in ms per frame) for `labels`' frames; `progress`
    advances once per frame."""
    import torch

    from veil.progress import or_silent
    from veil.solutions.lane_detection._data import load_frame, to_tensor
    from veil.solutions.lane_detection._model import decode
    from veil.solutions.lane_detection._tusimple import LaneLabel

    model.eval()
    out = []
    progress = or_silent(progress)
    progress.start(len(labels), "test: predicting")
    with torch.inference_mode():
        for i in range(0, len(labels), batch_size):
            batch = labels[i:i + batch_size]
            x = torch.stack([to_tensor(load_frame(Path(data) / lab.raw_file)) for lab in batch])
            t0 = time.perf_counter()
            seg, ex = model(x.to(device))
            lanes = decode(seg, ex)
            ms = 1e3 * (time.perf_counter() - t0) / len(batch)
            out += [LaneLabel(lab.raw_file, [], ln, run_time=round(ms, 3))
                    for lab, ln in zip(batch, lanes, strict=True)]
            progress.advance(len(batch))
    model.train()
    return out


def make_loader(ds, cfg: TrainConfig, sampler=None):
    """The training loader. Its workers persist across epochs; they read the epoch (which seeds
    the augmentation) from the dataset's shared memory, so each epoch's augmentation differs."""
    from torch.utils.data import DataLoader

    workers = cfg.num_workers if cfg.use_workers else 0
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=workers, drop_last=True, persistent_workers=workers > 0)


def worker(cfg: TrainConfig) -> int:
    """One replica (run by `python -m veil.train`). Rank and world size come from torchrun's
    environment (1 process without). Rank 0 prints a line per epoch, and within an epoch or
    the test scoring one every VEIL_PROGRESS_INTERVAL seconds (the launcher shows both)."""
    import torch
    from torch.utils.data import DistributedSampler

    from veil.progress import SILENT, LineProgress
    from veil.solutions.lane_detection._data import LaneFrames
    from veil.solutions.lane_detection._metrics import evaluate
    from veil.solutions.lane_detection._model import build, loss_fn
    from veil.solutions.lane_detection._tusimple import read_labels, write_labels
    from veil.train import EpochLog, atomic_save, barrier, leave, load_weights, replica

    cfg.check()
    rep = replica(cfg.device, threads=cfg.threads, seed=cfg.seed)
    device, world = rep.device, rep.world
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if rep.is_main:
        (out / "model.pt").unlink(missing_ok=True)  # never an older run's model
    data = Path(cfg.data)
    labels = train_labels(data)
    ds = LaneFrames(data, labels, augment=True, seed=cfg.seed)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rep.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True) if world > 1 else None
    loader = make_loader(ds, cfg, sampler)
    if len(loader) == 0:
        raise InvalidArgument(f"{len(labels)} training frames are fewer than one batch of "
                              f"{cfg.batch_size} per process x {world} processes")
    model = build(cfg.model)
    if cfg.init:
        load_weights(model, cfg.init, f"{cfg.model} lane model weights",
                     checkpoint_key="model")
    model = model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * len(loader))
    shown = LineProgress(ends=False) if rep.is_main else SILENT  # EpochLog prints the ends
    try:
        with EpochLog(out, cfg.epochs, enabled=rep.is_main) as history:
            for epoch in range(cfg.epochs):
                if sampler is not None:
                    sampler.set_epoch(epoch)
                ds.epoch = epoch
                shown.start(len(loader), f"epoch {epoch + 1}/{cfg.epochs}")
                t_epoch, wait, total, n = time.perf_counter(), 0.0, 0.0, 0
                t_ready = time.perf_counter()
                for x, seg_t, ex_t in loader:
                    wait += time.perf_counter() - t_ready
                    seg, ex = net(x.to(device))
                    loss = loss_fn(seg, ex, seg_t.to(device), ex_t.to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach())
                    n += 1
                    shown.advance(1)
                    t_ready = time.perf_counter()
                secs = time.perf_counter() - t_epoch
                row = {"epoch": epoch + 1, "loss": total / n, "seconds": secs,
                       "images_per_s": n * cfg.batch_size * world / secs,
                       "input_wait": wait / secs}
                if rep.is_main and cfg.use_val and cfg.val_every and \
                        (epoch + 1) % cfg.val_every == 0 and (data / "test_label.json").is_file():
                    test = read_labels(data / "test_label.json", images=data)[0]
                    row["test_accuracy"] = evaluate(
                        predict(model, data, test, cfg.val_batch_size, device, shown),
                        test).accuracy
                if rep.is_main:
                    atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "epoch": epoch + 1, "config": asdict(cfg)},
                                out / "checkpoint.pt")
                history.record(row)
        barrier()
        if rep.is_main:
            atomic_save(model.state_dict(), out / "model.pt")  # trained: kept whatever follows
            scores = None
            if cfg.use_val and (data / "test_label.json").is_file():
                test = read_labels(data / "test_label.json", images=data)[0]
                preds = predict(model, data, test, cfg.val_batch_size, device, shown)
                write_labels(out / "predictions.json", preds)
                scores = evaluate(preds, test).summary()
                print(f"test: Accuracy {scores['Accuracy']:.4f}, FP {scores['FP']:.4f}, "
                      f"FN {scores['FN']:.4f}, F1 {scores['F1']:.4f}", flush=True)
            (out / "metrics.json").write_text(json.dumps(
                {"config": asdict(cfg), "processes": world, "epochs": history.rows,
                 "test": scores}, indent=2) + "\n")
    finally:
        leave()
    return 0


@dataclass
class RunResult:
    out: Path
    metrics: dict
    seconds: float


def prepare(cfg: TrainConfig, processes: int | None = None) -> None:
    """Everything that can be checked before any replica starts: options, the training and
    (with use_val) test labels and their images, the starting weights, the device."""
    cfg.check()
    processes = cfg.processes if processes is None else processes
    if not isinstance(processes, int) or processes < 1:
        raise InvalidArgument(f"--processes must be a whole number >= 1, not {processes!r}")
    from veil.solutions.lane_detection._tusimple import read_labels

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    if cfg.device == "cpu" and processes > max(cpus, 2):  # two always, to try DDP anywhere
        raise InvalidArgument(f"--processes {processes}: this machine has {cpus} CPUs, one "
                              "per replica at most")
    data = Path(cfg.data)
    frames = len(train_labels(data))
    if frames < cfg.batch_size * processes:
        raise InvalidArgument(f"{data} has {frames} training frames, fewer than one batch of "
                              f"{cfg.batch_size} per process x {processes} process(es): lower "
                              "--batch-size")
    if cfg.use_val and (data / "test_label.json").is_file():
        read_labels(data / "test_label.json", images=data)
    if cfg.init:
        if not Path(cfg.init).is_file():
            raise InvalidArgument(f"--init {cfg.init}: no such file")
        from veil.solutions.lane_detection._model import build
        from veil.train import load_weights

        load_weights(build(cfg.model), cfg.init, f"{cfg.model} lane model weights",
                     checkpoint_key="model")
    if cfg.device != "cpu":
        import torch

        if not cfg.device.startswith("cuda") or not torch.cuda.is_available():
            raise InvalidArgument(f"--device {cfg.device}: use cpu, or cuda on a machine with "
                                  "a GPU")
        if torch.cuda.device_count() < processes:
            raise InvalidArgument(f"{processes} processes need {processes} GPUs; this machine "
                                  f"has {torch.cuda.device_count()}")


WORKER = "veil.solutions.lane_detection._train:worker"


def launch(cfg: TrainConfig, processes: int | None = None, *, log=None) -> RunResult:
    """Train with `processes` replicas (default: cfg.processes; torchrun, one machine). Fails
    with one line naming the failed replica; model.pt then does not exist, and checkpoint.pt
    is the last good epoch."""
    from veil.train import TrainingFailed
    from veil.train import launch as launch_replicas

    if processes is not None:
        cfg = replace(cfg, processes=processes)
    prepare(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.pt", "checkpoint.pt", "metrics.json", "predictions.json",
                  "train.log"):
        (out / stale).unlink(missing_ok=True)  # this run's, or none
    try:
        res = launch_replicas(WORKER, cfg, cfg.processes, out=out, threads=cfg.threads,
                              log=log, required=("model.pt", "metrics.json"))
    except TrainingFailed as e:
        (out / "model.pt").unlink(missing_ok=True)  # a failed run leaves no model behind
        ckpt = f"{out / 'checkpoint.pt'} holds the last finished epoch" \
            if (out / "checkpoint.pt").exists() else "no epoch finished"
        raise VeilError(f"{e}; no model was written, {ckpt}; log: {e.log}") from None
    return RunResult(out, json.loads((out / "metrics.json").read_text()), res.seconds)
