"""What the terminal shows during `vlm-quant evaluate`: stage lines, no known library noise, a summary.

Known harmless library messages (torchao's optional kernels that are missing on this machine, torch's
pytree deprecation notice, MLflow's and alembic's table-creation logs, bitsandbytes' optional CPU
kernels, the Java PTB tokenizer's speed report) and transformers' own progress bars are kept off the
terminal; every log record, these included, still goes to the run's log
file, which the run logs as the artifact ``logs/run.log``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlm_quant.study.report.render import MIB_SPEC, fmt_number

# (logger name prefix, text in the message): both must match; "" matches any message.
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    ("torchao", "Failed to load"),
    ("torchao", "Detected no triton"),
    ("torch.utils._pytree", "register_constant"),
    ("mlflow.store.db.utils", ""),
    ("mlflow.tracking.fluent", "system metrics"),
    ("mlflow.system_metrics", ""),
    ("alembic", ""),
    ("bitsandbytes.backends.cpu.ops", "kernels-community"),
    # the Java PTB tokenizer's speed report (its stderr, captured by tasks/caption_metrics.py)
    ("pycocoevalcap.ptbtokenizer", "PTBTokenizer tokenized"),
    # third-party deprecation notices raised inside libraries (captured from `warnings` as py.warnings)
    ("py.warnings", "SADeprecationWarning"),
    ("py.warnings", "Pandas4Warning"),
    ("py.warnings", "codecarbon"),
    ("py.warnings", "torch.jit.script_method"),
)
ARTIFACT_RUN_LOG = "logs/run.log"


class KnownNoise(logging.Filter):
    """Drops the known harmless records (from the handler it is attached to only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(record.name.startswith(name) and text in message for name, text in KNOWN_NOISE)


_INSTALLED: list[Path] = []  # once per process (the CLI group may be invoked repeatedly in tests)


def quiet_terminal() -> Path:
    """Filter the terminal handlers, send every record to a run log file; returns that file."""
    import torch  # noqa: F401 - installs torch's own "torch" logger handler, which we filter too

    from vlm_quant.tracking.tracker import install_mlflow_logging

    install_mlflow_logging()  # MLflow's "mlflow" handler exists only once it is imported: filter it too

    if _INSTALLED:
        return _INSTALLED[0]
    hide_transformers_bars()
    log_file = Path(tempfile.mkstemp(prefix="vlmq-run-", suffix=".log")[1])
    to_file = logging.FileHandler(log_file)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    noise = KnownNoise()
    for name in ("", "torch", "mlflow"):  # torch and mlflow log through their own handlers
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.addFilter(noise)
        logger.addHandler(to_file)
    for name, _ in KNOWN_NOISE:  # INFO records of these are noise on a terminal, useful in the file
        logging.getLogger(name).setLevel(logging.INFO)
    stages = logging.getLogger("vlm_quant.stage")  # "load   3.1 s": no level/logger prefix
    stages.propagate = False
    plain = logging.StreamHandler()
    plain.setFormatter(logging.Formatter("» %(message)s"))
    stages.addHandler(plain)
    stages.addHandler(to_file)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a "py.warnings" record: filtered the same way
    _INSTALLED.append(log_file)
    return log_file


def hide_transformers_bars() -> None:
    """No bar of transformers' own ("Loading weights", "Writing model shards"): the load and checkpoint
    stage lines time them. Download bars (huggingface_hub's own tqdm) stay: a first download of real
    weights takes minutes, and the bar is how a user sees it progress."""
    from transformers.utils import logging as transformers_logging

    def hidden(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return factory(*args, **{**kwargs, "disable": True})

    transformers_logging.set_tqdm_hook(hidden)


# --- the summary printed at the end --------------------------------------------------------------

# (label, unit, format spec, keys: the first one present is shown). Other helpers may rename cost keys;
# whatever of these exists is printed. MiB at 3 significant digits: a 0.04 MiB tiny model is not "0.0".
SUMMARY_ROWS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("CIDEr", "", ".3f", ("cider",)),
    ("VQA accuracy", "0-1", ".3f", ("vqa_accuracy",)),
    ("latency p50 (batch 1)", "ms", ".1f", ("latency_ms_p50", "latency_ms_mean")),
    ("throughput", "images/s", ".2f", ("throughput_images_per_s",)),
    ("throughput", "tokens/s", ".1f", ("throughput_tokens_per_s",)),
    ("peak VRAM", "MiB", MIB_SPEC, ("peak_vram_allocated_mib",)),
    ("peak RSS", "MiB", MIB_SPEC, ("peak_rss_mib",)),
    ("size on disk", "MiB", MIB_SPEC, ("size_on_disk_mib",)),
    ("energy", "J/image", ".2f", ("energy_j_per_image", "quality_pass_energy_j_per_image")),
)


def summary_lines(
    metrics: Mapping[str, float], *, run_name: str, run_id: str, weights: str, tracking_uri: str,
    experiment_id: str | None = None,
) -> list[str]:
    """The closing table (each value with its unit), the random-weights warning, where the run is."""
    lines = [f"{run_name}  (run {run_id})"]
    shown = [(label, unit, fmt_number(metrics[key], fmt)) for label, unit, fmt, keys in SUMMARY_ROWS
             for key in [next((k for k in keys if k in metrics), None)] if key]
    width = max((len(label) for label, _, _ in shown), default=10)
    lines += [f"  {label:<{width}}  {value:>10} {unit}" for label, unit, value in shown]
    if "energy_j_per_image" not in metrics and "quality_pass_energy_j_per_image" not in metrics:
        lines.append(f"  {'energy':<{width}}  {'absent':>10} (no GPU energy counter; see the run's tags)")
    if weights == "random":
        lines.append("  RANDOM WEIGHTS: the quality numbers are meaningless; only the cost numbers are real.")
    lines.append(f"tracking store: {tracking_uri}")
    page = f"/#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else ""
    lines.append(f"open it: mlflow ui --backend-store-uri {_ui_uri(tracking_uri)}")
    lines.append(f"         then http://127.0.0.1:5000{page}")
    return lines


def _ui_uri(uri: str) -> str:
    return uri if " " not in uri else f"'{uri}'"


def print_summary(echo: Any, metrics: Mapping[str, float], **where: Any) -> None:
    for line in summary_lines(metrics, **where):
        echo(line)
