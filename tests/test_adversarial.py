"""veil.privacy._adversarial and the shapes mechanisms' shipped weights (issue 17, part 2)."""

from __future__ import annotations

import pytest
import torch

from veil.errors import InvalidArgument
from veil.privacy import _mechanisms as mech
from veil.privacy._adversarial import AdversarialConfig, train_adversarial
from veil.privacy._shapes import SHAPES_WEIGHTS, shapes_cnn, shapes_images, split_at

WEIGHTS = SHAPES_WEIGHTS.parent
SHIPPED = {"bottleneck": 8, "adversarial": 8, "deep": None}  # mechanism -> bottleneck channels
# Clean accuracy on 400 generated images (seed 7); the shipped files measure above these
# (docs: the train_shapes_mechanisms.py --measure table).
FLOORS = {"bottleneck": 0.90, "adversarial": 0.90, "deep": 0.90}


def tiny_model(channels: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return mech.with_bottleneck(split_at(shapes_cnn(tail="light"), "relu4", name="tiny"),
                                channels, 64)


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = shapes_images(n, seed)
    return torch.from_numpy(xs).permute(0, 3, 1, 2).float().div_(255), torch.from_numpy(ys)


def test_a_tiny_adversarial_run_changes_the_head():
    model = tiny_model()
    x, y = images(16, 1)
    x = x[:, :, :16, :16]  # a quarter of the work: the loop takes any image side
    labels = {"position": torch.arange(16) % 9, "texture": torch.arange(16) % 3}
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    lines = []
    history = train_adversarial(
        model, x, y, labels,
        AdversarialConfig(epochs=1, batch_size=8, lambda_pair=0.1, decoder_width=8,
                          probe_width=8, attributes={"position": 9, "texture": 3}),
        pairs=(x[:4], x[4:8]), log=lines.append)
    assert len(history) == 1 and len(lines) == 1 and "position_acc" in lines[0]
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    after = model.head.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before
               if before[k].is_floating_point())
    assert not model.training


def test_the_adversarial_loop_refuses_what_it_cannot_train_on():
    model = tiny_model()
    x, y = images(4, 1)
    with pytest.raises(InvalidArgument, match="no labels for attribute"):
        train_adversarial(model, x, y, {}, AdversarialConfig(attributes={"colour": 8}))
    with pytest.raises(InvalidArgument, match="needs moved pairs"):
        train_adversarial(model, x, y, {}, AdversarialConfig(lambda_pair=1.0))


def network() -> torch.nn.Sequential:
    return shapes_cnn(tail="light")


def test_a_mechanism_file_round_trips_and_a_damaged_one_is_refused(tmp_path):
    model = tiny_model(3)
    config = {"split": "relu4", "channels": 3, "in_channels": 64}
    path = mech.save(model, "adversarial", config, tmp_path / "m.pt", epochs=1, seconds=0,
                     command="test")
    back = mech.load(network, path, name="tiny", mechanism="adversarial")
    assert back.mechanism_info["command"] == "test"
    x, _ = images(4, 2)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-6)
    blob = path.read_bytes()
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(InvalidArgument) as e:
        mech.load(network, damaged, name="tiny")
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def generated():
    return images(400, 7)


@pytest.mark.parametrize("mechanism", sorted(SHIPPED))
def test_the_shipped_mechanisms_load_and_classify(mechanism, generated):
    path = WEIGHTS / f"shapes_{mechanism}.pt"
    assert path.stat().st_size < 5 * 10**6
    model = mech.load(shapes_cnn, path, name="shapes-cnn", mechanism=mechanism)
    assert model.mechanism_info["command"].startswith("scripts/train_shapes_mechanisms.py")
    if SHIPPED[mechanism]:
        assert model.split.endswith(f"+bottleneck{SHIPPED[mechanism]}")
    x, y = generated
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc >= FLOORS[mechanism], f"{mechanism}: clean accuracy {acc:.3f}"
