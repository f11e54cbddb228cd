"""Replicas for the launcher's tests: one that succeeds, one whose rank 1 fails."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Config:
    out: str
    fail_rank: int = -1
    epochs: int = 2


def work(cfg: Config) -> int:
    from veil.train import EpochLog, replica

    rep = replica("cpu")
    if rep.rank == cfg.fail_rank:
        time.sleep(0.5)
        raise ValueError(f"frame 17 of rank {rep.rank} is unreadable")
    with EpochLog(Path(cfg.out), cfg.epochs, enabled=rep.is_main) as log:
        for e in range(cfg.epochs):
            log.record({"epoch": e + 1, "loss": 1.0 / (e + 1)})
    if rep.is_main:
        (Path(cfg.out) / "done.json").write_text(json.dumps(
            {"world": rep.world, "env": os.environ.get("WORLD_SIZE")}))
    if cfg.fail_rank >= 0:
        time.sleep(30)  # the peer's failure ends this replica first
    return 0
