"""`veil demo`: TR-4928's confidential face detection end to end, on generated data.

Generate an FDDB-layout data set onto a volume, score the shipped FaceBoxes weights clean (the
seed's batch job, results snapshotted), fit the noise and sweep ALPHA, rerun the seed's ALPHA
0.8 job, and attack the obfuscated activations with a white-box reconstruction. It runs the real
`veil` commands in a home of its own (``./.veil-demo``, or ``$VEIL_DEMO_HOME``); 7 to 11 minutes
on two CPU cores."""

from __future__ import annotations

import os
import time

from veil import data
from veil.cli._demo import _fresh_home, _say, _veil
from veil.cli._render import console
from veil.errors import require_extra

# Sizes that keep the whole demo within 10 minutes on 2 CPU cores.
TEST_PER_FOLD, FIT_PER_FOLD, ATTACK_PER_FOLD = 15, 6, 30
ATTACK_ALPHAS = "0.8,0.95"


def run_face_demo() -> None:
    require_extra("torch", "torch", "the demo")
    t0 = time.perf_counter()
    home = _fresh_home()
    os.environ["VEIL_HOME"] = str(home)
    os.environ.setdefault("VEIL_POOL_SIZE", "4Gi")
    work = home / "privacy"
    console.print("[bold]veil demo[/bold]: confidential face detection (TR-4928) on generated "
                  f"data, in a home of its own ({home}).")

    _say("1. A volume for the data, and a synthetic face data set on it in FDDB's layout.")
    _veil("volume", "create", "inference-data", "--label", "purpose=demo")
    _veil("solutions", "face-privacy", "generate", "FDDB", "--volume", "inference-data",
          "--images-per-fold", str(TEST_PER_FOLD), "--fit-per-fold", str(FIT_PER_FOLD),
          "--attack-per-fold", str(ATTACK_PER_FOLD))
    fddb = data.volume_path("inference-data") / "FDDB"

    _say("2. The seed's batch job, clean: FaceBoxes (shipped weights) on every fold. The results "
         "go to a results volume, which is snapshotted.")
    _veil("solutions", "face-privacy", "evaluate", "--volume", "inference-data", "--dataset",
          "FDDB", "--results", "inference-results")

    _say("3. Fit the noise at each of the seed's ALPHAs (on FDDB/fit, detector frozen) and "
         "score the folds with it: the seed's accuracy table.")
    _veil("privacy", "evaluate", "--task", "faces", "--data", str(fddb), "--workdir", str(work))

    _say("4. The seed's ALPHA 0.8 job (inference-job-protopia-0.8.yaml), reusing the fitted "
         "noise; results snapshotted beside the clean run's.")
    _veil("solutions", "face-privacy", "evaluate", "--volume", "inference-data", "--dataset",
          "FDDB", "--noisy", "--alpha", "0.8", "--results", "inference-results", "--workdir",
          str(work))

    _say("5. Beyond the seed: how much of the image can an attacker who knows the head and the "
         "noise rebuild from what leaves the trusted zone?")
    _veil("privacy", "attack", "--task", "faces", "--data", str(fddb), "--workdir", str(work),
          "--alphas", ATTACK_ALPHAS, "--ks", "1", "--attack-epochs", "12", "--width", "64")

    _say("6. The results volume's snapshots: one per job, labelled with ALPHA and mAP; each job "
         "is an MLflow run linked to its snapshot; and the seed's Job manifests.")
    _veil("snapshot", "list", "inference-results")
    last = max(data.list_snapshots("inference-results"), key=lambda s: s.created)
    _veil("lineage", f"inference-results@{last.name}")
    _veil("solutions", "face-privacy", "export", "k8s", str(home / "k8s"), "--dataset",
          "FDDB", "--alphas", "0.8")
    console.print(f"\nPlots: {work / 'evaluate.png'}, {work / 'attack.png'}; image grid: "
                  f"{work / 'attack-grid.png'}")
    console.print(f"Done in {time.perf_counter() - t0:.0f} s. Explore: VEIL_HOME={home} veil "
                  f"volume list    (remove it: rm -rf {home})")
    if data.pool_show().mounted:
        data.pool_detach()
