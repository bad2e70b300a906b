"""Where a sweep's children run: the sweep decides *what* runs, a launcher decides *where*.

Every launcher has ``name`` and ``run(jobs, record)``: it runs each `ChildJob` through `run_child`
(one child process per configuration, the command line built once by the sweep) and calls ``record``
with each `ChildResult` as it ends; on Ctrl-C it cancels what has not ended and re-raises.

- `LocalLauncher`: this machine; one after another, or one child per GPU of ``--gpus`` at a time;
- `RayLauncher`: one Ray task per configuration (``num_gpus=1``);
- `SlurmLauncher`: one submitit array task per configuration.

`make_launcher` builds one from the sweep's command-line options and checks, before anything runs,
that its children can reach the tracking store (`store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlm_quant.errors import UserError

LAUNCHERS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class LaunchOptions:
    """The sweep's launcher options as the user gave them (strings from the command line)."""

    launcher: str = "local"
    gpus: str = ""  # "0,1,2,3" (local), "all": every visible GPU
    ray_address: str = ""
    slurm_partition: str = ""
    slurm_gpus_per_task: int | None = None
    slurm_time: str = "240"
    slurm_sbatch: str = ""
    slurm_folder: str = "mlruns/slurm"
    slurm_cluster: str = "slurm"  # "local": submitit's local executor (same path, no sbatch)


def make_launcher(options: LaunchOptions, tracking_uri: str) -> Any:
    """The launcher of ``options``, after checking that its children can write to ``tracking_uri``."""
    from vlm_quant.study.launchers import store

    if options.launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {options.launcher!r}; choose one of {', '.join(LAUNCHERS)}.")
    if options.launcher != "local" and options.gpus:
        raise UserError(
            f"--gpus is for --launcher local; with --launcher {options.launcher} the scheduler assigns GPUs "
            "(Ray: restrict with CUDA_VISIBLE_DEVICES before starting it; SLURM: --slurm-gpus-per-task)."
        )
    if options.launcher == "local":
        from vlm_quant.study.launchers.local import LocalLauncher

        return LocalLauncher(parse_gpus(options.gpus))
    if options.launcher == "ray":
        from vlm_quant.study.launchers.ray import RayLauncher

        launcher = RayLauncher(options.ray_address or None)
        store.check_ray_store(tracking_uri, launcher.address, None)  # a remote ray:// before connecting
        if store.sqlite_path(tracking_uri) is not None:
            store.check_ray_store(tracking_uri, launcher.address, launcher.nodes())
        return launcher
    from vlm_quant.study.launchers.slurm import SlurmLauncher, parse_sbatch, parse_time_min

    store.check_slurm_store(tracking_uri, options.slurm_cluster)
    return SlurmLauncher(
        Path(options.slurm_folder),
        partition=options.slurm_partition or None,
        gpus_per_task=options.slurm_gpus_per_task,
        time_min=parse_time_min(options.slurm_time),
        sbatch=parse_sbatch(options.slurm_sbatch),
        cluster=options.slurm_cluster,
    )


def parse_gpus(text: str) -> list[str] | None:
    """'0,1,3' -> ['0', '1', '3']; 'all' -> every visible GPU; '' -> None (one child at a time)."""
    text = text.strip()
    if not text:
        return None
    if text == "all":
        import os

        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:  # a child's CUDA_VISIBLE_DEVICES replaces the sweep's: keep its physical ids
            return [g.strip() for g in visible.split(",") if g.strip()]

        count = torch.cuda.device_count()
        if not count:
            raise UserError("--gpus all: no CUDA GPU is visible on this machine.")
        return [str(i) for i in range(count)]
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not all(g.isdigit() for g in gpus) or len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus {text!r}: give distinct GPU indices, e.g. 0,1,2,3 (or 'all').")
    return gpus
