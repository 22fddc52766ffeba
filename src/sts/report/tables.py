"""A table as a small standalone HTML page (the Snakemake report shows HTML files inline)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 4px 8px; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; padding-top: 0.6em; color: #444; max-width: 60em; }
"""


def html_table(frame: pd.DataFrame, title: str, note: str = "", digits: int = 3) -> str:
    """``frame`` as an HTML page: floats to ``digits`` decimals, missing values empty."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):  # keeps each column's type
        cells = []
        for value in row:
            if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
                cells.append("<td></td>")
            elif isinstance(value, (float, np.floating)):
                cells.append(f'<td class="num">{value:.{digits}f}</td>')
            elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
                cells.append(f'<td class="num">{value}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{html.escape(note)}</caption>" if note else ""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h3>{html.escape(title)}</h3>\n"
        f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        "</body></html>\n"
    )
