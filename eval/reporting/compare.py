"""Checkpoint comparison for `eval/reporting/notebooks/compare_checkpoints.ipynb`: the same utterances from
several runs / checkpoints / evaluation folders side by side (audio players + mel figures).

Inputs are collected by `eval.reporting.report.collect` (same rules as the report); for each input the latest
evaluation of the chosen test set is compared (a checkpoint input: its step's evaluation).
`execute_notebook` runs the notebook headless with new parameters (papermill-style, without papermill).
"""
from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

from eval.reporting.report import Table, figure_png, fmt, fmt_iv
from eval.reporting.results import Entry, ReportError, Result, num
from voxlab.audio import MelSpectrogram, load_audio

SR = 16000
NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "compare_checkpoints.ipynb"


def resolve_inputs(paths) -> list[Path]:
    """Paths as given when they exist, else relative to the repository root (a notebook's working
    folder is often eval/reporting/notebooks/)."""
    root = NOTEBOOK.parent.parent.parent
    return [Path(p) if Path(p).exists() or Path(p).is_absolute() else root / p for p in paths]


def pick(entries: list[Entry], testset: str) -> list[tuple[str, Result]]:
    """(label, latest result of `testset`) for every entry that has one."""
    out = [(e.label, e.latest()[testset]) for e in entries if testset in e.latest()]
    if not out:
        have = sorted({r.testset for e in entries for r in e.results})
        raise ReportError(f"no evaluation of test set {testset!r} in the inputs; found: {', '.join(have) or 'none'}")
    return out


def read_per_utt(result: Result) -> dict[str, dict]:
    path = result.path / "per_utt.csv"
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["utt"]: row for row in csv.DictReader(f)}


def common_utts(picked: list[tuple[str, Result]], n: int) -> list[str]:
    """The first `n` utterances (test-set order) that every compared result has a wav for."""
    rows = [read_per_utt(r) for _, r in picked]
    order = list(rows[0]) if rows and rows[0] else sorted(p.stem for p in picked[0][1].wavs_dir.glob("*.wav"))
    keep = [u for u in order if all((r.wavs_dir / f"{u}.wav").is_file() for _, r in picked)]
    return keep[:n]


def metrics_table(picked: list[tuple[str, Result]]) -> Table:
    rows = [[label, str(r.step), str(r.metrics.get("n_utts")), fmt_iv(r.wer, r.interval("wer"), 2),
             fmt(num(r.metrics.get("wer_corpus")), 2), fmt_iv(r.sim, r.interval("sim"), 1), r.sim_name] for label, r in picked]
    return Table(f"{picked[0][1].testset}: compared evaluations", ["run", "step", "utts", "WER", "corpus WER",
                                                                   "SIM x100", "SIM model"], rows)


def mel_png(wav, sample_rate: int = SR) -> bytes:
    """A small log-mel figure (voxlab.audio.MelSpectrogram) as PNG bytes."""
    import torch
    from matplotlib.figure import Figure

    mel = MelSpectrogram(sample_rate=sample_rate, n_fft=1024, hop_length=256, n_mels=80)
    spec = mel(torch.as_tensor(wav, dtype=torch.float32)[None])[0].numpy()
    fig = Figure(figsize=(3.2, 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma")
    ax.set_axis_off()
    return figure_png(fig)


def _cell(wav_path: Path, caption: str) -> str:
    from IPython.display import Audio

    wav = load_audio(wav_path, SR)
    png = base64.b64encode(mel_png(wav)).decode()
    return (f"{Audio(wav, rate=SR)._repr_html_()}<br><img src=\"data:image/png;base64,{png}\">"
            f"<div style='font-size:11px'>{html.escape(caption)}</div>")


def side_by_side_html(picked: list[tuple[str, Result]], utts: list[str]) -> str:
    """An HTML table: a row per utterance, a column per compared result (player, mel, ASR text, WER/SIM)."""
    if not utts:
        return "<p>No utterance has audio in every compared evaluation.</p>"
    per_utt = [read_per_utt(r) for _, r in picked]
    head = "<th>utterance</th>" + "".join(f"<th>{html.escape(label)} (step {r.step})</th>" for label, r in picked)
    body = []
    for utt in utts:
        ref = next((rows[utt]["reference"] for rows in per_utt if utt in rows), "")
        cells = [f"<td><b>{html.escape(utt)}</b><br>{html.escape(ref)}</td>"]
        for (label, r), rows in zip(picked, per_utt):
            row = rows.get(utt, {})
            caption = (f"ASR: {row.get('hypothesis', '?')} | WER {row.get('wer') or '—'} "
                       f"| SIM {row.get('sim') or '—'}") if row else "no per_utt.csv row"
            cells.append(f"<td>{_cell(r.wavs_dir / f'{utt}.wav', caption)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def execute_notebook(parameters: dict, out_path: str | Path | None = None, timeout: int = 300,
                     kernel_name: str = "python3", cwd: str | Path | None = None):
    """Run the comparison notebook headless with `parameters` injected after its `parameters`
    cell (as papermill does); returns the executed notebook, written to `out_path` when given."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if idx is None:
        raise ReportError(f"{NOTEBOOK}: no cell tagged `parameters`")
    source = "# injected parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in parameters.items())
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    cwd = Path(cwd) if cwd else NOTEBOOK.parent.parent.parent  # the repository root: imports work
    NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    if out_path is not None:
        nbformat.write(nb, str(out_path))
    return nb
