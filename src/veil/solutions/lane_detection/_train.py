"""Data-parallel training of a lane model: one process per replica (torchrun),
DistributedDataParallel over gloo on CPU or NCCL on GPU, a DistributedSampler, and rank 0
writing the checkpoints, the log and the scores. Each process runs
`python -m veil.solutions.lane_detection._train CONFIG.json`; `launch` starts them.

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
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from veil.errors import InvalidArgument, VeilError


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str = "light"
    epochs: int = 12
    batch_size: int = 8  # per process
    lr: float = 3e-3
    use_workers: bool = True
    num_workers: int = 1
    use_val: bool = True
    val_batch_size: int = 16
    seed: int = 0
    threads: int = 1  # torch threads per process
    device: str = "cpu"
    init: str | None = None  # weights to start from
    val_every: int = 0  # score the test labels every N epochs (0: only at the end)

    def check(self) -> TrainConfig:
        from veil.solutions.lane_detection._model import MODELS

        if self.model not in MODELS:
            raise InvalidArgument(f"--model must be one of {', '.join(MODELS)}, not "
                                  f"{self.model!r}")
        for name in ("epochs", "batch_size", "val_batch_size", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"--{name.replace('_', '-')} must be a whole number "
                                      f">= 1, not {v!r}")
        if self.num_workers < 0:
            raise InvalidArgument(f"--num-workers must be >= 0, not {self.num_workers}")
        if not self.lr > 0:
            raise InvalidArgument(f"--lr must be > 0, not {self.lr}")
        return self


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_labels(data: Path):
    from veil.solutions.lane_detection._tusimple import read_labels

    files = sorted(Path(data).glob("label_data_*.json"))
    if not files:
        raise InvalidArgument(f"{data} has no label_data_*.json (TuSimple's training labels)")
    labels = []
    for f in files:
        labels += read_labels(f, images=Path(data))[0]
    return labels


def predict(model, data: Path, labels, batch_size: int, device) -> list:
    """TuSimple predictions (with run_time in ms per frame) for `labels`' frames."""
    import torch

    from veil.solutions.lane_detection._data import load_frame, to_tensor
    from veil.solutions.lane_detection._model import decode
    from veil.solutions.lane_detection._tusimple import LaneLabel

    model.eval()
    out = []
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
    """One replica. Rank and world size come from torchrun's environment (1 process without)."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from veil.solutions.lane_detection._data import LaneFrames
    from veil.solutions.lane_detection._metrics import evaluate
    from veil.solutions.lane_detection._model import build, loss_fn
    from veil.solutions.lane_detection._tusimple import read_labels, write_labels

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    local = os.environ.get("LOCAL_RANK", "0")
    device = torch.device(cfg.device if cfg.device == "cpu" else f"cuda:{local}")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(cfg.out)
    data = Path(cfg.data)
    labels = train_labels(data)
    ds = LaneFrames(data, labels, augment=True, seed=cfg.seed)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True) if world > 1 else None
    loader = make_loader(ds, cfg, sampler)
    if len(loader) == 0:
        raise InvalidArgument(f"{len(labels)} training frames are fewer than one batch of "
                              f"{cfg.batch_size} per process x {world} processes")
    model = build(cfg.model).to(device)
    if cfg.init:
        model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * len(loader))
    history = []
    log = open(out / "train.log", "a") if rank == 0 else None  # noqa: SIM115
    try:
        for epoch in range(cfg.epochs):
            if sampler is not None:
                sampler.set_epoch(epoch)
            ds.epoch = epoch
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
                t_ready = time.perf_counter()
            secs = time.perf_counter() - t_epoch
            row = {"epoch": epoch + 1, "loss": total / n, "seconds": secs,
                   "images_per_s": n * cfg.batch_size * world / secs, "input_wait": wait / secs}
            if rank == 0 and cfg.use_val and cfg.val_every and (epoch + 1) % cfg.val_every == 0 \
                    and (data / "test_label.json").is_file():
                test = read_labels(data / "test_label.json", images=data)[0]
                row["test_accuracy"] = evaluate(
                    predict(model, data, test, cfg.val_batch_size, device), test).accuracy
            history.append(row)
            if rank == 0:
                _atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "epoch": epoch + 1, "config": asdict(cfg)}, out / "checkpoint.pt")
                log.write(json.dumps(row) + "\n")
                log.flush()
                acc = f", test accuracy {row['test_accuracy']:.4f}" \
                    if "test_accuracy" in row else ""
                print(f"epoch {epoch + 1}/{cfg.epochs}: loss {row['loss']:.4f}, "
                      f"{row['images_per_s']:.1f} images/s, input wait "
                      f"{100 * row['input_wait']:.1f}%{acc}", flush=True)
        if world > 1:
            dist.barrier()
        if rank == 0:
            _atomic_save(model.state_dict(), out / "model.pt")  # trained: kept whatever follows
            scores = None
            if cfg.use_val and (data / "test_label.json").is_file():
                test = read_labels(data / "test_label.json", images=data)[0]
                preds = predict(model, data, test, cfg.val_batch_size, device)
                write_labels(out / "predictions.json", preds)
                scores = evaluate(preds, test).summary()
                print(f"test: Accuracy {scores['Accuracy']:.4f}, FP {scores['FP']:.4f}, "
                      f"FN {scores['FN']:.4f}, F1 {scores['F1']:.4f}", flush=True)
            (out / "metrics.json").write_text(json.dumps(
                {"config": asdict(cfg), "processes": world, "epochs": history,
                 "test": scores}, indent=2) + "\n")
    finally:
        if log is not None:
            log.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


_RAISED = re.compile(r"(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception|InvalidArgument|"
                     r"NotFound): .+)$")


@dataclass
class RunResult:
    out: Path
    metrics: dict
    seconds: float


def prepare(cfg: TrainConfig, processes: int) -> None:
    """Everything that can be checked before any replica starts: options, the training and
    (with use_val) test labels and their images, the starting weights, the device."""
    cfg.check()
    if not isinstance(processes, int) or processes < 1:
        raise InvalidArgument(f"--processes must be a whole number >= 1, not {processes!r}")
    from veil.solutions.lane_detection._tusimple import read_labels

    data = Path(cfg.data)
    train_labels(data)
    if cfg.use_val and (data / "test_label.json").is_file():
        read_labels(data / "test_label.json", images=data)
    if cfg.init and not Path(cfg.init).is_file():
        raise InvalidArgument(f"--init {cfg.init}: no such file")
    if cfg.device != "cpu":
        import torch

        if not cfg.device.startswith("cuda") or not torch.cuda.is_available():
            raise InvalidArgument(f"--device {cfg.device}: use cpu, or cuda on a machine with "
                                  "a GPU")
        if torch.cuda.device_count() < processes:
            raise InvalidArgument(f"{processes} processes need {processes} GPUs; this machine "
                                  f"has {torch.cuda.device_count()}")


def launch(cfg: TrainConfig, processes: int = 1, *, echo=print) -> RunResult:
    """Train with `processes` replicas (torchrun, one machine). Fails with one line if any
    replica fails; model.pt then does not exist, and checkpoint.pt is the last good epoch."""
    prepare(cfg, processes)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.pt", "checkpoint.pt", "metrics.json", "predictions.json",
                  "train.log"):
        (out / stale).unlink(missing_ok=True)  # this run's, or none
    cfg_file = out / "config.json"
    cfg_file.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={processes}", "-m", "veil.solutions.lane_detection._train",
           str(cfg_file)]
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg.threads), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail, line][-2000:]
            if line.startswith(("epoch ", "test: ")):
                echo(line)
        code = proc.wait()
    secs = time.perf_counter() - t0
    (out / "launcher.log").write_text("\n".join(tail) + "\n")
    if code != 0 or not (out / "model.pt").is_file():
        raised = [m.group(1) for ln in tail if (m := _RAISED.match(ln.strip()))
                  and "ChildFailedError" not in ln]
        signals = [ln.strip() for ln in tail if "Signal" in ln and "died" in ln]
        ours = [r.removeprefix("veil.errors.") for r in raised if r.startswith("veil.errors.")]
        # a replica's own error is the cause; the others' (peers gone) are its consequences
        why = ours[-1] if ours else raised[0] if raised else signals[-1] if signals else ""
        (out / "model.pt").unlink(missing_ok=True)  # a failed run leaves no model behind
        ckpt = f"{out / 'checkpoint.pt'} holds the last finished epoch" \
            if (out / "checkpoint.pt").exists() else "no epoch finished"
        raise VeilError(f"training failed (exit {code}){': ' + why.strip() if why else ''}; "
                        f"no model was written, {ckpt}; log: {out / 'launcher.log'}")
    return RunResult(out, json.loads((out / "metrics.json").read_text()), secs)


def _env_bool(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None:
        return default
    if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidArgument(f"{name} must be true or false, not {v!r}")
    return v.lower() in ("true", "1", "yes")


def config_from_env() -> TrainConfig:
    """The configuration of a replica on Kubernetes: the seed's variables (USE_WORKERS,
    NUM_WORKERS, BATCH_SIZE, USE_VAL, VAL_BATCH_SIZE) plus DATA_DIR, OUT_DIR, MODEL, EPOCHS,
    LR, SEED, DEVICE."""
    e = os.environ
    try:
        cfg = TrainConfig(
            data=e["DATA_DIR"], out=e["OUT_DIR"], model=e.get("MODEL", "light"),
            epochs=int(e.get("EPOCHS", 12)), batch_size=int(e.get("BATCH_SIZE", 8)),
            lr=float(e.get("LR", 3e-3)), use_workers=_env_bool("USE_WORKERS", True),
            num_workers=int(e.get("NUM_WORKERS", 1)), use_val=_env_bool("USE_VAL", True),
            val_batch_size=int(e.get("VAL_BATCH_SIZE", 16)), seed=int(e.get("SEED", 0)),
            device=e.get("DEVICE", "cpu"))
    except KeyError as k:
        raise InvalidArgument(f"environment variable {k.args[0]} is not set") from None
    except ValueError as v:
        raise InvalidArgument(f"a training variable is not a number: {v}") from None
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    if int(e.get("RANK", 0)) == 0:
        (Path(cfg.out) / "model.pt").unlink(missing_ok=True)  # never an older run's model
    return cfg.check()


def main() -> None:
    if sys.argv[1:] == ["--from-env"]:
        cfg = config_from_env()
    else:
        cfg = TrainConfig(**json.loads(Path(sys.argv[1]).read_text()))
    sys.exit(worker(cfg))


if __name__ == "__main__":
    main()
