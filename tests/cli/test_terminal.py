"""The terminal: known library noise filtered (kept in the log file), the closing summary."""

from __future__ import annotations

import logging

from vlm_quant.cli.terminal import KnownNoise, summary_lines


def record(name: str, message: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_known_noise_is_dropped_and_everything_else_kept():
    noise = KnownNoise()
    assert not noise.filter(record("torchao", "Failed to load /x/_C_mxfp8.so: Could not load this library"))
    assert not noise.filter(
        record("torch.utils._pytree", "Calling register_constant() on Enum is deprecated")
    )
    assert not noise.filter(record("mlflow.store.db.utils", "Creating initial MLflow database tables...", 20))
    assert noise.filter(record("torchao", "int8 weight-only quantization failed on layer 3"))
    assert noise.filter(record("vlm_quant.run.runner", "Failed to load the image 12"))


def test_summary_has_units_random_weights_line_and_the_ui_command():
    metrics = {
        "cider": 0.01,
        "latency_ms_p50": 95.25,
        "throughput_images_per_s": 3.5,
        "peak_rss_mib": 900.0,
        "size_on_disk_mib": 12.5,
    }
    lines = summary_lines(
        metrics,
        run_name="M · int8",
        run_id="abc",
        weights="random",
        tracking_uri="sqlite:///mlruns/mlflow.db",
        experiment_id="1",
    )
    text = "\n".join(lines)
    assert "95.2 ms" in text and "3.50 images/s" in text and "900 MiB" in text and "12.5 MiB" in text
    assert "energy" in text and "absent" in text  # not measured on CPU: said, never 0
    assert "RANDOM WEIGHTS" in text
    assert (
        "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db" in text
        and "http://127.0.0.1:5000/#/experiments/1/runs/abc" in text
    )
    pretrained = "\n".join(
        summary_lines(
            {"vqa_accuracy": 0.5},
            run_name="x",
            run_id="r",
            weights="pretrained",
            tracking_uri="sqlite:///a.db",
        )
    )
    assert "RANDOM" not in pretrained and "VQA accuracy" in pretrained and "latency" not in pretrained
    tiny = "\n".join(summary_lines({"size_on_disk_mib": 0.0432}, run_name="x", run_id="r",
                                   weights="pretrained", tracking_uri="sqlite:///a.db"))
    assert "0.0432 MiB" in tiny  # a tiny model's size is not printed as 0.0
