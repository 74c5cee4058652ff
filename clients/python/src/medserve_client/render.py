"""Plain-text rendering for the terminal: tables, model cards (markdown), prediction answers."""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

_INLINE = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"[image: \1]"),
    (re.compile(r"\[([^\]]+)\]\(([^)]+)\)"), r"\1 <\2>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"\1"),
    (re.compile(r"`([^`]*)`"), r"\1"),
]


MAX_FIELD_ERRORS = 20
"""Field errors shown for a problem (the rest are counted)."""


def width() -> int:
    """The terminal's width (80 when not a terminal), at least 60."""
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int | None = None) -> str:
    """An aligned table; the widest columns are cut (with ``…``) to fit ``max_width``."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    n = len(headers)
    widths = [max(len(r[i]) if i < len(r) else 0 for r in cells) for i in range(n)]
    limit = max_width or width()
    while sum(widths) + 2 * (n - 1) > limit and max(widths) > 8:
        widest = widths.index(max(widths))
        widths[widest] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    lines = []
    for k, row in enumerate(cells):
        padded = [fit(row[i] if i < len(row) else "", widths[i]).ljust(widths[i]) for i in range(n)]
        lines.append("  ".join(padded).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def inline(text: str) -> str:
    """Markdown inline markup removed (bold, code, links, images)."""
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def markdown(text: str, max_width: int | None = None) -> str:
    """A markdown document (a model card) as readable plain text: headings underlined,
    paragraphs and bullets wrapped, pipe tables aligned, code blocks indented."""
    w = max_width or width()
    out: list[str] = []
    pending_table: list[list[str]] = []
    in_code = False

    def flush_table() -> None:
        if pending_table:
            head, *body = pending_table
            out.append(textwrap.indent(table(head, body, w - 2), "  "))
            out.append("")
            pending_table.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("```"):
            flush_table()
            in_code = not in_code
            continue
        if in_code:
            out.append("    " + line)
            continue
        if line.startswith("|"):
            cells = [inline(c.strip()) for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells):
                pending_table.append(cells)
            continue
        flush_table()
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            title = inline(heading.group(2))
            if out and out[-1] != "":
                out.append("")
            out.append(title)
            out.append(("=" if len(heading.group(1)) == 1 else "-") * min(len(title), w))
            continue
        bullet = re.match(r"^(\s*)[-*]\s+(.*)$", line)
        if bullet:
            indent = bullet.group(1)
            out.append(
                textwrap.fill(
                    inline(bullet.group(2)), w, initial_indent=f"{indent}  • ", subsequent_indent=f"{indent}    "
                )
            )
            continue
        out.append(textwrap.fill(inline(line), w) if line else "")
    flush_table()
    return "\n".join(out).strip() + "\n"


def fmt(value: Any, digits: int = 3) -> str:
    """A number for humans (fixed digits, or scientific when tiny); other values as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def model_line(model: dict[str, Any]) -> str:
    """``id version (task) sha256 …`` plus SYNTHETIC when so."""
    sha = str(model.get("sha256", ""))[:12]
    synthetic = "  SYNTHETIC DEMO" if model.get("synthetic") else ""
    return f"{model.get('id')} {model.get('version')} ({model.get('task')}), sha256 {sha}…{synthetic}"


def models_table(models: Sequence[dict[str, Any]]) -> str:
    """``medserve models``."""
    rows = [
        [
            m.get("id"),
            m.get("version"),
            m.get("task"),
            "synthetic" if m.get("synthetic") else "real",
            m.get("intended_use"),
        ]
        for m in models
    ]
    return table(["id", "version", "task", "data", "intended use"], rows)


def model_detail(model: dict[str, Any]) -> str:
    """``medserve models show``: a header, the versions, then the card."""
    lines = [model_line(model), ""]
    versions = model.get("versions") or []
    if versions:
        rows = [[v.get("version"), v.get("status"), v.get("created"), str(v.get("sha256", ""))[:12]] for v in versions]
        lines += [table(["version", "status", "created", "sha256"], rows), ""]
    card = model.get("card")
    lines.append(markdown(card) if isinstance(card, str) and card else "(this model has no card)\n")
    return "\n".join(lines)


def top_contributions(contributions: dict[str, float], n: int) -> str:
    """The ``n`` largest contributions by size, signed: ``worst_area +0.12, ...``."""
    ranked = sorted(contributions.items(), key=lambda kv: -abs(kv[1]))[:n]
    return ", ".join(f"{name} {value:+.3g}" for name, value in ranked)


def prediction(answer: dict[str, Any], task: str, ids: Sequence[str] | None = None, top: int = 3) -> str:
    """A prediction answer as a table (risk: one row per instance; imaging, vitals: one prediction)."""
    lines = [f"model     {model_line(answer.get('model', {}))}", f"request   {answer.get('request_id')}", ""]
    if task == "risk":
        preds = answer.get("predictions", [])
        explain = any("contributions" in p for p in preds)
        regression = any("value" in p for p in preds)
        headers = ["row", "value", "unit"] if regression else ["row", "label", "probability"]
        if explain:
            headers.append(f"top {top} contributions")
        rows = []
        for i, p in enumerate(preds):
            row_id = ids[i] if ids and i < len(ids) else str(i)
            row = (
                [row_id, fmt(p.get("value")), p.get("unit")]
                if regression
                else [row_id, p.get("label"), fmt(p.get("probability"))]
            )
            if explain:
                row.append(top_contributions(p.get("contributions", {}), top))
            rows.append(row)
        lines.append(table(headers, rows))
    elif task == "imaging":
        pred = answer.get("prediction", {})
        probs = pred.get("probabilities", {})
        rows = [[label, fmt(p), "<-" if label == pred.get("label") else ""] for label, p in probs.items()]
        lines.append(f"label     {pred.get('label')}")
        lines.append(table(["label", "probability", ""], rows))
    elif task == "vitals":
        pred = answer.get("prediction", {})
        news2 = answer.get("news2", {})
        rows = [
            ["prediction", pred.get("label"), fmt(pred.get("probability")), f"within {pred.get('horizon_hours')} h"],
            ["NEWS2", news2.get("risk"), news2.get("score"), "RCP 2017, last observation"],
        ]
        lines.append(table(["", "label / risk", "probability / score", ""], rows))
        windows = answer.get("contributions") or []
        if windows:
            ranked = sorted(windows, key=lambda w: -abs(float(w.get("weight", 0.0))))[:top]
            lines += ["", f"top {top} contributions (time windows)"]
            lines.append(
                table(
                    ["start", "end", "weight"],
                    [[w.get("start"), w.get("end"), f"{w.get('weight'):+.3g}"] for w in ranked],
                )
            )
    lines += [f"warning   {w}" for w in answer.get("warnings", [])]
    return "\n".join(lines) + "\n"


def problem(problem_doc: dict[str, Any], message: str) -> str:
    """A problem document (title, detail, field errors) for stderr."""
    lines = [f"error: {problem_doc.get('title') or message}"]
    if problem_doc.get("detail"):
        lines.append(f"  {problem_doc['detail']}")
    errors = [e for e in problem_doc.get("errors", []) or [] if isinstance(e, dict)]
    for err in errors[:MAX_FIELD_ERRORS]:
        lines.append(f"  - {err.get('field')}: {err.get('message')}")
    more = len(errors[MAX_FIELD_ERRORS:]) + int(problem_doc.get("errors_omitted") or 0)
    if more:
        lines.append(f"  … and {more} more (--json shows the whole answer)")
    if problem_doc.get("request_id"):
        lines.append(f"  (status {problem_doc.get('status')}, request {problem_doc['request_id']})")
    return "\n".join(lines)
