"""The face detector's shipped mechanism weights (issue 17, part 2): each file loads through
veil.privacy._mechanisms.load, stays under 5 MB, runs on a 1024 x 1024 input to the expected
shapes; a damaged file is refused in one line."""

from __future__ import annotations

import shutil

import pytest
import torch

from veil.errors import InvalidArgument
from veil.privacy import _mechanisms as mech
from veil.solutions.face_privacy import _faceboxes, _model
from veil.solutions.face_privacy import _mechanisms as fm

SHIPPED = {"bottleneck": (8, 32, 32), "deep": (128, 32, 32), "adversarial": (128, 32, 32)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_mechanism_loads_and_runs(name):
    path = fm.weights_path(name)
    assert path.is_file(), f"{path} is not shipped"
    assert path.stat().st_size < 5 * 2**20
    model = mech.load(fm.NETWORKS[name], path, name="faceboxes", mechanism=name)
    assert model.mechanism == name and model.mechanism_info["script"].endswith(".py")
    assert not model.training
    assert all(v.dtype == torch.float32 for v in model.state_dict().values()
               if v.is_floating_point())
    with torch.no_grad():
        a = model.forward_head(torch.rand(1, 3, _model.INPUT, _model.INPUT))
        loc, conf = model.forward_tail(a)
    anchors = len(_model.priors(_model.INPUT, torch.device("cpu")))
    assert a.shape == (1, *SHIPPED[name])
    assert loc.shape == (1, anchors, 4) and conf.shape == (1, anchors, 2)
    assert torch.isfinite(loc).all() and torch.isfinite(conf).all()
    assert fm.load_mechanism(name).split == model.split


def test_deep_network_is_faceboxes_laid_out():
    """The "deep" network computes what FaceBoxes computes (same modules, another layout)."""
    net = _faceboxes.faceboxes().eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        want = net(x)
        got = fm.layered(net.head, net.tail)(x)
    for w, g in zip(want, got, strict=True):
        assert torch.equal(w, g)


def test_damaged_file_is_refused_in_one_line(tmp_path):
    src = fm.weights_path("bottleneck")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(InvalidArgument) as e:
        fm.load_mechanism("bottleneck", path=cut)
    assert "\n" not in str(e.value) and str(cut) in str(e.value)

    blob = torch.load(src, weights_only=True)
    key = next(k for k, v in blob["state"].items() if v.is_floating_point())
    blob["state"][key] = blob["state"][key].clone().fill_(float("nan"))
    nan = tmp_path / "nan.pt"
    torch.save(blob, nan)
    with pytest.raises(InvalidArgument, match="NaN") as e:
        fm.load_mechanism("bottleneck", path=nan)
    assert "\n" not in str(e.value)

    other = tmp_path / "other.pt"
    shutil.copy(fm.weights_path("deep"), other)
    with pytest.raises(InvalidArgument, match="holds mechanism 'deep'") as e:
        fm.load_mechanism("bottleneck", path=other)
    assert "\n" not in str(e.value)


def test_unknown_mechanism_is_one_line():
    with pytest.raises(InvalidArgument) as e:
        fm.load_mechanism("nonsense")
    assert "\n" not in str(e.value)
