"""The environment record of a run: hardware and exact package versions, for the paper's appendix.

Only named facts are collected (never environment variables), and the record still passes through
`redact` (a token or password that found its way into, say, the platform string is masked).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import torch

from vlm_quant.tracking.redact import redact_obj

KEY_PACKAGES = (
    "vlm-quant",
    "torch",
    "torchvision",
    "transformers",
    "accelerate",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "bitsandbytes",
    "torchao",
    "mlflow",
    "mlflow-skinny",
    "pycocoevalcap",
    "datasets",
    "codecarbon",
    "nvidia-ml-py",
    "pillow",
    "numpy",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def gpu_records() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    records = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        records.append(
            {
                "index": index,
                "name": props.name,
                "memory_mib": round(props.total_memory / 2**20),
                "compute_capability": f"{props.major}.{props.minor}",
            }
        )
    return records


def nvidia_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else version
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no NVML library, no driver, no GPU: the record says None
        return None


def environment_record() -> dict[str, Any]:
    """Hardware, driver, CUDA and package versions of this process's machine (redacted)."""
    record = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": ram_gib(),
        "gpus": gpu_records(),
        "driver": nvidia_driver_version(),
        "cuda": torch.version.cuda,
        "packages": package_versions(),
    }
    return redact_obj(record)
