"""The sweep's --launcher options (docs/launchers.md), also spelled with underscores (`mlflow run -P`)."""

from __future__ import annotations

from typing import Any

import click

from vlm_quant.study.launchers import LAUNCHERS, LaunchOptions

OPTIONS = (
    ("launcher", click.Choice(LAUNCHERS), "local", "Where the children run: local, ray or slurm."),
    ("gpus", str, "", "local: run one child per GPU at a time on these GPUs, e.g. 0,1,2,3 (or 'all')."),
    ("ray_address", str, "", "ray: 'auto' (this machine's cluster), ray://HOST:PORT; else a local Ray."),
    ("slurm_partition", str, "", "slurm: the partition of the array jobs."),
    ("slurm_gpus_per_task", int, None, "slurm: GPUs per array task (sbatch --gpus-per-task)."),
    ("slurm_time", str, "240", "slurm: time limit per task, minutes or [D-]HH:MM:SS."),
    ("slurm_sbatch", str, "", "slurm: extra sbatch options, e.g. 'account=lab,qos=high'."),
    ("slurm_folder", str, "mlruns/slurm", "slurm: folder of submitit's scripts and logs (on a shared path)."),
)


def launcher_options(command: Any) -> Any:
    """Decorate the sweep with one --option per launcher setting (and a hidden --slurm-cluster)."""
    command = click.option(
        "--slurm-cluster",
        "--slurm_cluster",
        "slurm_cluster",
        type=click.Choice(["slurm", "local"]),
        default="slurm",
        hidden=True,
        help="local: submitit's local executor (the SLURM code path without sbatch; tests, dry runs).",
    )(command)
    for name, kind, default, text in reversed(OPTIONS):
        dashed = "--" + name.replace("_", "-")
        spellings = (dashed, f"--{name}") if "_" in name else (dashed,)
        command = click.option(*spellings, name, type=kind, default=default, show_default=bool(default),
                               help=text)(command)  # fmt: skip
    return command


def pop_launch_options(options: dict[str, Any]) -> LaunchOptions:
    """Take the launcher settings out of the command's options (the rest are ExperimentConfig's)."""
    names = [name for name, *_ in OPTIONS] + ["slurm_cluster"]
    values = {name: options.pop(name) for name in names}
    return LaunchOptions(**{k: v for k, v in values.items() if v is not None or k == "slurm_gpus_per_task"})
