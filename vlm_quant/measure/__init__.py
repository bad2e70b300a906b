"""Cost measurement: time, memory, GPU power and energy, CO2e, and their statistics.

Every quantity carries its unit in its name. Without CUDA or NVML the GPU side degrades to null
objects (``NullGpu``, ``NullCodecarbonTracker``) whose readings are None: absent, never zero.
Importing this package does not import torch, pynvml or codecarbon; they load where first needed.
"""

from vlm_quant.measure.carbon import (
    CarbonEstimate,
    CodecarbonResult,
    CodecarbonTracker,
    NullCodecarbonTracker,
    carbon_intensity_g_per_kwh,
    estimate_co2e,
    open_codecarbon_tracker,
)
from vlm_quant.measure.energy import EnergyMeter, EnergyWindow, derive_energy_metrics, measure_idle_window
from vlm_quant.measure.memory import MemoryReading, MemoryTracker, weights_footprint_mib
from vlm_quant.measure.nvml import Gpu, NullGpu, open_gpu
from vlm_quant.measure.power_sampler import (
    PowerSample,
    PowerSampler,
    peak_memory_used_mib,
    plot_power,
    write_power_csv,
)
from vlm_quant.measure.stats import Summary, summarize
from vlm_quant.measure.timing import DeviceTimer, Span, run_until

__all__ = [
    "CarbonEstimate",
    "CodecarbonResult",
    "CodecarbonTracker",
    "DeviceTimer",
    "EnergyMeter",
    "EnergyWindow",
    "Gpu",
    "MemoryReading",
    "MemoryTracker",
    "NullCodecarbonTracker",
    "NullGpu",
    "PowerSample",
    "PowerSampler",
    "Span",
    "Summary",
    "carbon_intensity_g_per_kwh",
    "derive_energy_metrics",
    "estimate_co2e",
    "measure_idle_window",
    "open_codecarbon_tracker",
    "open_gpu",
    "peak_memory_used_mib",
    "plot_power",
    "run_until",
    "summarize",
    "weights_footprint_mib",
    "write_power_csv",
]
