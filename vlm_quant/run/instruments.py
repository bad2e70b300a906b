"""The run's measuring instruments, started once and always stopped: NVML power sampler, energy meter,
codecarbon, idle power. On a machine without NVML they are null objects and the reason is logged.

Used as a context manager around the whole run, so the sampler thread stops (keeping its samples)
even when the run fails; `log_to` writes the power history, CSV, plot and codecarbon metrics. Entered
together with `logged_on_failure(tracker)`, a FAILED or KILLED run gets them too (with the idle power
and the reason tags), since a failure late in a run is when the power trace says most.

The power history (`gpu_power_w`, step = ms) of a resumed run continues the step axis of the attempt
before it: its steps start one sampling period after the previous attempt's last step, so attempts
are laid end to end (the time between attempts, when nothing ran, is not on the axis).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vlm_quant.measure.carbon import open_machine_codecarbon_tracker
from vlm_quant.measure.energy import EnergyMeter, measure_idle_window
from vlm_quant.measure.nvml import cuda_index_of, nvml_indices, open_gpu
from vlm_quant.measure.power_sampler import PowerSampler, peak_memory_used_mib, plot_power, write_power_csv
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.run.distributed import RankInfo, rank_info
from vlm_quant.run.interrupts import shielded
from vlm_quant.tracking import run_schema

log = logging.getLogger(__name__)


class RunInstruments:
    """GPU power over time (>= ``power_hz`` Hz), energy windows, idle power and codecarbon for one run.

    Each rank measures its own GPU (``cuda:{local rank}``, found in NVML by UUID); codecarbon runs
    once per machine, in local rank 0, over the GPUs of all that machine's ranks (``rank``: this
    process's place, default from the launcher's variables).
    """

    def __init__(
        self,
        device: torch.device,
        *,
        power_hz: float,
        idle_seconds: float,
        country_iso_code: str,
        pue: float,
        rank: RankInfo | None = None,
    ):
        self.device = device
        self.timer = DeviceTimer(device)
        rank = rank or rank_info()
        self.rank = rank
        index = cuda_index_of(device)  # "cuda" is this rank's own device, not GPU 0
        self.gpu = open_gpu(index)
        self.meter = EnergyMeter(self.gpu, synchronize=self.timer.synchronize)
        self.sampler = PowerSampler(self.gpu, hz=power_hz)
        machine_gpus = None  # a CPU run: codecarbon's default
        if index is not None and rank.local_rank == 0:  # rank r runs on cuda:{local rank}
            machine_gpus = nvml_indices([index] if rank.local_world == 1 else range(rank.local_world))
        self.codecarbon = open_machine_codecarbon_tracker(
            local_rank=rank.local_rank, gpu_ids=machine_gpus, country_iso_code=country_iso_code, pue=pue
        )
        self.idle_seconds = idle_seconds
        self.params: dict[str, Any] = {}
        self.tags: dict[str, str] = {}

    def __enter__(self) -> RunInstruments:
        if self.gpu.available:
            self.params.update({"gpu_name": self.gpu.name, "gpu_driver": self.gpu.driver_version})
            others = self.gpu.other_processes()
            if others:
                message = f"other processes use the GPU (pids {others}): power and energy include their load"
                log.warning(message)
                self.tags["vlm_quant.gpu_shared"] = message
            idle = measure_idle_window(self.gpu, seconds=self.idle_seconds)
            if idle is not None and idle.mean_power_w is not None:
                self.params["idle_power_w"] = idle.mean_power_w
            else:  # absent with its reason, never logged as the string "None"
                reason = idle.absent_reason if idle is not None else "no GPU energy counter"
                self.tags[run_schema.TAG_IDLE_POWER_ABSENT] = reason
        else:
            self.tags["vlm_quant.energy_absent_reason"] = self.gpu.reason
        self.sampler.start()
        self.codecarbon.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples = self.sampler.stop()
        self.codecarbon_result = self.codecarbon.stop()
        self.gpu.close()

    def log_to(self, tracker: Any) -> dict[str, float]:
        """Log power history/CSV/plot and return the instrument metrics (call after the with block)."""
        metrics: dict[str, float] = {}
        samples = getattr(self, "samples", [])  # none when the run failed before the sampler started
        if samples:
            first_step = self.first_power_step(tracker)
            tracker.log_metric_history(
                run_schema.METRIC_POWER_HISTORY,
                [s.power_w for s in samples],
                [first_step + int(s.t_ms) for s in samples],
            )
            with tempfile.TemporaryDirectory(prefix="vlmq-power-") as tmp:
                csv_path = write_power_csv(samples, Path(tmp) / Path(run_schema.ARTIFACT_POWER_CSV).name)
                png_path = plot_power(
                    samples,
                    Path(tmp) / Path(run_schema.ARTIFACT_POWER_PNG).name,
                    title=f"GPU power, run {tracker.run_id}" + self.whose_gpu(),
                )
                tracker.log_file(csv_path, "power")
                tracker.log_file(png_path, "power")
            peak = peak_memory_used_mib(samples)
            if peak is not None:
                metrics["peak_nvml_memory_used_mib"] = peak
        codecarbon = getattr(self, "codecarbon_result", None)
        if codecarbon is None:
            return metrics
        metrics.update(codecarbon.as_metrics())
        if codecarbon.reason:
            self.tags["vlm_quant.codecarbon_absent_reason"] = codecarbon.reason
        if codecarbon.cpu_method:
            self.params["codecarbon_cpu_method"] = codecarbon.cpu_method
        return metrics

    def whose_gpu(self) -> str:
        """``", rank r's GPU of N"`` in a multi-process run (each rank measures its own GPU), else ``""``."""
        return f", rank {self.rank.rank}'s GPU of {self.rank.world}" if self.rank.distributed else ""

    def first_power_step(self, tracker: Any) -> int:
        """Step (ms) of this attempt's first power sample: 0, or one sampling period after the last step a
        previous attempt of the run logged (a resumed run continues its axis instead of restarting at 0)."""
        last_step = getattr(tracker, "last_metric_step", lambda name: None)(run_schema.METRIC_POWER_HISTORY)
        if last_step is None:
            return 0
        return int(last_step) + max(1, round(self.sampler.period_s * 1000))

    @contextmanager
    def logged_on_failure(self, tracker: Any) -> Iterator[RunInstruments]:
        """Enter before ``self`` (``with i.logged_on_failure(t), i:``): when the block raises, the stopped
        instruments' readings go to ``tracker`` before the error propagates (FAILED/KILLED runs keep them)."""
        try:
            yield self
        except BaseException:
            self.log_failed(tracker)
            raise

    def log_failed(self, tracker: Any) -> None:
        """Power history/CSV/plot, codecarbon metrics, idle power and the absent-reason tags of a run that
        failed or was killed; never raises (the run's own error is the one to report)."""
        with shielded():  # a second Ctrl-C must not cut this short; the run is being closed anyway
            try:
                tracker.log_metrics(self.log_to(tracker))
                tracker.set_tags(self.tags)
                tracker.log_params(self.params)
            except Exception as error:
                log.error("the instruments' readings of the failed run were not logged: %s", error)
