"""Structural checks of generated LaTeX tables (no TeX installation needed)."""

from __future__ import annotations

import re


def check_booktabs(tex: str) -> list[str]:
    """Structural sanity of a generated table; returns the body rows."""
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    positions = [tex.index(rule) for rule in (r"\toprule", r"\midrule", r"\bottomrule")]
    assert positions == sorted(positions)
    assert all(tex.count(rule) == 1 for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert not re.search(r"(?<!\\)[_%&#]", body.replace(" & ", " ")), "unescaped LaTeX special"
    assert body.count("{") - body.count(r"\{") == body.count("}") - body.count(r"\}")
    spec = re.search(r"\\begin\{tabular\}\{((?:[lrc]|p\{[^}]*\})+)\}", tex).group(1)
    columns = len(re.sub(r"p\{[^}]*\}", "p", spec))
    between = tex.split(r"\toprule")[1].split(r"\bottomrule")[0].replace(r"\midrule", "")
    rows = [row for row in between.splitlines() if row.strip()]
    for row in rows:
        assert row.endswith(r"\\") and row.count(" & ") == columns - 1, row
    return rows


def table_floats(tex: str) -> list[str]:
    """Each ``table`` float of a generated file (a wide table is written as several, one per topic)."""
    return re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, flags=re.S)
