"""notebooks/face_privacy.ipynb (TR-4928 scenario 1) runs top to bottom on generated data."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "face_privacy.ipynb"


@pytest.mark.slow  # 24 s: the notebook end to end
def test_the_notebook_runs_and_shows_clean_and_obfuscated_detections(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_FACES_DATA", str(tmp_path / "FDDB"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("output_type") == "stream")
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the clean frame, then clean / obfuscated / activation
    assert "activation sent to the tail: (1, 128, 32, 32)" in text
    assert text.count("===== Results =====") == 2 and text.count("FDDB-fold-10 Val AP") == 2
    assert "obfuscated mAP is" in text
    assert (tmp_path / "FDDB" / "fit" / "FDDB-folds").is_dir()  # generated where it was told
