"""eval/reporting/notebooks/compare_checkpoints.ipynb executes headless (nbclient) on two tiny fake runs and
shows their metrics, plots and the same utterances side by side as audio players with mel figures."""
import json
import re
import sys

import nbformat
import pytest

from eval.reporting.compare import NOTEBOOK, common_utts, execute_notebook, pick
from eval.reporting.report import ReportError, collect
from tests.helpers.report_fixtures import make_run


@pytest.fixture
def two_runs(tmp_path):
    root = tmp_path / "runs"
    a = make_run(root, "d256s9", {"en": {100: (20.0, 0.4), 200: (10.0, 0.5)}, "zh": {200: (15.0, 0.6)}})
    b = make_run(root, "no_hres", {"en": {200: (12.5, 0.45)}})
    return a, b


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A kernel spec for this very interpreter (the venv), first on JUPYTER_PATH: a fresh machine
    needs no installed spec, and a user-level `python3` spec of another Python cannot take over."""
    spec = tmp_path / "jupyter" / "kernels" / "voxlab-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "VoxLab test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(spec.parent.parent))
    return "voxlab-test"


def test_notebook_has_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and all(k in tagged[0].source for k in ("runs =", "testset =", "n_utts ="))
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stored without outputs


def test_notebook_executes_on_tiny_runs(two_runs, tmp_path, kernel_name):
    a, b = two_runs
    out = tmp_path / "executed.ipynb"
    ckpt = b / "checkpoints" / "step_0000200.ckpt"  # a checkpoint input: its step's evaluation
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    nb = execute_notebook({"runs": [str(a), str(ckpt)], "testset": "en", "n_utts": 2}, out, timeout=120,
                          kernel_name=kernel_name)
    assert out.is_file()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "\n".join(o.get("data", {}).get("text/html", "") for o in outputs)
    # metrics table of the compared evaluations: latest step of each run
    assert re.search(r"<td>d256s9/version_0</td><td>200</td><td>2</td><td>10.00</td>", html)
    assert re.search(r"<td>no_hres/version_0:step_0000200</td><td>200</td><td>2</td><td>12.50</td>", html)
    assert "<td>VoxCPM (paper)</td>" in html  # the main table with the paper's rows
    # side by side: 2 utterances x 2 runs, each an audio player with its mel figure
    assert html.count("<audio") == 4 and html.count("data:image/png;base64,") == 4
    assert "en_001" in html and "en_002" in html and "heard en_001" in html
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3  # WER and SIM against step, training losses


def test_compare_helpers(two_runs):
    a, b = two_runs
    entries = collect([a, b])
    picked = pick(entries, "en")
    assert [(label, r.step) for label, r in picked] == [("d256s9/version_0", 200), ("no_hres/version_0", 200)]
    assert common_utts(picked, 1) == ["en_001"]
    (b / "eval" / "en" / "step_200" / "wavs" / "en_001.wav").unlink()
    assert common_utts(picked, 5) == ["en_002"]  # only utterances every run has audio for
    with pytest.raises(ReportError, match="no evaluation of test set 'hard'.*en, zh"):
        pick(entries, "hard")
