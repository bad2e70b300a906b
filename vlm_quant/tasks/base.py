"""What every task provides to the runner: its samples, its requests, its scores.

A task is a typed value (lighteval's shape): `prepare` reads and checks the data before any model is
loaded; `request` turns a sample and its image into a generation request; `score` turns predictions
into corpus metrics and one row per sample (the predictions JSONL, with per-sample scores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from vlm_quant.engines.generate import Request


@dataclass(frozen=True)
class Split:
    """A whole split as read from its source: every sample by sample id, and how to open its image."""

    dataset: str
    split: str
    samples: dict[int, Any]  # sample_id -> CaptionSample / VqaSample
    open_image: Callable[[Any], Image.Image]
    data_dir: str = ""


@dataclass(frozen=True)
class TaskData:
    """The evaluated samples in evaluation order and how to open their images."""

    dataset: str
    split: str
    samples: dict[int, Any]  # sample_id -> task-specific sample (has .sample_id and .image_file)
    ids: list[int]  # the seeded subset, in evaluation order
    open_image: Callable[[Any], Image.Image]
    data_dir: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # extra params to log (prompt template, shots, ...)


@dataclass(frozen=True)
class TaskScores:
    """Corpus metrics (run metrics), one JSON-ready row per sample, and tags to set."""

    corpus: dict[str, float]
    rows: list[dict[str, Any]]
    tags: dict[str, str] = field(default_factory=dict)


class Task(Protocol):
    name: str
    table_columns: tuple[str, ...]  # columns of the MLflow predictions table
    scoring_needs_java: bool  # `score` runs a Java program (checked before a run starts)

    def prepare(self, cfg: Any) -> TaskData: ...

    def request(self, data: TaskData, sample: Any, image: Image.Image) -> Request: ...

    def score(self, data: TaskData, predictions: dict[int, str]) -> TaskScores: ...

    def log_extras(self, tracker: Any, data: TaskData, scores: TaskScores) -> None: ...
