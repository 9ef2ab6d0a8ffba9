"""`python -m eval.reporting.report --runs PATH [PATH ...] [--out DIR]`: our results beside the paper's.

Inputs (any mix, each becomes one entry of the report):
- a run folder `runs/<exp>/version_<N>/` (has `config.yaml`): every `eval/<testset>/step_<N>/metrics.json`
  (tables use the latest step per test set, plots use all steps) and its `csv/metrics.csv` losses;
- a sweep record folder `runs/sweeps/<name>-<scale>/` or its `sweep.json`: every experiment's run
  (a failed experiment without a run still gets its row, with missing values);
- an evaluation folder holding `metrics.json` (from `python -m eval --out DIR` or one
  `eval/<testset>/step_<N>/` of a run): that one result;
- a checkpoint `.../checkpoints/step_<N>.ckpt`: its run, restricted to the evaluations at step N;
- any other folder: the run folders (`version_*/config.yaml`) found below it.

Outputs in `--out` (default `reports/<YYYYmmdd-HHMMSS>`; files of an earlier report there are replaced):
- `report.md`: the failure flags of each evaluation (counts, and the flagged utterances with their audio);
  the paper's main table (model, params, data hours, EN WER/SIM, ZH CER/SIM, hard
  CER/SIM) with our runs under the paper's rows; one ablation table per (scale, overrides) group,
  each of our experiments above the paper's row for it, with changes against the d256s9 row (ours
  against our d256s9 run, the paper's against the paper's); every result in detail (step, utts,
  corpus WER, SIM and ASR models, normalisation, generation settings); notes (missing evaluations).
- PNG figures beside it: one per logged loss (`csv/metrics.csv`) and one per metric (WER, SIM)
  against step, a line per run and a panel per test set;
- `report.html`: the same in one self-contained file (figures embedded as base64 PNG).
Figures of several-seed evaluations carry their 95% bootstrap interval `[low, high]`; a Δ where either run has
several seeds carries the paired bootstrap interval of the difference, marked * only when it excludes zero.
Units follow the paper: WER/CER in %, SIM x 100. The SIM model is named in every table: only
`wavlm_ecapa` (WavLM-large + ECAPA-TDNN) scores are comparable with the paper's SIM; resemblyzer
or wespeaker scores are not. A missing or partial result is shown as "—", never as zero.
Exit status: 0 written, 2 bad input.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from eval.reporting.flags import HEADERS as FLAG_HEADERS
from eval.reporting.flags import flag_rows, flagged_html, flagged_markdown, flagged_utterances
from eval.intervals import paired_difference
from eval.reporting.results import Entry, ReportError, Result, collect, column_of, count_params, data_hours, num
from eval.testset import read_testset

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "reference"
MISSING = "—"
BASELINE = "d256s9"
# (test-set column, metric, reference CSV column, header)
COLUMNS = [("en", "wer", "en_wer", "EN WER"), ("en", "sim", "en_sim", "EN SIM"),
           ("zh", "wer", "zh_cer", "ZH CER"), ("zh", "sim", "zh_sim", "ZH SIM"),
           ("hard", "wer", "hard_cer", "hard CER"), ("hard", "sim", "hard_sim", "hard SIM")]
PAPER_SIM = "WavLM-ECAPA (paper)"


def fmt_params(n: int | None) -> str:
    if n is None:
        return MISSING
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def fmt_hours(h: float | None) -> str:
    if h is None:
        return MISSING
    return f"{h / 1e6:.1f}M" if h >= 1e6 else f"{h / 1e3:.0f}K" if h >= 1e3 else f"{h:.3g}"


def fmt(x: float | None, digits: int, sign: bool = False) -> str:
    if x is None:
        return MISSING
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_iv(x: float | None, interval: tuple[float, float] | None, digits: int) -> str:
    """`12.34 [11.10, 13.60]`: a figure with its 95% interval where it has one (several seeds)."""
    text = fmt(x, digits)
    return text if x is None or interval is None else f"{text} [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def difference(a: Result | None, b: Result | None, metric: str) -> dict | None:
    """a - b with its paired bootstrap interval over the utterances and seeds both have; only where either
    result carries intervals (several seeds: a one-seed comparison reads as it always has)."""
    if a is None or b is None or (a.interval(metric) is None and b.interval(metric) is None):
        return None
    grid_a, grid_b = a.grid(metric), b.grid(metric)
    return paired_difference(grid_a, grid_b) if grid_a and grid_b else None


def fmt_delta(delta: float | None, diff: dict | None, digits: int) -> str:
    """`+1.20 [+0.40, +2.10]*`: * only when the interval of the difference excludes zero."""
    if diff is None:
        return fmt(delta, digits, sign=True)
    return (f"{diff['mean']:+.{digits}f} [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"
            + ("*" if diff["significant"] else ""))


INTERVAL_NOTE = ("[low, high]: 95% bootstrap interval over utterances and seeds (results of several seeds); a Δ's "
                 "interval is a paired bootstrap over the utterances and seeds both runs share, and * marks a Δ "
                 "whose interval excludes zero.")


def read_reference(name: str) -> list[dict]:
    path = REFERENCE_DIR / name
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _ref_value(row: dict | None, key: str) -> float | None:
    text = (row or {}).get(key, "")
    return float(text) if text not in ("", None) else None


# ---------------------------------------------------------------- tables


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


def _values(entry: Entry) -> dict[str, float | None]:
    cols = entry.by_column()
    return {key: (getattr(cols[col], metric) if col in cols else None) for col, metric, key, _ in COLUMNS}


def _results(entry: Entry | None) -> dict[str, Result | None]:
    cols = entry.by_column() if entry is not None else {}
    return {key: cols.get(col) for col, _, key, _ in COLUMNS}


def _cells(entry: Entry) -> list[str]:
    """Each column's figure, with its interval where it has one."""
    vals, res = _values(entry), _results(entry)
    return [fmt_iv(vals[key], res[key].interval(metric) if res[key] else None, 2 if metric == "wer" else 1)
            for _, metric, key, _ in COLUMNS]


def _sim_names(entry: Entry) -> str:
    names = sorted({r.sim_name for r in entry.by_column().values()})
    return ", ".join(names) or MISSING


def _steps(entry: Entry) -> str:
    cols = entry.by_column()
    steps = {r.step for r in cols.values()}
    if not cols or steps == {None}:
        return MISSING
    if len(steps) == 1:
        return str(next(iter(steps)))
    return ", ".join(f"{col} {'?' if r.step is None else r.step}" for col, r in cols.items())


SIM_NOTE = ("WER/CER in %, SIM x 100. SIM is only comparable with the paper's where the SIM model is "
            "wavlm_ecapa (WavLM-large + ECAPA-TDNN); resemblyzer and wespeaker scores are on another scale.")


def main_table(entries: list[Entry]) -> Table:
    headers = ["model", "params", "data (h)", "step"] + [h for *_, h in COLUMNS] + ["SIM model"]
    rows = []
    for ref in read_reference("seed_main_results.csv"):
        rows.append([f"{ref['model']} (paper)", ref["params"] or MISSING, ref["data_hours"] or MISSING, MISSING]
                    + [fmt(_ref_value(ref, key), 2 if metric == "wer" else 1) for _, metric, key, _ in COLUMNS]
                    + [PAPER_SIM])
    for e in entries:
        rows.append([f"{e.label} (ours)", fmt_params(count_params(e)), fmt_hours(data_hours(e)), _steps(e)]
                    + _cells(e) + [_sim_names(e)])
    return Table("Seed-TTS-Eval: the paper's main table and our runs", headers, rows, [SIM_NOTE, INTERVAL_NOTE])


def ablation_tables(entries: list[Entry]) -> list[Table]:
    """One table per (scale, overrides): each experiment's runs, then the paper's row for it; deltas
    against our d256s9 run of the same group and against the paper's d256s9 row."""
    paper = {row["experiment"]: row for row in read_reference("seed_ablations.csv")}
    order = list(paper)
    groups: dict[tuple, list[Entry]] = {}
    for e in entries:
        if e.experiment and (e.experiment in paper or e.results):
            groups.setdefault((e.scale, e.overrides), []).append(e)
    headers = ["experiment", "row", "step"]
    for *_, h in COLUMNS:
        headers += [h, f"Δ {h}"]
    headers.append("SIM model")
    tables = []
    for (scale, overrides), group in groups.items():
        group.sort(key=lambda e: (order.index(e.experiment) if e.experiment in order else len(order), e.experiment))
        base = next((e for e in group if e.experiment == BASELINE and e.results), None)
        base_vals, base_res = (_values(base) if base else {}), _results(base)
        rows, signs = [], []
        for i, e in enumerate(group):
            vals, res = _values(e), _results(e)
            row = [e.experiment, f"ours: {e.label}", _steps(e)]
            for (_, metric, key, _), cell in zip(COLUMNS, _cells(e)):
                d = 2 if metric == "wer" else 1
                delta = (vals[key] - base_vals[key]) if base and vals[key] is not None \
                    and base_vals.get(key) is not None else None
                diff = difference(res[key], base_res[key], metric) if delta is not None else None
                row += [cell, fmt_delta(delta, diff, d)]
                if diff is not None and e is not base:
                    signs.append(_sign_check(e.experiment, key, diff, paper))
            rows.append(row + [_sim_names(e)])
            if i + 1 == len(group) or group[i + 1].experiment != e.experiment:  # after the last run of it
                rows.append(_paper_ablation_row(e.experiment, paper))
        extra = f", overrides {' '.join(overrides)}" if overrides else ""
        title = f"Ablations (scale {scale or MISSING}{extra})"
        notes = [f"Δ: change against the {BASELINE} row; ours against "
                 + (f"`{base.label}`" if base else f"nothing (no evaluated {BASELINE} run in this group)")
                 + f", the paper's against its {BASELINE} row. Lower WER is better, higher SIM is better.",
                 SIM_NOTE, INTERVAL_NOTE]
        notes += _reproduced_notes([x for x in signs if x is not None])
        tables.append(Table(title, headers, rows, notes))
    return tables


def _sign_check(exp: str, key: str, diff: dict, paper: dict) -> tuple[str, str, bool] | None:
    """(experiment, column, reproduced): reproduced when our Δ's interval excludes zero on the side of the
    paper's Δ for that row and column (None: the paper has no Δ there)."""
    ref, base = _ref_value(paper.get(exp), key), _ref_value(paper.get(BASELINE), key)
    if ref is None or base is None or ref == base:
        return None
    same_side = diff["low"] > 0 if ref > base else diff["high"] < 0
    return exp, key, bool(diff["significant"] and same_side)


def _reproduced_notes(checks: list[tuple[str, str, bool]]) -> list[str]:
    """Per column: how many of the paper's deltas our several-seed rows reproduce in sign, interval excluding zero."""
    notes = []
    for key in dict.fromkeys(k for _, k, _ in checks):
        rows = [(exp, ok) for exp, k, ok in checks if k == key]
        yes = [exp for exp, ok in rows if ok]
        header = next(h for _, _, ref, h in COLUMNS if ref == key)
        notes.append(f"{header}: {len(yes)} of {len(rows)} of the paper's deltas reproduced in sign with an interval "
                     f"excluding zero" + (f" ({', '.join(yes)})" if yes else "") + ".")
    return notes


def _paper_ablation_row(exp: str, paper: dict) -> list[str]:
    ref, base = paper.get(exp), paper.get(BASELINE)
    row = [exp, f"paper: {ref['paper_row']}" if ref else "paper: no such row", MISSING]
    for _, metric, key, _ in COLUMNS:
        d, v, b = 2 if metric == "wer" else 1, _ref_value(ref, key), _ref_value(base, key)
        row += [fmt(v, d), fmt(v - b if v is not None and b is not None else None, d, sign=True)]
    return row + [PAPER_SIM if ref else MISSING]


def results_table(entries: list[Entry]) -> Table:
    headers = ["run", "test set", "column", "step", "utts", "WER", "corpus WER", "SIM", "SIM model", "MOS",
               "MOS model", "ASR", "normalisation", "generation", "seeds"]
    rows = []
    for e in entries:
        if not e.results:
            rows.append([e.label] + [MISSING] * (len(headers) - 1))
        for name, r in sorted(e.latest().items()):
            m = r.metrics
            asr = m.get("asr") or {}
            if asr.get("source") == "transcripts":
                asr_text = f"transcripts {Path(asr.get('path', '')).name}"
            elif asr.get("source") == "none":  # WER stays "—" (r.wer is None), never zero
                asr_text = "none (WER unavailable)"
            else:
                asr_text = ", ".join(f"{lang}: {a.get('name', '?')} {a.get('model') or a.get('model_dir') or ''}".strip()
                                     for lang, a in asr.items() if isinstance(a, dict))
            gen = m.get("generation") or {}
            gen_text = ", ".join(f"{k} {v}" for k, v in gen.items() if k != "model") or MISSING
            rows.append([e.label, name, column_of(name) or MISSING, MISSING if r.step is None else str(r.step),
                         str(m.get("n_utts", MISSING)), fmt_iv(r.wer, r.interval("wer"), 2), fmt(num(m.get("wer_corpus")), 2),
                         fmt_iv(r.sim, r.interval("sim"), 1), m.get("sim_model") or "not scored",
                         fmt_iv(r.mos, r.interval("mos"), 2), m.get("mos_model") or "not scored", asr_text or MISSING,
                         (m.get("normalization") or {}).get("variant", MISSING), gen_text,
                         ", ".join(map(str, r.seeds))])
    return Table("Every result (latest step per run and test set)", headers, rows, [INTERVAL_NOTE])


# ---------------------------------------------------------------- figures


def read_losses(run: Path) -> dict[str, list[tuple[int, float]]]:
    """`csv/metrics.csv` columns whose name holds `loss` -> sorted (step, value) points."""
    path = run / "csv" / "metrics.csv"
    out: dict[str, list[tuple[int, float]]] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or ""))
            except ValueError:
                continue
            for key, text in row.items():
                if key and "loss" in key and text not in ("", None):
                    try:
                        out.setdefault(key, []).append((step, float(text)))
                    except ValueError:
                        pass
    return {k: sorted(v) for k, v in out.items()}


def _figure(panels: int):
    from matplotlib.figure import Figure  # object API: renders with Agg, no pyplot state, no GUI

    fig = Figure(figsize=(5.5 * panels, 3.6), layout="constrained")
    return fig, [fig.add_subplot(1, panels, i + 1) for i in range(panels)]


def loss_figures(entries: list[Entry]) -> dict[str, object]:
    """One figure per logged loss, a line per run."""
    curves: dict[str, dict[str, list]] = {}
    for e in entries:
        if e.run is not None:
            for key, points in read_losses(e.run).items():
                curves.setdefault(key, {})[e.label] = points
    figs = {}
    for key in sorted(curves):
        fig, (ax,) = _figure(1)
        for label, points in curves[key].items():
            ax.plot(*zip(*points), label=label, lw=1)
        ax.set(title=key, xlabel="step", ylabel=key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        figs[key] = fig
    return figs


def metric_figures(entries: list[Entry]) -> dict[str, object]:
    """WER, SIM and duration ratio against step: one figure per metric, a panel per test set, a line per run."""
    figs = {}
    for metric, ylabel in (("wer", "WER / CER (%)"), ("sim", "SIM x 100"),
                           ("duration_ratio", "generated / ground-truth duration")):
        data: dict[str, dict[str, list]] = {}
        for e in entries:
            for r in e.results:
                value = getattr(r, metric)
                if r.step is not None and value is not None:
                    data.setdefault(r.testset, {}).setdefault(e.label, []).append((r.step, value))
        if not data:
            continue
        fig, axes = _figure(len(data))
        for ax, name in zip(axes, sorted(data)):
            for label, points in data[name].items():
                ax.plot(*zip(*sorted(points)), "o-", label=label, ms=3, lw=1)
            ax.set(title=f"{name}: {metric.replace('_', ' ')}", xlabel="step", ylabel=ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        figs[f"eval/{metric}"] = fig
    return figs


def figure_png(fig) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


# ---------------------------------------------------------------- rendering


def markdown_table(t: Table) -> str:
    cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [f"## {t.title}", "", "| " + " | ".join(map(cell, t.headers)) + " |",
             "|" + "---|" * len(t.headers)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in t.rows]
    lines += [""] + [f"> {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def html_table(t: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = "".join("<tr" + (' class="paper"' if row[1].startswith("paper") or row[0].endswith("(paper)") else "")
                   + ">" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f"<p class=note>{esc(n)}</p>" for n in t.notes)
    return f"<h2>{esc(t.title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


CSS = ("body{font-family:sans-serif;margin:2em;max-width:1600px}table{border-collapse:collapse;font-size:13px}"
       "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child,td:nth-child(2){text-align:left}"
       "tr.paper{background:#f3f3f3;color:#555}.note{font-size:12px;color:#555}img{max-width:100%}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def audio_samples(entries: list[Entry], per_testset: int) -> list[dict]:
    """The first `per_testset` utterances of each entry's newest evaluation of each test set that has
    generated wavs, with the ground-truth wav from its meta.lst (5th field) when there is one."""
    samples = []
    for e in entries:
        newest: dict[str, object] = {}
        for r in e.results:
            if r.wavs_dir.is_dir() and (r.testset not in newest or (r.step or 0) >= (newest[r.testset].step or 0)):
                newest[r.testset] = r
        for name, r in sorted(newest.items()):
            try:
                items = read_testset((r.metrics.get("testset") or {}).get("path", ""))
            except Exception:  # noqa: BLE001 - a moved test set: no players, the tables still stand
                continue
            for it in [it for it in items if (r.wavs_dir / f"{it.utt}.wav").is_file()][:per_testset]:
                samples.append({"run": e.label, "testset": name, "step": r.step, "utt": it.utt,
                                "text": it.target_text, "generated": r.wavs_dir / f"{it.utt}.wav",
                                "ground_truth": it.gt_wav, "prompt": it.prompt_wav})
    return samples


def _player(path) -> str:
    if path is None or not Path(path).is_file():
        return "—"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<audio controls preload=none src="data:audio/wav;base64,{data}"></audio>'


def write_report(inputs, out_dir, samples_per_testset: int = 0) -> Path:
    """Collect `inputs` (run, sweep or evaluation folders, sweep.json, checkpoints), write
    `report.md` + PNG figures + self-contained `report.html` into `out_dir`; return report.md's path.
    `samples_per_testset` > 0 adds that many generated test utterances per test set as audio players
    beside their ground truth and prompt (copied into `out_dir/audio/` for the Markdown)."""
    entries = collect(inputs)
    if not entries:
        raise ReportError("nothing to report: no inputs")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [main_table(entries), *ablation_tables(entries), results_table(entries)]
    if rows := flag_rows(entries):  # failure flags (eval/flags.py), newest evaluation per test set
        tables.append(Table("Failure flags (utterances)", FLAG_HEADERS, rows, [
            "hallucination: WER over 100% or 4+ inserted words in a row; truncation: under half the ground truth's "
            "duration (or the prompt-rate estimate); runaway: ended by the length cap; silence: under 0.2 s at speech level"]))
    flagged = flagged_utterances(entries)
    figs = {**metric_figures(entries), **{f"loss/{k}": v for k, v in loss_figures(entries).items()}}
    pngs, files = {}, {}  # figure name -> PNG bytes, file name (unique: train/mel/loss vs train/mel_loss)
    for name, fig in figs.items():
        pngs[name], stem = figure_png(fig), _slug(name)
        files[name] = next(f"{stem}{s}.png" for s in ["", *range(2, 999)] if f"{stem}{s}.png" not in files.values())
        (out_dir / files[name]).write_bytes(pngs[name])
    notes = sorted({n for e in entries for n in e.notes})
    stamp = datetime.now().isoformat(timespec="seconds")
    sources = [str(x) for x in inputs]

    md = [f"# VoxLab report ({stamp})", "", "Inputs: " + ", ".join(f"`{s}`" for s in sources), ""]
    md += [markdown_table(t) for t in tables]
    md += ["## Figures", ""] + [f"![{n}]({files[n]})" for n in pngs] + [""]
    samples = audio_samples(entries, samples_per_testset) if samples_per_testset > 0 else []
    if samples:
        import shutil

        (out_dir / "audio").mkdir(exist_ok=True)
        md += ["## Listen: generated beside the ground truth", "",
               "| run | test set | step | utt | text | generated | ground truth | prompt |", "|---|---|---|---|---|---|---|---|"]
        for s in samples:
            links = []
            for kind in ("generated", "ground_truth", "prompt"):
                if s[kind] is None:
                    links.append("—")
                    continue
                dest = out_dir / "audio" / f"{_slug(s['run'])}_{s['testset']}_{s['utt']}_{kind}.wav"
                shutil.copyfile(s[kind], dest)
                links.append(f"[wav](audio/{dest.name})")
            md.append(f"| {s['run']} | {s['testset']} | {s['step']} | {s['utt']} | {s['text']} | " + " | ".join(links) + " |")
        md.append("")
    md += flagged_markdown(flagged, out_dir, _slug)
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes]
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    body = [f"<h1>VoxLab report ({stamp})</h1><p>Inputs: {html.escape(', '.join(sources))}</p>"]
    body += [html_table(t) for t in tables]
    body += ["<h2>Figures</h2>"] + [f'<figure><img alt="{html.escape(n)}" src="data:image/png;base64,'
                                    f'{base64.b64encode(png).decode()}"></figure>' for n, png in pngs.items()]
    if samples:
        esc = html.escape
        body += ["<h2>Listen: generated beside the ground truth</h2><table><thead><tr><th>run</th><th>test set</th>"
                 "<th>step</th><th>utt</th><th>text</th><th>generated</th><th>ground truth</th><th>prompt</th></tr></thead><tbody>"]
        body += [f"<tr><td>{esc(s['run'])}</td><td>{esc(s['testset'])}</td><td>{s['step']}</td><td>{esc(s['utt'])}</td>"
                 f"<td>{esc(s['text'])}</td><td>{_player(s['generated'])}</td><td>{_player(s['ground_truth'])}</td>"
                 f"<td>{_player(s['prompt'])}</td></tr>" for s in samples]
        body += ["</tbody></table>"]
    body.append(flagged_html(flagged, _player))
    if notes:
        body += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    page = (f"<!DOCTYPE html><html><head><meta charset=utf-8><title>VoxLab report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return out_dir / "report.md"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.reporting.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="run, sweep or evaluation folders, sweep.json, checkpoints")
    p.add_argument("--out", help="output folder (default reports/<YYYYmmdd-HHMMSS>)")
    p.add_argument("--samples", type=int, default=3,
                   help="generated test utterances per test set shown as audio players beside the ground truth (0: none)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous report in --out")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        # --out: new, empty or a previous report (only with --overwrite); nothing else is written into
        if out.exists() and not out.is_dir():
            raise ReportError(f"--out {out} is a file, not a folder: choose a new folder")
        names = [x.name for x in out.iterdir()] if out.is_dir() else []
        if names and not ("report.md" in names and all(n in ("report.md", "report.html", "audio") or
                                                        n.endswith(".png") for n in names)):
            raise ReportError(f"--out {out} is not a previous report (it holds {', '.join(sorted(names)[:5])}): "
                              "choose a new or empty folder; it is never written into, even with --overwrite")
        if names and not args.overwrite:
            raise ReportError(f"--out {out} holds a previous report: pass --overwrite to replace it")
        md = write_report(args.runs, out, samples_per_testset=args.samples)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {md}\nhtml:   {md.with_name('report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
