"""Criteo-layout data for the CTR solution: the synthetic generator and the block reader."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from veil.errors import InvalidArgument, NotFound
from veil.solutions.ctr import _criteo, _synth
from veil.solutions.ctr._criteo import BadLine

ROWS, TEST_ROWS = 3_000, 1_000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synth.generate(tmp_path_factory.mktemp("criteo"), seed=7,
                           sizes={"rows": ROWS, "test_rows": TEST_ROWS})


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _good_line(data: Path, number: int = 1) -> bytes:
    return (data / "day_15").read_bytes().split(b"\n")[number - 1]


def _with_line(tmp_path: Path, data: Path, number: int, line: bytes) -> Path:
    """A copy of the first 50 rows with line `number` replaced."""
    lines = (data / "day_15").read_bytes().split(b"\n")[:50]
    lines[number - 1] = line
    path = tmp_path / "day_15"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, total: int, description: str) -> None:
        self.calls.append(("start", total, description))

    def advance(self, n: int = 1) -> None:
        self.calls.append(("advance", n))


# --- generator ---------------------------------------------------------------------------


def test_generate_writes_both_files_with_the_requested_rows_and_a_manifest(data: Path) -> None:
    assert _criteo.count_rows(data / "day_15") == ROWS
    assert _criteo.count_rows(data / "day_15_test") == TEST_ROWS
    manifest = json.loads((data / "dataset.json").read_text())
    assert manifest["format"] == "criteo"
    assert manifest["seed"] == 7
    assert manifest["sizes"] == {"rows": ROWS, "test_rows": TEST_ROWS}
    assert manifest["click_rate"] == 0.25
    assert abs(manifest["realised_click_rate"]["train"] - 0.25) < 0.04
    assert not list(data.glob(".*"))  # no temporary files left


def test_every_line_has_the_real_criteo_layout(data: Path) -> None:
    for line in (data / "day_15").read_bytes().splitlines()[:200]:
        fields = line.split(b"\t")
        assert len(fields) == 40
        assert fields[0] in (b"0", b"1")
        assert all(f == b"" or int(f) == int(f) for f in fields[1:14])
        assert all(f == b"" or (len(f) == 8 and int(f, 16) >= 0 and f == f.lower())
                   for f in fields[14:])


def test_the_oracle_reports_an_attainable_level_clearly_above_chance(data: Path) -> None:
    oracle = json.loads((data / "dataset.json").read_text())["oracle"]
    assert oracle["auc"] > 0.7
    assert 0.5 < oracle["ints_only"]["auc"] < oracle["auc"]
    assert oracle["accuracy"] >= oracle["majority_accuracy"]
    assert 0 < oracle["logloss"] < oracle["ints_only"]["logloss"]


def test_the_same_seed_gives_byte_identical_files(data: Path, tmp_path: Path) -> None:
    sizes = {"rows": ROWS, "test_rows": TEST_ROWS}
    again = _synth.generate(tmp_path / "again", seed=7, sizes=sizes)
    for name in ("day_15", "day_15_test", "dataset.json"):
        assert _digest(again / name) == _digest(data / name)
    other = _synth.generate(tmp_path / "other", seed=8, sizes={"rows": ROWS, "test_rows": 10})
    assert _digest(other / "day_15") != _digest(data / "day_15")


def test_training_rows_do_not_depend_on_the_test_size(data: Path, tmp_path: Path) -> None:
    small = _synth.generate(tmp_path / "s", seed=7, sizes={"rows": ROWS, "test_rows": 10})
    assert _digest(small / "day_15") == _digest(data / "day_15")
    assert _digest(small / "day_15_test") != _digest(data / "day_15_test")


def test_the_click_rate_follows_the_request(tmp_path: Path) -> None:
    generated = _synth.generate(tmp_path, seed=1, sizes={"rows": 20_000, "test_rows": 100},
                                click_rate=0.04)
    block = _criteo.read(generated / "day_15", cats=False)
    assert abs(block.label.mean() - 0.04) < 0.01


def test_generate_reports_progress_in_rows(tmp_path: Path) -> None:
    progress = Recorder()
    _synth.generate(tmp_path, sizes={"rows": 300, "test_rows": 50}, progress=progress)
    assert ("start", 300, "Writing day_15") in progress.calls
    assert ("start", 50, "Writing day_15_test") in progress.calls
    assert sum(c[1] for c in progress.calls if c[0] == "advance") == 350


@pytest.mark.parametrize("sizes, click_rate", [({"rows": 0}, 0.25), ({"lines": 5}, 0.25),
                                               ({"rows": 10}, 1.5)])
def test_generate_refuses_bad_sizes_and_rates_in_one_line(tmp_path: Path, sizes: dict,
                                                          click_rate: float) -> None:
    with pytest.raises(InvalidArgument) as err:
        _synth.generate(tmp_path, sizes=sizes, click_rate=click_rate)
    assert "\n" not in str(err.value)


def test_an_interrupted_write_leaves_no_file(tmp_path: Path) -> None:
    class Interrupt(Recorder):
        def advance(self, n: int = 1) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _synth.generate(tmp_path, sizes={"rows": 200, "test_rows": 10}, progress=Interrupt())
    assert list(tmp_path.iterdir()) == []


# --- reader ------------------------------------------------------------------------------


def test_reading_gives_labels_counts_and_categories_with_missing_as_nan_and_minus_one(
        data: Path) -> None:
    block = _criteo.read(data / "day_15")
    assert len(block) == ROWS and block.skipped == 0
    assert block.label.dtype == np.int8 and set(np.unique(block.label)) == {0, 1}
    assert block.ints.dtype == np.float32 and block.ints.shape == (ROWS, 13)
    assert block.cats is not None and block.cats.dtype == np.int64
    assert block.cats.shape == (ROWS, 26)
    assert 0.2 < block.label.mean() < 0.3
    missing = np.isnan(block.ints).mean(axis=0)
    assert missing[0] > 0.3 and missing[11] > 0.6 and missing[1] == 0  # I1, I12 often missing
    assert (block.ints[:, 1] < 0).any()  # I2 has negative values, as in the real logs
    assert (block.cats == -1).any() and block.cats.max() < 2 ** 32
    first = _good_line(data).split(b"\t")
    assert block.label[0] == int(first[0])
    for j, f in enumerate(first[1:14]):
        assert (np.isnan(block.ints[0, j]) if f == b"" else block.ints[0, j] == int(f))
    assert [(-1 if f == b"" else int(f, 16)) for f in first[14:]] == block.cats[0].tolist()


def test_without_categories_only_labels_and_counts_are_read(data: Path) -> None:
    full = _criteo.read(data / "day_15")
    block = _criteo.read(data / "day_15", cats=False)
    assert block.cats is None
    assert np.array_equal(block.ints, full.ints, equal_nan=True)


def test_blocks_hold_at_most_block_rows_and_together_all_rows(data: Path) -> None:
    sizes = [len(b) for b in _criteo.read_blocks(data / "day_15", block_rows=700)]
    assert sizes == [700, 700, 700, 700, 200]


def test_limit_stops_after_that_many_rows(data: Path) -> None:
    block = _criteo.read(data / "day_15", limit=1234, block_rows=500)
    assert len(block) == 1234
    assert np.array_equal(block.cats, _criteo.read(data / "day_15").cats[:1234])


def test_a_gzip_file_reads_the_same_as_the_plain_one_and_is_found_by_the_plain_name(
        data: Path, tmp_path: Path) -> None:
    packed = tmp_path / "day_15.gz"
    with gzip.open(packed, "wb") as f:
        f.write((data / "day_15").read_bytes())
    plain = _criteo.read(data / "day_15")
    for path in (packed, tmp_path / "day_15"):
        block = _criteo.read(path, block_rows=1000)
        assert np.array_equal(block.label, plain.label)
        assert np.array_equal(block.ints, plain.ints, equal_nan=True)
        assert np.array_equal(block.cats, plain.cats)
    assert _criteo.count_rows(packed) == ROWS
    assert _criteo.byte_ranges(packed, 4) == [(0, None)]
    with pytest.raises(InvalidArgument, match="gzip"):
        _criteo.read(packed, start=10)


def test_gzip_is_told_by_its_magic_bytes_not_its_name(data: Path, tmp_path: Path) -> None:
    odd = tmp_path / "day_15"
    odd.write_bytes(gzip.compress((data / "day_15_test").read_bytes(), mtime=0))
    assert len(_criteo.read(odd)) == TEST_ROWS


def test_the_generator_writes_gzip_on_request(tmp_path: Path) -> None:
    generated = _synth.generate(tmp_path, sizes={"rows": 500, "test_rows": 50}, gzip=True)
    assert (generated / "day_15.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert len(_criteo.read(generated / "day_15")) == 500


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 64])
def test_byte_ranges_partition_the_file_exactly(data: Path, parts: int) -> None:
    path = data / "day_15"
    ranges = _criteo.byte_ranges(path, parts)
    assert 1 <= len(ranges) <= parts and ranges[0][0] == 0 and ranges[-1][1] is None
    blocks = [_criteo.read(path, start=s, end=e, block_rows=333) for s, e in ranges]
    whole = _criteo.read(path)
    assert sum(len(b) for b in blocks) == ROWS
    assert np.array_equal(np.concatenate([b.cats for b in blocks]), whole.cats)


def test_any_byte_boundaries_read_each_row_exactly_once(data: Path) -> None:
    path = data / "day_15"
    size = path.stat().st_size
    cuts = [0, 1, 250, 251, 9_999, size // 2, size - 1, size]
    blocks = [_criteo.read(path, start=s, end=e) for s, e in itertools.pairwise(cuts)]
    whole = _criteo.read(path)
    assert np.array_equal(np.concatenate([b.label for b in blocks]), whole.label)
    assert np.array_equal(np.concatenate([b.cats for b in blocks]), whole.cats)


def test_reading_reports_progress_in_mebibytes(data: Path) -> None:
    progress = Recorder()
    _criteo.read(data / "day_15", progress=progress)
    assert progress.calls[0] == ("start", 1, "Reading day_15, MiB")
    assert sum(c[1] for c in progress.calls if c[0] == "advance") == 1


def test_a_last_line_without_newline_and_crlf_line_ends_are_read(data: Path,
                                                                  tmp_path: Path) -> None:
    lines = (data / "day_15").read_bytes().split(b"\n")[:20]
    path = tmp_path / "day_15"
    path.write_bytes(b"\n".join(lines[:19]) + b"\n" + lines[19])
    assert len(_criteo.read(path)) == 20
    path.write_bytes(b"\r\n".join(lines))
    block = _criteo.read(path)
    assert len(block) == 20
    assert np.array_equal(block.cats, _criteo.read(data / "day_15", limit=20).cats)




def _field(index: int, value: bytes):  # type: ignore[no-untyped-def]
    return lambda f: [*f[:index], value, *f[index + 1:]]


BAD = [
    (lambda f: f[:39], "expected 40 tab-separated fields, found 39"),
    (lambda f: [*f, b"x"], "expected 40 tab-separated fields, found 41"),
    (_field(0, b"2"), "label must be 0 or 1, found '2'"),
    (_field(3, b"12a"), "I3 must be an integer or empty, found '12a'"),
    (_field(3, b" 12"), "I3 must be an integer or empty, found ' 12'"),
    (_field(3, b"0x1f"), "I3 must be an integer or empty, found '0x1f'"),
    (_field(20, b"68fd1e6g"), "C7 must be 8 hex digits or empty, found '68fd1e6g'"),
    (_field(20, b"68fd1e6"), "C7 must be 8 hex digits or empty, found '68fd1e6'"),
    (_field(0, b"00"), "label must be 0 or 1, found '00'"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_a_bad_line_names_file_and_line(data: Path, tmp_path: Path, change, message) -> None:
    path = _with_line(tmp_path, data, 17, b"\t".join(change(_good_line(data, 17).split(b"\t"))))
    with pytest.raises(BadLine) as err:
        _criteo.read(path)
    assert str(err.value) == f"day_15:17: {message}"
    assert isinstance(err.value, InvalidArgument)


@pytest.mark.parametrize("change, message", BAD[:4])
def test_with_skip_a_bad_line_is_dropped_and_counted(data: Path, tmp_path: Path, change,
                                                     message) -> None:
    path = _with_line(tmp_path, data, 17, b"\t".join(change(_good_line(data, 17).split(b"\t"))))
    block = _criteo.read(path, on_bad_lines="skip", block_rows=10)
    assert (len(block), block.skipped) == (49, 1)
    whole = _criteo.read(data / "day_15", limit=50)
    assert np.array_equal(block.cats, np.delete(whole.cats, 16, axis=0))


def test_an_empty_line_is_a_bad_line(data: Path, tmp_path: Path) -> None:
    path = _with_line(tmp_path, data, 3, b"")
    with pytest.raises(BadLine, match=r"^day_15:3: empty line$"):
        _criteo.read(path)


def test_a_bad_line_inside_a_byte_range_has_its_absolute_line_number(data: Path,
                                                                     tmp_path: Path) -> None:
    path = _with_line(tmp_path, data, 40, b"1\t2")
    ranges = _criteo.byte_ranges(path, 4)
    assert len(ranges) == 4
    _criteo.read(path, start=ranges[0][0], end=ranges[0][1])  # the first range is good
    with pytest.raises(BadLine, match=r"^day_15:40: expected 40 tab-separated fields, found 2$"):
        _criteo.read(path, start=ranges[3][0], end=ranges[3][1], block_rows=4)


def test_an_empty_file_and_a_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "day_0").write_bytes(b"")
    with pytest.raises(InvalidArgument, match=r"^day_0 is empty$"):
        _criteo.read_blocks(tmp_path / "day_0")
    with pytest.raises(InvalidArgument, match=r"^day_0 is empty$"):
        _criteo.count_rows(tmp_path / "day_0")
    with pytest.raises(NotFound) as err:
        _criteo.read(tmp_path / "day_9")
    assert str(err.value) == f"{tmp_path / 'day_9'}: no such file"
    (tmp_path / "day_1.gz").write_bytes(gzip.compress(b"", mtime=0))
    with pytest.raises(InvalidArgument, match=r"^day_1\.gz is empty$"):
        _criteo.read(tmp_path / "day_1")


@pytest.mark.parametrize("options", [{"block_rows": 0}, {"on_bad_lines": "warn"},
                                     {"start": -1}, {"limit": -5}, {"start": 10, "end": 5}])
def test_bad_reader_options_are_one_line_errors(data: Path, options: dict) -> None:
    with pytest.raises(InvalidArgument) as err:
        _criteo.read_blocks(data / "day_15", **options)
    assert "\n" not in str(err.value)


def test_many_bad_lines_in_many_blocks_are_all_counted(data: Path, tmp_path: Path) -> None:
    lines = (data / "day_15").read_bytes().split(b"\n")[:ROWS]
    for i in range(0, ROWS, 100):
        lines[i] = b"0\tx"
    path = tmp_path / "day_15"
    path.write_bytes(b"\n".join(lines) + b"\n")
    block = _criteo.read(path, on_bad_lines="skip", block_rows=256)
    assert (len(block), block.skipped) == (ROWS - 30, 30)
    shutil.rmtree(tmp_path)


def test_skipping_mixed_bad_lines_in_big_blocks_keeps_exactly_the_good_rows(
        data: Path, tmp_path: Path) -> None:
    lines = (data / "day_15").read_bytes().split(b"\n")[:ROWS]
    good = np.ones(ROWS, dtype=bool)
    breakers = [lambda f: f[:39], _field(0, b"2"), _field(3, b"12a"), _field(20, b"68fd1e6"),
                _field(5, b"1\r2"), _field(30, b"-1234567")]
    for n, i in enumerate(range(7, ROWS, 97)):
        lines[i] = b"\t".join(breakers[n % len(breakers)](lines[i].split(b"\t")))
        good[i] = False
    path = tmp_path / "day_15"
    path.write_bytes(b"\n".join(lines) + b"\n")
    block = _criteo.read(path, on_bad_lines="skip", block_rows=ROWS)
    whole = _criteo.read(data / "day_15")
    assert (len(block), block.skipped) == (good.sum(), (~good).sum())
    assert np.array_equal(block.cats, whole.cats[good])
    assert np.array_equal(block.ints, whole.ints[good], equal_nan=True)
    with pytest.raises(BadLine, match=r"^day_15:8: expected 40 tab-separated fields, found 39$"):
        _criteo.read(path)


def test_a_line_too_long_for_a_row_stops_the_read_without_holding_it(data: Path,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "day_15"
    head = b"\n".join((data / "day_15").read_bytes().split(b"\n")[:100]) + b"\n"
    path.write_bytes(head + b"\0" * (3 << 20))
    for options in ({}, {"on_bad_lines": "skip"}, {"start": 10, "end": len(head) + 5}):
        with pytest.raises(BadLine, match=r"^day_15:101: a line longer than 1 MiB"):
            _criteo.read(path, **options)
