"""The tables of dropbench.report.tables as text: one decimal, marks for degenerate, underfit and significant
scores, 'missing' and 'n/a' for gaps, in Markdown, LaTeX and HTML pages."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from dropbench.report.aggregate import (CHANCE_TEXT, DEGENERATE, DEGENERATE_MARK, MISSING, MISSING_TEXT, NA_TEXT,
                                        UNDERFIT, UNDERFIT_MARK, html_page, html_table, missing_sentence)

if TYPE_CHECKING:
    from dropbench.report.tables import Table


def score_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in ("strategy", "k", "layers_kept")]


def _display(table: pd.DataFrame) -> pd.DataFrame:
    return table.rename(columns={"layers_kept": "layers kept"})


def _markdown(table: pd.DataFrame) -> str:
    align = ["left"] + ["right"] * (len(table.columns) - 1)
    return _display(table).to_markdown(index=False, disable_numparse=True, colalign=align)


def _cell_text(value, mark: str) -> str:
    if mark == "chance":
        return CHANCE_TEXT
    if mark == MISSING:
        return MISSING_TEXT
    if pd.isna(value):
        return DEGENERATE if mark == DEGENERATE else NA_TEXT
    return f"{value:.1f}" + {DEGENERATE: DEGENERATE_MARK, UNDERFIT: UNDERFIT_MARK}.get(mark, "")


def _as_text(table: Table) -> pd.DataFrame:
    """Scores with one decimal, 'missing', 'degenerate' or 'n/a' for gaps (tabulate prints NaN as 'nan'),
    followed by their significance marks."""
    out = table.values.astype(object)
    for column in table.values.columns:
        if column in score_columns(table.values):
            flags = table.flags[column] if table.flags is not None and column in table.flags else [""] * len(out)
            out[column] = [_cell_text(v, m) + f for v, m, f in zip(table.values[column], table.marks[column], flags)]
        else:
            out[column] = [MISSING_TEXT if pd.isna(v) else str(v) for v in table.values[column]]
    return out


def _chance_text(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype(object)
    for column in ("full model", "chance", "above chance"):
        out[column] = [NA_TEXT if pd.isna(v) else f"{v:.1f}" for v in table[column]]
    return out


TITLES = {
    "scores": "Dev score x 100 (paper score per task)",
    "metrics": "Every official metric x 100",
    "percent": "Percent of the full model (paper score)",
    "chance": "Full model against chance (paper score x 100)",
    "retried": "Diverged runs re-run with another seed",
    "fit": "Training fit: loss / trivial predictor's loss, train (last epoch) and dev; underfit seeds",
}


def _texts(tables: Mapping[str, Table], chance: pd.DataFrame, extra: Mapping[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """The tables as text; ``extra``: tables already text (slug -> frame), e.g. ``fit`` and ``retried``."""
    texts = {**{slug: _display(_as_text(table)) for slug, table in tables.items()}, "chance": _chance_text(chance)}
    return {**texts, **(extra or {})}


def model_tables_markdown(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                          notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    lines = [f"## {model}", ""]
    if note:
        lines += [f"*{note}*", ""]
    lines += [missing_sentence(*missing), ""]
    for slug, text in _texts(tables, chance, extra).items():
        lines += [f"### {TITLES[slug]}", "", _markdown(text), ""]
    lines += [f"- {line}" for line in notes] + [""]
    return "\n".join(lines)


def model_tables_latex(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                       notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    parts = []
    for slug, text in _texts(tables, chance, extra).items():
        caption = f"{_latex_escape(model)}: {_latex_escape(TITLES[slug])}. {_latex_escape(missing_sentence(*missing))}"
        if note:
            caption += f" {_latex_escape(note)}."
        caption += "".join(f" {_latex_escape(line)}" for line in notes)
        parts.append(text.to_latex(index=False, caption=caption, label=f"tab:dropbench-{_label_safe(model)}-{slug}", escape=True))
    return "\n".join(parts)


def model_tables_html(model: str, note: str, tables: Mapping[str, Table], chance: pd.DataFrame,
                      notes: list[str], missing: tuple[int, int], extra: Mapping[str, pd.DataFrame] | None = None) -> str:
    body = [f"<h2>{html.escape(model)}</h2>"]
    if note:
        body.append(f"<p class='note'>{html.escape(note)}</p>")
    body.append(f"<p>{html.escape(missing_sentence(*missing))}</p>")
    for slug, text in _texts(tables, chance, extra).items():
        body += [f"<h3>{html.escape(TITLES[slug])}</h3>", html_table(text)]
    body += [f"<p class='note'>{html.escape(line)}</p>" for line in notes]
    return html_page(f"dropbench: {model}", body)


def _latex_escape(text: str) -> str:
    replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(replacements.get(char, char) for char in text)


def _label_safe(text: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in text)
