"""Markdown model cards rendered from a manifest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from model_export.splits import SEED

NOT_FOR_CLINICAL_USE_HEADING = "NOT FOR CLINICAL USE"

__all__ = ["NOT_FOR_CLINICAL_USE_HEADING", "render_card"]


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) >= 10 ** (-nd) or x == 0 else f"{x:.2e}"
    return str(x)


def _metric_rows(metrics: Mapping[str, Any]) -> list[str]:
    rows = ["| metric | value | 95% CI |", "|---|---|---|"]
    for k, v in metrics.items():
        if isinstance(v, Mapping) and "value" in v:
            lo, hi = v.get("ci95", [None, None])
            rows.append(f"| {k} | {_fmt(v['value'])} | {_fmt(lo)} – {_fmt(hi)} |")
    return rows


def render_card(manifest: Mapping[str, Any], *, extra_sections: Mapping[str, str] | None = None) -> str:
    """Render the markdown model card of a manifest.

    Sections: intended use; NOT FOR CLINICAL USE and why; data provenance; inputs;
    outputs and threshold; metrics with 95% CIs; calibration (reliability table + ECE);
    limitations; parity; how to reproduce. ``extra_sections`` (title -> markdown) are
    added before "Limitations"; a ``"Limitations"`` entry replaces the generic text.
    """
    extra = dict(extra_sections or {})
    m = manifest
    td = m.get("training_data", {})
    out = m.get("outputs", {})
    cal = m.get("calibration", {})
    met = m.get("metrics", {})
    par = m.get("parity", {})
    onnx_ = m.get("onnx", {})
    L: list[str] = [f"# Model card: `{m['id']}` {m['version']}", ""]
    synth = "SYNTHETIC data (demo only)" if m.get("synthetic") else "real data, research use"
    L += [f"Task: **{m['task']}** ({m.get('kind', '')}). Trained on {synth}.", ""]
    L += ["## Intended use", "", str(m.get("intended_use", "")), ""]
    L += [
        f"## {NOT_FOR_CLINICAL_USE_HEADING}",
        "",
        f"**{NOT_FOR_CLINICAL_USE_HEADING}.** " + str(m.get("not_for_clinical_use", "")),
        "",
    ]
    L += ["## Training data (provenance)", ""]
    for key in ("name", "source", "citation", "license", "split"):
        if td.get(key):
            L.append(f"- **{key}**: {td[key]}")
    L.append(
        f"- **n**: total {td.get('n_total')}, train {td.get('n_train')}, validation "
        f"{td.get('n_validation')}, test {td.get('n_test')}"
    )
    L.append(f"- **synthetic**: {str(td.get('synthetic', m.get('synthetic'))).lower()}")
    L.append("")
    inputs = m.get("inputs", [])
    if inputs:
        L += [
            "## Inputs",
            "",
            f"ONNX input `{onnx_.get('inputs', [{}])[0].get('name', '')}` "
            f"takes the columns in this order, in raw units; preprocessing: "
            f"`{json.dumps(m.get('preprocessing', {}), sort_keys=True)}`.",
            "",
            "| # | name | unit | accepted range | training range (mean) | description |",
            "|---|---|---|---|---|---|",
        ]
        for i, f in enumerate(inputs):
            rng = f"{_fmt(f.get('min'))} – {_fmt(f.get('max'))}"
            if f.get("allowed"):
                rng = "one of " + ", ".join(str(a) for a in f["allowed"])
            L.append(
                f"| {i} | `{f['name']}` | {f.get('unit', '')} | {rng} | "
                f"{_fmt(f.get('train_min'))} – {_fmt(f.get('train_max'))} ({_fmt(f.get('train_mean'))}) | "
                f"{f.get('description', '')} |"
            )
        L.append("")
    L += ["## Output", ""]
    outs = ", ".join(f"`{o['name']}` {o.get('shape')}" for o in onnx_.get("outputs", []))
    L.append(f"ONNX outputs: {outs}.")
    if out.get("labels"):
        L.append(
            f"The output is the calibrated probability of **{out.get('positive_label')}** "
            f"(labels {out.get('labels')}). Label = `{out.get('positive_label')}` iff "
            f"probability >= **{_fmt(out.get('threshold'), 4)}**."
        )
        L += ["", f"Threshold rule: {out.get('threshold_rule', '')}."]
    else:
        L.append(f"Unit: {out.get('unit')}. Target: {out.get('target', '')}.")
    L.append("")
    L += [
        f"## Metrics (held-out test split, n={met.get('n_test')}, {met.get('n_bootstrap')} bootstrap "
        "resamples, 95% percentile intervals)",
        "",
    ]
    L += _metric_rows(met)
    L.append("")
    if cal and cal.get("method") == "none":
        L += ["## Calibration", "", "None: the output is not a probability (method `none`).", ""]
    elif cal:
        L += [
            "## Calibration",
            "",
            f"Method: **{cal.get('method')}**, parameters "
            f"`{json.dumps(cal.get('params', {}), sort_keys=True)}`. "
            f"ECE on the test split: {_fmt(cal.get('ece'))}.",
            "",
        ]
        rel = cal.get("reliability") or []
        if rel:
            L += [
                "Reliability table (test split, equal-width bins, empty bins omitted):",
                "",
                "| bin | mean predicted | observed | count |",
                "|---|---|---|---|",
            ]
            for r in rel:
                L.append(
                    f"| {r['bin_lower']:.1f}–{r['bin_upper']:.1f} | {_fmt(r['mean_predicted'])} | "
                    f"{_fmt(r['observed'])} | {r['count']} |"
                )
            L.append("")
    for title, body in extra.items():
        if title != "Limitations":
            L += [f"## {title}", "", body.strip(), ""]
    L += ["## Limitations", ""]
    if "Limitations" in extra:
        L.append(extra["Limitations"].strip())
    else:
        L.append(
            f"- Small dataset (n={td.get('n_total')}); the intervals above are wide and the model has not "
            "been validated on any external cohort.\n- Inputs outside the training range are not supported."
        )
    L.append("")
    if par:
        L += [
            "## Export parity",
            "",
            f"ONNX Runtime vs Keras on the held-out set (n={par.get('n')}): max abs "
            f"difference {_fmt(par.get('max_abs_diff'))}; pass rule |onnx - keras| <= "
            f"{_fmt(par.get('tolerance'))}"
            + (f" + {_fmt(par['rtol'])} x |keras|" if par.get("rtol") else "")
            + " for every element. "
            f"Reference arrays: `{par.get('reference', 'parity.npz')}`. ONNX opset {onnx_.get('opset')}, "
            f"sha256 `{onnx_.get('sha256', '(filled at write)')}`.",
            "",
        ]
    cw = m.get("created_with", {})
    L += [
        "## How to reproduce",
        "",
        "```sh",
        "make models            # = .venv-export/bin/python -m model_export --all",
        f".venv-export/bin/python -m model_export --model {m['id']}",
        "```",
        "",
        "Deterministic given the seed ("
        + str(SEED)
        + ") as far as TensorFlow allows. Built with "
        + ", ".join(f"{k} {v}" for k, v in sorted(cw.items()))
        + ".",
        "",
    ]
    return "\n".join(L)
