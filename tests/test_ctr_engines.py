"""The CTR engines on a real Dask cluster (a LocalCluster with worker processes, shared by the
module) and generated Criteo-layout data with a real signal: scores, the three engines, the
merged forest, where the work runs, and the one-line errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("sklearn")
pytest.importorskip("lightgbm")

from veil.errors import InvalidArgument, NotFound
from veil.solutions.ctr import _criteo, _synth
from veil.solutions.ctr._cluster import cluster, peak_rss, worker_pids
from veil.solutions.ctr._config import TrainConfig
from veil.solutions.ctr._engines import _ranges, merge_forests, train
from veil.solutions.ctr._metrics import scores

ROWS, TEST_ROWS = 20_000, 5_000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("criteo")
    _synth.generate(path, seed=0, sizes={"rows": ROWS, "test_rows": TEST_ROWS})
    return path


@pytest.fixture(scope="module")
def dask_cluster():
    """One LocalCluster with two worker processes for the module; the engines connect to it
    through its tcp:// address, the path of an existing cluster."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as lc, \
            Client(lc, set_as_default=False) as client:
        yield lc.scheduler_address, client


def config(data, tmp_path, engine, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(tmp_path / "run"), engine=engine, **kw)


@pytest.fixture(scope="module")
def single_forest(data, tmp_path_factory):
    return train(config(data, tmp_path_factory.mktemp("single"), "pandas-sklearn"))


# --- scores -----------------------------------------------------------------------------------

def test_scores_agree_with_scikit_learn_on_known_arrays():
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1_000)
    p = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, y.size), 0, 1), 1)  # many ties
    p[:3] = [0.0, 1.0, 0.5]
    s = scores(y, p)
    assert s["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert s["logloss"] == pytest.approx(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), rel=1e-9)
    assert s["accuracy"] == pytest.approx(accuracy_score(y, (p > 0.5).astype(int)))
    assert s["rows"] == 1_000
    assert s["click_rate"] == pytest.approx(y.mean())
    assert s["majority_accuracy"] == pytest.approx(max(y.mean(), 1 - y.mean()))


def test_accuracy_thresholds_as_a_classifiers_predict_a_tie_is_no_click():
    s = scores([0, 1, 1, 0], [0.5, 0.5, 0.9, 0.1])
    assert s["accuracy"] == 0.75
    assert s["auc"] == pytest.approx(0.875)


def test_scores_of_one_class_have_no_auc_and_mismatched_lengths_fail_in_one_line():
    assert scores([0, 0, 0], [0.1, 0.2, 0.3])["auc"] is None
    with pytest.raises(InvalidArgument, match="3 labels but 2"):
        scores([0, 1, 0], [0.1, 0.2])


# --- the cluster ------------------------------------------------------------------------------

def test_an_unreachable_scheduler_fails_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InvalidArgument) as e, cluster(f"tcp://127.0.0.1:{port}"):
        pass
    assert str(e.value).startswith(f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("address", ["localhost:8786", "tcp://host", "tcp://h:99999",
                                     "http://h:80"])
def test_a_scheduler_address_that_is_not_tcp_host_port_fails_in_one_line(address):
    with pytest.raises(InvalidArgument, match="is not tcp://HOST:PORT"), cluster(address):
        pass


def test_connecting_logs_the_dashboard_and_its_task_stream(dask_cluster):
    address, _ = dask_cluster
    lines: list[str] = []
    with cluster(address, log=lines.append) as client:
        peaks = peak_rss(client)
        pids = worker_pids(client)
    assert any(line.startswith("Dask dashboard: http://") and line.endswith("/tasks)")
               for line in lines)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    assert set(peaks) == {"client", *(f"worker {a}" for a in pids)}
    assert all(v > 10 << 20 for v in peaks.values())


# --- the engines ------------------------------------------------------------------------------

def test_pandas_sklearn_is_the_seeds_forest_and_beats_the_majority_class(single_forest, data):
    import joblib

    res = single_forest
    m = res.metrics
    assert res.rows == ROWS and res.test_rows == TEST_ROWS and res.workers == 1
    assert m["auc"] > 0.6 and m["accuracy"] >= m["majority_accuracy"] - 0.01
    model = joblib.load(res.model)
    assert model.n_estimators == 10 and model.max_depth == 10 and model.n_features_in_ == 13
    saved = json.loads((Path(res.out) / "metrics.json").read_text())
    assert saved["metrics"] == m and saved["engine"] == "pandas-sklearn"
    assert set(saved["seconds"]) == {"load", "fit", "predict"}
    assert res.dashboard is None and list(res.peak_rss_bytes) == ["client"]


def test_dask_rf_merges_the_workers_forests_into_one_forest_of_trees_trees(
        data, tmp_path, dask_cluster, single_forest):
    import joblib

    address, _ = dask_cluster
    lines: list[str] = []
    res = train(config(data, tmp_path, "dask-rf", scheduler=address), log=lines.append)
    model = joblib.load(res.model)
    assert type(model).__name__ == "RandomForestClassifier"
    assert model.n_estimators == len(model.estimators_) == res.trees == 10
    assert res.rows == ROWS and res.workers == 2 and res.test_rows == TEST_ROWS
    assert res.metrics["auc"] > 0.6
    # each worker's trees saw half the rows: close to one forest on all of them
    assert abs(res.metrics["auc"] - single_forest.metrics["auc"]) < 0.03
    assert len([k for k in res.peak_rss_bytes if k.startswith("worker ")]) == 2
    assert res.dashboard and res.dashboard.endswith("/status")
    assert "Loaded 20,000 rows" in "\n".join(lines) and "on 2 workers" in "\n".join(lines)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["trees"] == 10
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.json",
                                                                     "model.joblib"]


def test_the_rows_are_read_and_fitted_in_the_worker_processes(data, tmp_path, dask_cluster):
    from distributed import get_task_stream

    address, client = dask_cluster
    pids = worker_pids(client)
    with get_task_stream(client) as ts:
        train(config(data, tmp_path, "dask-rf", scheduler=address, trees=4))
    ran = {}
    for t in ts.data:
        ran.setdefault(t["key"].split("-")[0], set()).add(t["worker"])
    assert ran["read_partition"] == set(pids) and ran["fit_forest"] == set(pids)
    assert ran["predict"] == set(pids)
    assert os.getpid() not in pids.values()


def test_merging_forests_keeps_every_tree_and_averages_their_probabilities():
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] > 0).astype(int)
    a = RandomForestClassifier(3, max_depth=3, random_state=1).fit(X[:200], y[:200])
    b = RandomForestClassifier(2, max_depth=3, random_state=2).fit(X[200:], y[200:])
    pa, pb = a.predict_proba(X), b.predict_proba(X)
    merged = merge_forests([a, b])
    assert merged.n_estimators == 5
    np.testing.assert_allclose(merged.predict_proba(X), (3 * pa + 2 * pb) / 5)


def test_rows_takes_the_first_rows_split_across_byte_ranges(data, dask_cluster):
    _, client = dask_cluster
    path = data / "day_15"
    first = _criteo.read(path, limit=7_777, cats=False)
    ranges = _ranges(client, path, 3, 7_777)
    parts = [_criteo.read(path, start=s, end=e, limit=lim, cats=False) for s, e, lim in ranges]
    assert len(ranges) == 3 and all(len(p) > 2_000 for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.label for p in parts]), first.label)
    np.testing.assert_array_equal(np.concatenate([p.ints for p in parts]), first.ints)


def test_dask_rf_honours_rows(data, tmp_path, dask_cluster):
    address, _ = dask_cluster
    res = train(config(data, tmp_path, "dask-rf", scheduler=address, rows=6_000, trees=3))
    assert res.rows == 6_000 and res.trees == 3 and res.workers == 2


@pytest.fixture(scope="module")
def lightgbm_counts_only(data, tmp_path_factory, dask_cluster):
    address, _ = dask_cluster
    return train(config(data, tmp_path_factory.mktemp("lgbm"), "dask-lightgbm",
                        scheduler=address, trees=20))


def test_dask_lightgbm_boosts_on_the_13_counts(lightgbm_counts_only):
    import lightgbm

    res = lightgbm_counts_only
    booster = lightgbm.Booster(model_file=res.model)
    assert res.model.endswith("model.txt") and booster.num_feature() == 13
    assert booster.num_trees() == res.trees == 20
    assert res.metrics["auc"] > 0.6 and res.rows == ROWS and res.workers == 2


@pytest.mark.parametrize("categorical", ["hashed", "target"])
def test_dask_lightgbm_gains_from_the_categorical_columns(data, tmp_path, dask_cluster,
                                                          categorical, lightgbm_counts_only):
    import lightgbm

    address, _ = dask_cluster
    res = train(config(data, tmp_path, "dask-lightgbm", scheduler=address, trees=20,
                       categorical=categorical))
    assert lightgbm.Booster(model_file=res.model).num_feature() == 39
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["config"]["categorical"] == categorical
    assert (tmp_path / "run" / "target_encoding.npz").exists() == (categorical == "target")
    # the generator's hidden model uses categorical columns the counts know nothing of
    assert res.metrics["auc"] > lightgbm_counts_only.metrics["auc"] + 0.02


# --- bad input --------------------------------------------------------------------------------

def _corrupt(data, tmp_path, line: int):
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    lines = (bad / "day_15").read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1].rsplit(b"\t", 1)[0]  # 39 fields
    (bad / "day_15").write_bytes(b"\n".join(lines))
    return bad


def test_a_bad_line_read_on_a_worker_reaches_the_caller_as_file_and_line(data, tmp_path,
                                                                         dask_cluster):
    address, _ = dask_cluster
    bad = _corrupt(data, tmp_path, 15_001)  # in the second worker's byte range
    with pytest.raises(_criteo.BadLine) as e:
        train(config(bad, tmp_path, "dask-rf", scheduler=address))
    assert str(e.value).startswith("day_15:15001: ") or "/day_15:15001: " in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()  # nothing half-written
    res = train(config(bad, tmp_path, "dask-rf", scheduler=address, on_bad_lines="skip"))
    assert res.skipped == 1 and res.rows == ROWS - 1


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"engine": "xgboost"}, InvalidArgument, "engine"),
    ({"trees": 0}, InvalidArgument, "trees"),
    ({"max_depth": 0}, InvalidArgument, "depth"),
    ({"categorical": "target"}, InvalidArgument, "dask-lightgbm"),
    ({"data": "/nonexistent/criteo"}, NotFound, "/nonexistent/criteo"),
    ({"train_file": "day_3"}, NotFound, "day_3"),
    ({"scheduler": "tcp://127.0.0.1:1"}, InvalidArgument, "cannot reach the Dask scheduler"),
])
def test_bad_options_and_missing_files_fail_in_one_line(data, tmp_path, change, error, match):
    cfg = config(data, tmp_path, "dask-rf")
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(error, match=match) as e:
        train(cfg)
    assert "\n" not in str(e.value)


def test_a_gzip_day_is_one_partition_on_one_worker(data, tmp_path, dask_cluster):
    import gzip

    address, _ = dask_cluster
    folder = tmp_path / "gz"
    folder.mkdir()
    with gzip.open(folder / "day_15.gz", "wb", compresslevel=1) as f:
        f.write((data / "day_15").read_bytes())
    shutil.copy(data / "day_15_test", folder)
    res = train(config(folder, tmp_path, "dask-rf", scheduler=address, train_file="day_15.gz",
                       rows=8_000, trees=4))
    assert res.rows == 8_000 and res.workers == 1 and res.trees == 4
    assert res.metrics["auc"] > 0.6
