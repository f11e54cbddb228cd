"""The solutions' bad inputs and damaged files (issue 15, items 4, 8, 9, 12): every numeric
option of their commands and generated job options out of range, data sets whose paths lead
outside them or whose values are beyond what the format and the images allow, label lines
built to crash a parser, and weights files that are damaged, foreign or carry pickled code.
Each is refused in one line (tests/badinput.py: exit code, no traceback, nothing on stdout,
the veil home unchanged, and no run folder or manifest written); `check` reports each problem
with its file and line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")

import torch

from tests.badinput import refused
from veil.cli import main
from veil.errors import InvalidArgument
from veil.solutions.face_privacy import generate as generate_faces
from veil.solutions.face_privacy._fddb import fold_files, read_fddb
from veil.solutions.lane_detection import generate as generate_lanes

BIG = "9" * 400  # a whole number of 400 digits


class _Code:
    """Unpickling this runs a shell command (if anything unpickles it unsafely)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------- the files


def _faces_variant(base: Path, root: Path, edit) -> Path:
    """A copy of `base` with `edit(root, lines, k)` applied to every fold's ellipse list
    (`lines`, edited in place; its first record starts at line index `k` = 0), so no fold of it
    can be read."""
    shutil.copytree(base, root)
    for i in range(1, 11):
        lst, ell = fold_files(root, i)
        lines = ell.read_text().splitlines()
        names = lst.read_text().splitlines()
        edit(root, lines, names)
        ell.write_text("\n".join(lines) + "\n")
        lst.write_text("\n".join(names) + "\n")
    return root


def _rename(new: str):
    def edit(root: Path, lines: list[str], names: list[str]) -> None:
        old = lines[0]
        lines[0] = names[0] = new.format(root=root, old=old)
    return edit


def _ellipse(text: str):
    def edit(root: Path, lines: list[str], names: list[str]) -> None:
        lines[2] = text
    return edit


def _link_outside(outside: Path):
    def edit(root: Path, lines: list[str], names: list[str]) -> None:
        pic = root / "originalPics" / f"{lines[0]}.jpg"
        pic.unlink()
        pic.symlink_to(outside / "originalPics" / f"{lines[0]}.jpg")
    return edit


def _lanes_variant(base: Path, root: Path, line: str | None) -> Path:
    """A copy of `base` whose training labels are the one line `line` (None: an empty file)."""
    shutil.copytree(base, root)
    (root / "label_data_veil.json").write_text("" if line is None else line + "\n")
    return root


def _weights(root: Path, name: str, state: dict, **edits) -> dict[str, Path]:
    """Damaged copies of the state dict `state`: wrong shape, NaN, integers, a tensor missing,
    one too many, pickled code, a list, an empty and a text file."""
    first = next(k for k, v in state.items() if v.dtype.is_floating_point and v.dim() > 1)
    out = {}

    def save(kind: str, obj) -> None:
        out[kind] = root / f"{name}-{kind}.pt"
        torch.save(obj, out[kind])

    save("shape", {**state, first: state[first][..., :1].clone()})
    save("nan", {**state, first: torch.full_like(state[first], float("nan"))})
    save("int", {**state, first: state[first].long()})
    save("missing", {k: v for k, v in state.items() if k != first})
    save("extra", {**state, "bogus.weight": torch.zeros(1)})
    save("code", {**state, first: _Code(root / f"{name}-ran")})
    save("list", list(state.values()))
    out["empty"] = root / f"{name}-empty.pt"
    out["empty"].write_bytes(b"")
    out["text"] = root / f"{name}-text.pt"
    out["text"].write_text("weights, honestly\n")
    out["huge"] = root / f"{name}-huge.pt"  # the real weights and 40 MB of zeros beside them
    torch.save({**state, "padding": torch.zeros(10_000_000)}, out["huge"])
    return out


def build_files(root: Path) -> dict:
    """Under `root`: small good data sets, their damaged variants, damaged weights files and
    predictions (also used by benchmarks/reliability_solutions.py)."""
    from veil.solutions.face_privacy._model import WEIGHTS
    from veil.solutions.lane_detection._model import build

    f: dict = {"root": root}
    faces = f["faces"] = generate_faces(root / "faces", seed=3, images_per_fold=1)
    elsewhere = generate_faces(root / "elsewhere", seed=4, images_per_fold=1)
    shutil.copy(next((faces / "originalPics").rglob("*.jpg")), root / "secret.jpg")
    f["faces_dotdot"] = _faces_variant(faces, root / "f-dotdot", _rename("../../secret"))
    f["faces_abs"] = _faces_variant(faces, root / "f-abs", _rename(str(root / "secret")))
    f["faces_link"] = _faces_variant(faces, root / "f-link", _link_outside(elsewhere))
    f["faces_radii"] = _faces_variant(faces, root / "f-radii",
                                      _ellipse("10000000 10000000 1.5 100 100  1"))
    f["faces_centre"] = _faces_variant(faces, root / "f-centre",
                                       _ellipse("30 20 1.5 1000000000000 1000000000000  1"))
    f["faces_fits"] = _faces_variant(faces, root / "f-fits", _ellipse("5000 4000 1.5 100 100  1"))
    f["faces_nan"] = _faces_variant(faces, root / "f-nan", _ellipse("30 20 1.5 nan 100  1"))

    lanes = f["lanes"] = generate_lanes(root / "lanes", seed=3, train_clips=2, test_clips=1)
    first = json.loads((lanes / "label_data_veil.json").read_text().splitlines()[0])

    def label(**change) -> str:
        d = {**first, **change}
        return json.dumps(d)

    lanes_x = [list(lane) for lane in first["lanes"]]
    lanes_x[0][-1] = 1e308
    lanes_2000 = [list(lane) for lane in first["lanes"]]
    lanes_2000[0][-1] = 2000
    text = label()
    digits = text.replace('"lanes": [[', f'"lanes": [[{BIG}, ', 1)
    digits = digits.replace(f"[{BIG}, {first['lanes'][0][0]}, ", f"[{BIG}, ", 1)
    cases = {
        "dotdot": label(raw_file="../" * 8 + "etc/hostname"),
        "abs": label(raw_file="/etc/hostname"),
        "h1e30": label(h_samples=[10 ** 30, *first["h_samples"][1:]]),
        "x1e308": label(lanes=lanes_x),
        "x2000": label(lanes=lanes_2000),
        "h800": label(h_samples=[*first["h_samples"][:-1], 800]),
        "digits": digits,
        "nested": "[" * 100_000 + "]" * 100_000,
        "hdown": label(h_samples=first["h_samples"][::-1]),
        "empty": None,
    }
    for k, line in cases.items():
        f[f"lanes_{k}"] = _lanes_variant(lanes, root / f"l-{k}", line)
    link = _lanes_variant(lanes, root / "l-link", label())
    pic = link / first["raw_file"]
    pic.unlink()
    pic.symlink_to(root / "secret.jpg")
    f["lanes_link"] = link

    f["face_w"] = _weights(root, "face", torch.load(WEIGHTS, weights_only=True))
    f["lane_w"] = _weights(root, "lane", build("light").state_dict())
    torch.save(build("light").state_dict(), root / "lane-good.pt")
    (root / "a-file").write_text("not a folder\n")
    gt = (lanes / "test_label.json").read_text().splitlines()[0]
    pred = json.loads(gt)
    pred.pop("h_samples")
    pred["run_time"] = 10
    f["gt"] = lanes / "test_label.json"
    preds = {"nested": "[" * 100_000 + "]" * 100_000,
             "negtime": json.dumps({**pred, "run_time": -1}),
             "digits": json.dumps(pred).replace('"lanes": [[', f'"lanes": [[{BIG}, ', 1),
             "abs": json.dumps({**pred, "raw_file": "/etc/hostname"}),
             "empty": ""}
    for k, line in preds.items():
        f[f"pred_{k}"] = root / f"pred-{k}.json"
        f[f"pred_{k}"].write_text(line + "\n" if line else "")
    return f


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    return build_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VEIL_DRIVER", "copy")
    monkeypatch.delenv("VEIL_DATA_DIR", raising=False)
    main(["volume", "list"])  # the home exists before the cases, as it would for a user
    return tmp_path / "home"


# ---------------------------------------------------------------------- the table

EVAL = ["solutions", "face-privacy", "evaluate", "--dataset", "{faces}"]
TRAIN = ["train", "lane-detection", "--data", "{lanes}", "--out", "{out}", "--batch-size", "1",
         "--epochs", "1"]
FGEN = ["solutions", "face-privacy", "generate"]
LGEN = ["solutions", "lane-detection", "generate"]
FK8S = ["solutions", "face-privacy", "export", "k8s", "{out}"]
LK8S = ["solutions", "lane-detection", "export", "k8s", "{out}"]
INFER = ["solutions", "face-privacy", "infer", "{image}", "--server", "nowhere"]
SCORE = ["solutions", "lane-detection", "score"]
SAFE = "torch's safe loading refused it"

CASES = [
    # face-privacy evaluate: options
    ([*EVAL, "--batch-size", "0"], "--batch-size must be a whole number in [1, 64], not 0"),
    ([*EVAL, "--batch-size", "-4"], "--batch-size must be"),
    ([*EVAL, "--batch-size", "65"], "--batch-size must be"),
    ([*EVAL, "--batch-size", BIG], "(400 digits)"),
    ([*EVAL, "--noisy", "--alpha", "nan"], "--alpha must be a finite number"),
    ([*EVAL, "--noisy", "--alpha", "inf"], "--alpha must be a finite number"),
    ([*EVAL, "--noisy", "--alpha", "-0.5"], "--alpha must be in [0, 0.999]"),
    ([*EVAL, "--noisy", "--alpha", "1.5"], "--alpha must be in [0, 0.999]"),
    ([*EVAL, "--seed", "-1"], "--seed must be a whole number in [0, 4294967295]"),
    ([*EVAL, "--seed", str(2 ** 32)], "--seed must be"),
    ([*EVAL, "--device", "tpu"], "device"),
    ([*EVAL, "--noisy", "--alpha", "0.5", "--workdir", "{root}/a-file"], "not a folder"),
    ([*EVAL, "--noisy", "--alpha", "0.5", "--obfuscator", "{root}/none.pt"], "no saved obfuscator"),
    # face-privacy evaluate: data sets (item 4 and 8)
    ([*EVAL[:-1], "{faces_dotdot}"], "leads outside the data set"),
    ([*EVAL[:-1], "{faces_abs}"], "leads outside the data set"),
    ([*EVAL[:-1], "{faces_link}"], "leads outside the data set"),
    ([*EVAL[:-1], "{faces_radii}"], "FDDB-fold-01-ellipseList.txt:3: not an ellipse of an "
                                    "image"),
    ([*EVAL[:-1], "{faces_centre}"], "not an ellipse of an image"),
    ([*EVAL[:-1], "{faces_fits}"], "the ellipse does not fit its"),
    ([*EVAL[:-1], "{faces_nan}"], "expected 'major_radius"),
    ([*EVAL[:-1], "{root}"], "not an FDDB data set"),
    # face-privacy evaluate: weights files
    ([*EVAL, "--weights", "{face_w[code]}"], SAFE),
    ([*EVAL, "--weights", "{face_w[list]}"], "not a state dict"),
    ([*EVAL, "--weights", "{face_w[empty]}"], "is not a torch FaceBoxes weights file"),
    ([*EVAL, "--weights", "{face_w[text]}"], "is not a torch FaceBoxes weights file"),
    ([*EVAL, "--weights", "{face_w[shape]}"], "the FaceBoxes weights needs"),
    ([*EVAL, "--weights", "{face_w[nan]}"], "holds NaN or infinite values"),
    ([*EVAL, "--weights", "{face_w[int]}"], "holds torch.int64"),
    ([*EVAL, "--weights", "{face_w[missing]}"], "1 missing"),
    ([*EVAL, "--weights", "{face_w[extra]}"], "1 not in the model (first: bogus.weight)"),
    ([*EVAL, "--weights", "{face_w[huge]}"], "bytes, more than FaceBoxes weights can be"),
    ([*EVAL, "--weights", "{lane_w[missing]}"], "does not fit the FaceBoxes weights"),
    ([*EVAL, "--weights", "{root}"], "no FaceBoxes weights"),
    # face-privacy generate
    ([*FGEN, "{out}", "--images-per-fold", "0"], "--images-per-fold must be a whole number in "
                                                 "[1, 100000], not 0"),
    ([*FGEN, "{out}", "--images-per-fold", "-1"], "--images-per-fold must be"),
    ([*FGEN, "{out}", "--images-per-fold", "100001"], "--images-per-fold must be"),
    ([*FGEN, "{out}", "--fit-per-fold", "-1"], "--fit-per-fold must be"),
    ([*FGEN, "{out}", "--attack-per-fold", BIG], "(400 digits)"),
    ([*FGEN, "{out}", "--seed", "-1"], "--seed must be"),
    ([*FGEN, "{faces}"], "is not empty"),
    ([*FGEN, "{root}/a-file/x"], "is not a folder"),
    ([*FGEN, "x", "--volume", "newvol", "--images-per-fold", "0"], "--images-per-fold"),
    ([*FGEN, "/abs", "--volume", "newvol"], "leads outside volume"),
    ([*FGEN, "../x", "--volume", "newvol"], "leads outside volume"),
    ([*FGEN, "x", "--volume", "Bad Name"], "volume name"),
    # face-privacy export k8s
    ([*FK8S, "--alphas", "5,-1"], "ALPHA must be in [0, 0.999]"),
    ([*FK8S, "--alphas", "nan"], "ALPHA must be"),
    ([*FK8S, "--alphas", "0.5,x"], "--alphas must be numbers"),
    ([*FK8S, "--alphas", "0.5,0.50"], "given twice"),
    ([*FK8S, "--alphas", "0.5,,0.6"], "empty value"),
    ([*FK8S, "--alphas", ""], "empty value"),
    ([*FK8S, "--alphas", "0,0.8"], "ALPHA 0 is the raw job"),
    ([*FK8S, "--batch-size", "0"], "--batch-size must be"),
    ([*FK8S, "--noisy", "--alpha", "nan"], "--alpha must be a finite number"),
    ([*FK8S, "--data", "../../etc"], "leads outside the data PVC"),
    ([*FK8S, "--gpus", "-1"], "--gpus"),
    # face-privacy infer and export-models
    ([*INFER, "--timeout", "nan"], "--timeout must be a number of seconds in (0, 86400]"),
    ([*INFER, "--timeout", "0"], "--timeout must be"),
    ([*INFER, "--timeout", "-5"], "--timeout must be"),
    ([*INFER, "--threshold", "1.5"], "--threshold must be in [0, 1]"),
    ([*INFER, "--threshold", "nan"], "--threshold must be"),
    ([*INFER, "--noisy", "--alpha", "2", "--dataset", "{faces}"], "ALPHA must be"),
    ([*INFER, "--noisy", "--alpha", "nan", "--dataset", "{faces}"], "ALPHA must be"),
    ([*INFER, "--protocol", "ftp"], "--protocol must be http or grpc"),
    ([*INFER, "--out", "{root}/a-file"], "is not a folder"),
    (["solutions", "face-privacy", "infer", "{root}/none.jpg", "--server", "x"],
     "no image file"),
    (["solutions", "face-privacy", "export-models", "--max-batch-size", "0"],
     "--max-batch-size must be a whole number in [1, 1024]"),
    (["solutions", "face-privacy", "export-models", "--max-batch-size", "100000"],
     "--max-batch-size must be"),
    (["solutions", "face-privacy", "export-models", "--weights", "{face_w[nan]}"], "NaN"),
    (["solutions", "face-privacy", "export-models", "--noisy-weights", "{face_w[code]}"],
     SAFE),
    # lane-detection train: options
    ([*TRAIN, "--batch-size", "0"], "--batch-size must be a whole number in [1, 4096], not 0"),
    ([*TRAIN, "--batch-size", "-1"], "--batch-size must be"),
    ([*TRAIN, "--val-batch-size", "0"], "--val-batch-size must be"),
    ([*TRAIN, "--val-every", "-1"], "--val-every must be a whole number >= 0, not -1"),
    ([*TRAIN, "--epochs", "0"], "--epochs must be"),
    ([*TRAIN, "--epochs", BIG], "(400 digits)"),
    ([*TRAIN, "--lr", "nan"], "--lr must be a finite number"),
    ([*TRAIN, "--lr", "0"], "--lr must be in (0, 1]"),
    ([*TRAIN, "--lr", "-1"], "--lr must be in (0, 1]"),
    ([*TRAIN, "--lr", "1e300"], "--lr must be in (0, 1]"),
    ([*TRAIN, "--num-workers", "-1"], "--num-workers must be"),
    ([*TRAIN, "--threads", "0"], "--threads must be"),
    ([*TRAIN, "--processes", "0"], "--processes must be"),
    ([*TRAIN, "--processes", "100000"], "--processes must be"),
    ([*TRAIN, "--processes", "1000"], "CPUs, one per replica at most"),
    ([*TRAIN, "--model", "foo"], "--model must be one of light, scnn"),
    ([*TRAIN, "--seed", "-1"], "--seed must be"),
    ([*TRAIN, "--device", "tpu"], "--device tpu"),
    ([*TRAIN[:3], "{lanes}", "--out", "{out}", "--epochs", "1"], "fewer than one batch"),
    # lane-detection train: data sets (item 4, 8, 9)
    ([*TRAIN[:3], "{lanes_dotdot}", *TRAIN[4:]], "label_data_veil.json:1: raw_file "),
    ([*TRAIN[:3], "{lanes_abs}", *TRAIN[4:]], "leads outside the data set"),
    ([*TRAIN[:3], "{lanes_link}", *TRAIN[4:]], "leads outside the data set"),
    ([*TRAIN[:3], "{lanes_h1e30}", *TRAIN[4:]], "h_samples must be rows of the frame"),
    ([*TRAIN[:3], "{lanes_h800}", *TRAIN[4:]], "h_samples must be rows of the frame, 0 to 719, "
                                               "not 800"),
    ([*TRAIN[:3], "{lanes_hdown}", *TRAIN[4:]], "h_samples must increase"),
    ([*TRAIN[:3], "{lanes_x1e308}", *TRAIN[4:]], "lane 0 has x 1e+308: not -2 (no point)"),
    ([*TRAIN[:3], "{lanes_x2000}", *TRAIN[4:]], "lane 0 has x 2000: not -2 (no point) or a "
                                                "column of the frame (up to 1280)"),
    ([*TRAIN[:3], "{lanes_digits}", *TRAIN[4:]], "(400 digits) that is not a number"),
    ([*TRAIN[:3], "{lanes_nested}", *TRAIN[4:]], "label_data_veil.json:1: not a label: nested "
                                                 "too deeply"),
    ([*TRAIN[:3], "{lanes_empty}", *TRAIN[4:]], "no labels (the file is empty)"),
    # lane-detection train: --init
    ([*TRAIN, "--init", "{lane_w[code]}"], SAFE),
    ([*TRAIN, "--init", "{lane_w[nan]}"], "holds NaN or infinite values"),
    ([*TRAIN, "--init", "{lane_w[shape]}"], "has shape"),
    ([*TRAIN, "--init", "{lane_w[int]}"], "holds torch.int64"),
    ([*TRAIN, "--init", "{lane_w[list]}"], "not a state dict"),
    ([*TRAIN, "--init", "{lane_w[huge]}"], "bytes, more than light lane model weights can be"),
    ([*TRAIN, "--init", "{lane_w[empty]}"], "is not a torch"),
    ([*TRAIN, "--init", "{face_w[missing]}"], "light lane model weights"),  # 4 MB: too big
    ([*TRAIN, "--init", "{lane_w[missing]}", "--model", "scnn"], "does not fit the scnn"),
    ([*TRAIN, "--init", "{root}/none.pt"], "no such file"),
    # lane-detection generate
    ([*LGEN, "{out}", "--train-clips", "-1"], "--train-clips must be a whole number in "
                                              "[0, 100000], not -1"),
    ([*LGEN, "{out}", "--test-clips", "100001"], "--test-clips must be"),
    ([*LGEN, "{out}", "--train-clips", "0", "--test-clips", "0"], "nothing to write"),
    ([*LGEN, "{out}", "--seed", "-1"], "--seed must be"),
    ([*LGEN, "{out}", "--seed", BIG], "(400 digits)"),
    ([*LGEN, "{lanes}"], "is not empty"),
    ([*LGEN, "y", "--volume", "newvol", "--seed", "-3"], "--seed must be"),
    # lane-detection export k8s
    ([*LK8S, "--size", "abc"], "--size must be a storage size such as 100Gi"),
    ([*LK8S, "--size", "0Gi"], "--size must be"),
    ([*LK8S, "--size", "-1Gi"], "--size must be"),
    ([*LK8S, "--size", "9" * 30 + "Ei"], "--size must be"),
    ([*LK8S, "--data", "../x"], "leads outside the data PVC"),
    ([*LK8S, "--batch-size", "0"], "--batch-size must be"),
    ([*LK8S, "--lr", "nan"], "--lr must be a finite number"),
    ([*LK8S, "--processes", "0"], "--processes must be"),
    ([*LK8S, "--val-every", "-1"], "--val-every must be"),
    ([*LK8S, "--seed", "-1"], "--seed must be"),
    # lane-detection score
    ([*SCORE, "{pred_nested}", "{gt}"], "nested too deeply"),
    ([*SCORE, "{pred_negtime}", "{gt}"], "run_time must be a number of milliseconds >= 0"),
    ([*SCORE, "{pred_digits}", "{gt}"], "(400 digits) that is not a number"),
    ([*SCORE, "{pred_abs}", "{gt}"], "leads outside the data set"),
    ([*SCORE, "{pred_empty}", "{gt}"], "no predictions (the file is empty)"),
    ([*SCORE, "{gt}", "{lanes_h1e30}/label_data_veil.json"], "h_samples must be rows"),
]


def _ids(case) -> str:
    return " ".join(a if len(a) < 40 else a[:12] + "..." for a in case[0])


@pytest.mark.parametrize(("argv", "match"), CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_is_refused_in_one_line(capsys, home, files, tmp_path, argv, match):
    out = tmp_path / "out"
    image = next((files["faces"] / "originalPics").rglob("*.jpg"))
    argv = [a.format(**files, out=out, image=image) for a in argv]
    refused(capsys, argv, match, home=home, also=lambda: out.exists())


def test_no_pickled_code_ran(files):
    """Loading the files above ran none of the code pickled into them."""
    assert not (files["root"] / "face-ran").exists()
    assert not (files["root"] / "lane-ran").exists()


# ---------------------------------------------------------------------- check


FACE_CHECKS = [
    ("faces_dotdot", "FDDB-fold-{i:02d}.txt:1: image name '../../secret' leads outside"),
    ("faces_abs", "FDDB-fold-{i:02d}.txt:1: image name '/"),
    ("faces_link", "FDDB-fold-{i:02d}-ellipseList.txt:1: image 'synth/"),
    ("faces_radii", "FDDB-fold-{i:02d}-ellipseList.txt:3: not an ellipse of an image"),
    ("faces_centre", "FDDB-fold-{i:02d}-ellipseList.txt:3: not an ellipse of an image"),
    ("faces_fits", "FDDB-fold-{i:02d}-ellipseList.txt:3: the ellipse does not fit its"),
]


@pytest.mark.parametrize(("variant", "match"), FACE_CHECKS)
def test_face_check_names_file_and_line_of_each_problem(capsys, files, variant, match):
    assert main(["solutions", "face-privacy", "check", str(files[variant])]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 10 and "Traceback" not in err, err
    for i, line in enumerate(lines, start=1):
        assert line.startswith(f"FDDB-fold-{i}: {files[variant]}/FDDB-folds/"), line
        assert match.format(i=i) in line, line
    assert "10 problem(s)" in out


LANE_CHECKS = [
    ("lanes_dotdot", ":1: raw_file '../../../../../../../../etc/hostname' leads outside"),
    ("lanes_abs", ":1: raw_file '/etc/hostname' leads outside the data set"),
    ("lanes_link", ":1: raw_file clips/"),
    ("lanes_h1e30", ":1: h_samples must be rows of the frame, 0 to 65534, not "
                    "100000000000... (31 digits)"),
    ("lanes_x1e308", ":1: lane 0 has x 1e+308: not -2 (no point)"),
    ("lanes_x2000", ":1: lane 0 has x 2000: not -2 (no point) or a column of the frame (up to "
                    "1280)"),
    ("lanes_h800", ":1: h_samples must be rows of the frame, 0 to 719, not 800"),
    ("lanes_digits", ":1: lane 0 has x 999999999999... (400 digits) that is not a number"),
    ("lanes_nested", ":1: not a label: nested too deeply"),
    ("lanes_hdown", ":1: h_samples must increase"),
    ("lanes_empty", ": no labels (the file is empty)"),
]


@pytest.mark.parametrize(("variant", "match"), LANE_CHECKS)
def test_lane_check_names_file_and_line_of_each_problem(capsys, files, variant, match):
    assert main(["solutions", "lane-detection", "check", str(files[variant])]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{files[variant]}/label_data_veil.json"), lines[0]
    assert match in lines[0]
    assert "1 problem(s)" in out


def test_a_good_data_set_still_checks_clean(capsys, files):
    assert main(["solutions", "face-privacy", "check", str(files["faces"])]) == 0
    assert main(["solutions", "lane-detection", "check", str(files["lanes"])]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    # a link that stays inside the data set is fine
    root = files["root"] / "lanes-inner-link"
    shutil.copytree(files["lanes"], root, symlinks=True)
    raw = json.loads((root / "label_data_veil.json").read_text().splitlines()[0])["raw_file"]
    (root / "elsewhere.jpg").write_bytes((root / raw).read_bytes())
    (root / raw).unlink()
    (root / raw).symlink_to(root / "elsewhere.jpg")
    assert main(["solutions", "lane-detection", "check", str(root)]) == 0
    # so is a fit/ set whose pictures are the data set's own, through a link
    root = files["root"] / "faces-with-fit"
    shutil.copytree(files["faces"], root)
    shutil.copytree(root / "FDDB-folds", root / "fit" / "FDDB-folds")
    (root / "fit" / "originalPics").symlink_to("../originalPics")
    capsys.readouterr()
    assert main(["solutions", "face-privacy", "check", str(root)]) == 0
    assert "fit/ 10 images; 0 problem(s)" in capsys.readouterr().out


# ---------------------------------------------------------------------- the library


def test_scoring_a_huge_ellipse_allocates_nothing_large():
    """The 5.68 PiB allocation of the audit: an ellipse built in code (not read from a file)
    is refused, or scored in bands of rows, never allocated whole."""
    from veil.solutions.face_privacy import Ellipse
    from veil.solutions.face_privacy._metrics import discrete_roc, ellipse_box_overlap

    far = Ellipse(30, 20, 1.5, 1e12, 1e12)
    assert ellipse_box_overlap(far, (0, 0, 100, 100)) == 0.0
    with pytest.raises(InvalidArgument, match="too large to score"):
        ellipse_box_overlap(Ellipse(1e7, 1e7, 1.5, 100, 100), (0, 0, 100, 100))
    import numpy as np

    dets = [(np.array([[60.0, 40.0, 140.0, 160.0]]), np.array([0.9]))]
    big = Ellipse(2000, 1500, 1.5, 100, 100)  # 4000 x 3000 pixels: counted in bands
    roc = discrete_roc(dets, [[big]])
    assert roc.faces == 1 and roc.rate_at(1000) == 0.0


def test_reading_without_images_keeps_the_formats_bounds(files, tmp_path):
    root = _faces_variant(files["faces"], tmp_path / "f", _ellipse("5000 4000 1.5 100 100  1"))
    for img in (root / "originalPics").rglob("*.jpg"):
        img.unlink()
    assert len(read_fddb(root, images=False).images) == 10  # fits JPEG's bounds, not checked
    with pytest.raises(InvalidArgument, match="missing image"):
        read_fddb(root)


def test_a_kubernetes_replica_refuses_a_bad_environment():
    from veil.solutions.lane_detection._train import TrainConfig
    from veil.train import from_env

    env = {"DATA_DIR": "/mnt/d", "OUT_DIR": "/mnt/o"}
    for name, value, match in [("BATCH_SIZE", "0", "BATCH_SIZE must be"),
                               ("LR", "nan", "LR must be a finite number"),
                               ("VAL_EVERY", "-1", "VAL_EVERY must be"),
                               ("NPROC", "0", "NPROC must be"),
                               ("MODEL", "resnet", "MODEL must be one of light, scnn")]:
        with pytest.raises(InvalidArgument, match=match):
            from_env(TrainConfig, {**env, name: value})
    assert from_env(TrainConfig, env).batch_size == 8


def test_a_checkpoint_is_accepted_as_init(files):
    from veil.solutions.lane_detection._model import build
    from veil.train import load_weights

    state = torch.load(files["root"] / "lane-good.pt", weights_only=True)
    ckpt = files["root"] / "checkpoint.pt"
    torch.save({"model": state, "epoch": 3}, ckpt)
    model = load_weights(build("light"), ckpt, "light lane model weights",
                         checkpoint_key="model")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with pytest.raises(InvalidArgument, match="not a state dict"):
        load_weights(build("light"), ckpt, "light lane model weights")
