"""What runs inside one training replica: its rank and device, the process group, rank-0 atomic
checkpoints and the per-epoch log."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel job (torchrun's environment; 1 process
    without)."""

    rank: int
    world: int
    local_rank: int
    device: Any  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def replica(device: str = "cpu", threads: int | None = None, seed: int | None = None) -> Replica:
    """Join the job: set threads and seed, and with more than one process open the process
    group (gloo on CPU, NCCL on GPU, one GPU per local rank)."""
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if threads:
        torch.set_num_threads(threads)
    if seed is not None:
        torch.manual_seed(seed)
    dev = torch.device(device if device == "cpu" else f"cuda:{local}")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Replica(rank, world, local, dev)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def leave() -> None:
    """Close the process group, if this process opened one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save `obj` so that readers see the old file or the new one, never half of one."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class EpochLog(contextlib.AbstractContextManager):
    """Rank 0's record of training: one JSON line per epoch in train.log, and one printed line
    (which the launcher shows as progress)."""

    def __init__(self, out: Path, epochs: int, enabled: bool = True) -> None:
        self.epochs, self.rows = epochs, []
        self._file = open(Path(out) / "train.log", "a") if enabled else None  # noqa: SIM115

    def record(self, row: dict) -> None:
        self.rows.append(row)
        if self._file is None:
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        shown = ", ".join(_fmt(k, v) for k, v in row.items() if k not in ("epoch", "seconds"))
        print(f"epoch {row['epoch']}/{self.epochs}: {shown}", flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(k: str, v: Any) -> str:
    if k == "input_wait":
        return f"input wait {100 * v:.1f}%"
    if k == "images_per_s":
        return f"{v:.1f} images/s"
    if isinstance(v, float):
        return f"{k.replace('_', ' ')} {v:.4f}"
    return f"{k.replace('_', ' ')} {v}"
