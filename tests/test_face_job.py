"""The face-privacy batch job's checks, before a run is recorded."""

from __future__ import annotations

import pytest
import torch

from veil.errors import NotFound
from veil.privacy import Obfuscator, get_task
from veil.solutions.face_privacy._job import EvaluateConfig, check
from veil.solutions.face_privacy._synth import generate
from veil.train import JobContext


def test_evaluate_takes_the_folder_veil_privacy_fit_saves(tmp_path):
    data = generate(tmp_path / "FDDB", seed=1, images_per_fold=1, fit_per_fold=0)
    # any saved obfuscator has the layout (one for the shapes model is quick to make); whether
    # it suits FaceBoxes is checked when the job loads it with the model
    shapes = get_task("shapes")
    obf = Obfuscator(0.8, epochs=0).fit(shapes.load_model(), [(torch.rand(2, 3, 32, 32), None)],
                                        shapes.task_loss)
    saved = obf.save(tmp_path / "obfuscator")  # a folder: config.json and tensors.pt
    ctx = JobContext("faces-alpha-0.8", "run", data, None, None)
    check(EvaluateConfig(noisy=True, alpha=0.8, obfuscator=saved), ctx)
    with pytest.raises(NotFound, match="no saved obfuscator"):
        check(EvaluateConfig(noisy=True, alpha=0.8, obfuscator=tmp_path / "missing"), ctx)
