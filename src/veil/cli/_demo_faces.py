"""`veil demo`: TR-4928's confidential face detection end to end, on generated data.

Generate an FDDB-layout data set onto a volume, score the shipped FaceBoxes weights clean (the
seed's batch job, results snapshotted), fit the noise and sweep ALPHA, rerun the seed's ALPHA
0.8 job, and attack the obfuscated activations with a white-box reconstruction. It runs the real
`veil` commands in a new veil home of its own (``./.veil-demo/faces-YYYYMMDD-HHMMSS``, or under
``$VEIL_DEMO_HOME``; earlier runs are kept). `FACE_STEP_SECONDS` says how long each step takes
on two CPU cores."""

from __future__ import annotations

from pathlib import Path

from veil import data
from veil.cli._demo import FACE_STEP_SECONDS, Steps, _duration, _say, _veil, demo_home
from veil.cli._render import console
from veil.errors import require_extra

# Sizes that keep the whole demo near 7 minutes on 2 CPU cores (_demo.FACE_STEP_SECONDS). The
# noise is fitted once per ALPHA (~23 s each), so the sweep keeps 4 of the seed's 8: up to 0.4
# almost nothing is lost, and 0.8 and 0.95 are the attack's. The attack's decoders (width 48,
# 10 epochs: ~6 s an epoch, three decoders) still rebuild faces from the ALPHA 0.8 activations.
TEST_PER_FOLD, FIT_PER_FOLD, ATTACK_PER_FOLD = 15, 6, 30
SWEEP_ALPHAS = "0.4,0.8,0.9,0.95"
ATTACK_ALPHAS = "0.8,0.95"
ATTACK_EPOCHS, ATTACK_WIDTH = 10, 48


def run_face_demo() -> Path:
    """The face demo, in a new home (returned)."""
    require_extra("torch", "torch", "the demo")
    with demo_home("faces") as home:
        _faces(home)
    console.print(f"Explore: VEIL_HOME={home} veil volume list    (remove it: rm -rf {home})")
    return home


def _faces(home: Path) -> None:
    work = home / "privacy"
    console.print("[bold]veil demo[/bold]: confidential face detection (TR-4928) on generated "
                  f"data, in a home of its own ({home}). It takes about "
                  f"{_duration(sum(FACE_STEP_SECONDS))} on 2 CPU cores.")
    steps = Steps()
    expect = iter(FACE_STEP_SECONDS)

    with steps("A volume for the data, and a synthetic face data set on it in FDDB's layout.",
               "data set", next(expect)):
        _veil("volume", "create", "inference-data", "--label", "purpose=demo")
        _veil("solutions", "face-privacy", "generate", "FDDB", "--volume", "inference-data",
              "--images-per-fold", str(TEST_PER_FOLD), "--fit-per-fold", str(FIT_PER_FOLD),
              "--attack-per-fold", str(ATTACK_PER_FOLD))
    fddb = data.volume_path("inference-data") / "FDDB"

    with steps("The seed's batch job, clean: FaceBoxes (shipped weights) on every fold. The "
               "results go to a results volume, which is snapshotted.", "clean job",
               next(expect)):
        _veil("solutions", "face-privacy", "evaluate", "--volume", "inference-data", "--dataset",
              "FDDB", "--results", "inference-results")

    with steps("Fit the noise at each ALPHA (on FDDB/fit, detector frozen) and score the folds "
               "with it: the seed's accuracy table.", "ALPHA sweep", next(expect)):
        _veil("privacy", "evaluate", "--task", "faces", "--data", str(fddb), "--workdir",
              str(work), "--alphas", SWEEP_ALPHAS)

    with steps("The seed's ALPHA 0.8 job (inference-job-protopia-0.8.yaml), reusing the fitted "
               "noise; results snapshotted beside the clean run's.", "ALPHA 0.8 job",
               next(expect)):
        _veil("solutions", "face-privacy", "evaluate", "--volume", "inference-data", "--dataset",
              "FDDB", "--noisy", "--alpha", "0.8", "--results", "inference-results",
              "--workdir", str(work))

    with steps("Beyond the seed: how much of the image can an attacker who knows the head and "
               "the noise rebuild from what leaves the trusted zone?", "attack", next(expect)):
        _veil("privacy", "attack", "--task", "faces", "--data", str(fddb), "--workdir",
              str(work), "--alphas", ATTACK_ALPHAS, "--ks", "1", "--attack-epochs",
              str(ATTACK_EPOCHS), "--width", str(ATTACK_WIDTH))

    with steps("The results volume's snapshots: one per job, labelled with ALPHA and mAP; each "
               "job is an MLflow run linked to its snapshot; and the seed's Job manifests.",
               "lineage", next(expect)):
        _veil("snapshot", "list", "inference-results")
        last = max(data.list_snapshots("inference-results"), key=lambda s: s.created)
        _veil("lineage", f"inference-results@{last.name}")
        _veil("solutions", "face-privacy", "export", "k8s", str(home / "k8s"), "--dataset",
              "FDDB", "--alphas", "0.8")

    console.print(f"\nPlots: {work / 'evaluate.png'}, {work / 'attack.png'}; image grid: "
                  f"{work / 'attack-grid.png'}")
    _say("Time per step:")
    console.print(steps.table())
