"""Checks of the paper's stated numbers against the tracking store, independent of the prose code.

``StoreValues`` answers each ``numbers.json`` source from what the store holds (metrics, params,
predictions rows), recomputing derived numbers (percent changes, paired Δ) itself; ``check_numbers``
asserts every printed number equals that value at the printed precision.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vlm_quant.study.report.bootstrap import paired_bootstrap


@dataclass
class StoreValues:
    metric: Callable[[str, str], float]  # (run id, name) -> value logged
    param: Callable[[str, str], str]
    scores: Callable[[str], dict[str, float]]  # run id -> sample_id -> per-sample primary score
    baseline_id: str
    counts: dict[str, int]  # count:<what>
    n_resamples: int
    bootstrap_seed: int = 0
    confidence: float = 0.95
    # run id -> sample_id -> image id; None: every sample is its own image (captioning)
    images: Callable[[str], dict[str, str]] | None = None

    def paired(self, rid: str) -> tuple[np.ndarray, np.ndarray]:
        base, conf = self.scores(self.baseline_id), self.scores(rid)
        ids = sorted(set(base) & set(conf))
        return np.array([base[i] for i in ids]), np.array([conf[i] for i in ids])

    def value(self, source: str) -> float:
        kind, _, rest = source.partition(":")
        if kind == "metric":
            rid, name = rest.split(":")
            return self.metric(rid, name)
        if kind == "param":
            rid, name = rest.split(":")
            return float(self.param(rid, name))
        if kind == "pct":
            rid, name = rest.split(":")
            a, b = self.metric(self.baseline_id, name), self.metric(rid, name)
            return abs(b - a) / a * 100
        if kind in ("delta", "width"):
            rid, _, part = rest.partition(":")
            base, conf = self.paired(rid)
            if part == "delta":
                return float(np.mean(conf - base))  # plain numpy: the Δ is a mean of paired differences
            if part == "n_samples":
                return float(len(base))
            est = paired_bootstrap(base, conf, n_resamples=self.n_resamples, seed=self.bootstrap_seed)
            return {"low": est.low, "high": est.high, "": est.high - est.low}[part]
        if kind in ("images", "mde"):
            return self._power(rest)[kind]
        if kind == "count":
            return float(self.counts[rest])
        if kind == "setting":
            return {
                "confidence_pct": self.confidence * 100,
                "n_resamples": self.n_resamples,
                "bootstrap_seed": self.bootstrap_seed,
            }[rest]
        raise AssertionError(f"unknown number source {source!r}")


    def _power(self, rid: str) -> dict[str, float]:
        """Images paired and the minimum detectable Δ, from the definition: SE = sqrt(C/(C-1) *
        sum_c (D_c - Δ m_c)^2) / N over the C images (D_c: summed differences, m_c: rows), MDE =
        (z_0.975 + z_0.80) SE with the quantiles from a normal table."""
        base, conf = self.scores(self.baseline_id), self.scores(rid)
        ids = sorted(set(base) & set(conf))
        image_of = self.images(self.baseline_id) if self.images else {i: i for i in ids}
        sums: dict[str, list[float]] = {}
        for i in ids:
            entry = sums.setdefault(str(image_of[i]), [0.0, 0.0])
            entry[0] += conf[i] - base[i]
            entry[1] += 1
        delta = sum(d for d, _ in sums.values()) / len(ids)
        c = len(sums)
        se = (c / (c - 1) * sum((d - delta * m) ** 2 for d, m in sums.values())) ** 0.5 / len(ids)
        return {"images": float(c), "mde": (1.959963984540054 + 0.8416212335729143) * se}


def printed_as(value: float, text: str) -> bool:
    """True when ``text`` is ``value`` rounded to the number of decimals ``text`` shows."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    expected = f"{value:.{decimals}f}"
    if expected.startswith("-") and float(expected) == 0:
        expected = expected[1:]
    return text == expected


def check_numbers(records: list[dict], values: StoreValues) -> None:
    assert records, "the prose stated no number at all"
    for record in records:
        truth = values.value(record["source"])
        assert record["value"] == __import__("pytest").approx(truth, rel=1e-9, abs=1e-12), record
        assert printed_as(truth, record["text"]), (record, truth)


_STRIP = (
    r"\\texttt\{[^}]*\}",  # store strings: model ids, hashes, versions, names
    r"\\(?:ref|label|cite|input|includegraphics|bibliography\w*)(?:\[[^\]]*\])?\{[^}]*\}",
    r"\\placeholder\{[^}]*\}",
    r"\$[^$]*\$",  # math: formulas and units such as CO$_2$
    r"\\(?:begin|end)\{[^}]*\}(?:\[[^\]]*\])?(?:\{[^}]*\})?",
    r"\\[a-zA-Z]+\*?(?:\[[^\]]*\])?",  # other commands (their braces stay, harmless)
    r"``[^']*''",  # the prompt, quoted verbatim from the store
)
NUMBER = re.compile(r"(?<![\w.\-])-?\d+(?:\.\d+)?(?![\w.]*\w)")


def prose_numbers(tex: str) -> list[str]:
    """Every number written in the prose of ``tex`` (tables, figures, code and math left out)."""
    body = tex.split(r"\maketitle", 1)[-1].split(r"\bibliographystyle", 1)[0]
    body = re.sub(r"\\begin\{(figure\*?|table\*?)\}.*?\\end\{\1\}", " ", body, flags=re.S)
    for pattern in _STRIP:
        body = re.sub(pattern, " ", body)
    return NUMBER.findall(body)
