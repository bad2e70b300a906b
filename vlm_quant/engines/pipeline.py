"""The input pipeline: images opened, resized and turned into model inputs while the model generates.

A `torch.utils.data.DataLoader` over the samples, one batch per item of its batch sampler (the batches
of ``batch_size`` consecutive samples the quality pass would make one after another):

- `SampleImages` opens and downscales one sample's image (an unreadable file is returned as an error,
  so one bad file skips one sample);
- `CollateRequests`, the collate function, builds the task's request per readable sample and calls
  the processor (chat template, left padding, image processor, cast to the model's dtype): a
  `PreparedBatch` of host tensors, pinned by the loader when the model is on CUDA so the copy to the
  device does not block (`engines.generate.to_device`).

With ``num_workers`` > 0 both run in worker processes, ``num_workers`` batches ahead (two each), while
the main process generates; with ``num_workers=0`` they run in the main process between two batches
(the harness's behaviour before this pipeline), where a torchvision image processor can work on the
GPU itself (``processor_device``). Workers are forked: the processor, task and data are inherited,
not pickled; each worker uses one torch thread (the DataLoader's default), so workers and the model
share the CPU cores rather than oversubscribing them. Workers run at a lower CPU priority, die with
the main process and sit in a process group of their own, so a terminal's signals reach the main
process alone (`worker_process`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from vlm_quant.engines.generate import GenerationSettings, processor_inputs
from vlm_quant.engines.worker_process import WorkerInit

LoadedImage = tuple[Any, Image.Image | None, str | None]  # sample, image, error
MAX_AUTO_WORKERS = 8  # beyond this, collating batches is rarely the bottleneck and RAM use grows


def default_num_workers(cpu_count: int | None = None, local_processes: int | None = None) -> int:
    """Workers for ``num_workers=-1``: this process's share of the CPU cores (``local_processes``
    evaluate processes on this machine, LOCAL_WORLD_SIZE by default) but one for itself, 1 to 8."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    processes = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // max(1, processes) - 1))


def resolve_num_workers(requested: int) -> int:
    """``requested`` workers, or `default_num_workers` for -1."""
    if requested < -1:
        raise ValueError(f"num_workers must be -1 (auto), 0 (in-process) or more, not {requested}")
    return default_num_workers() if requested == -1 else requested


def image_backend(processor: Any) -> str:
    """Which image-processor backend ``processor`` uses: "torchvision", "pil", or the class name."""
    from transformers.image_processing_backends import PilBackend, TorchvisionBackend

    image_processor = getattr(processor, "image_processor", processor)
    if isinstance(image_processor, TorchvisionBackend):
        return "torchvision"
    if isinstance(image_processor, PilBackend):
        return "pil"
    return type(image_processor).__name__


def processor_device(processor: Any, device: torch.device, num_workers: int) -> str | None:
    """Where the image processor works: the model's GPU for a torchvision backend in-process; else the CPU.

    (Worker processes are forked and must not touch CUDA; they overlap with the GPU anyway.)
    """
    if device.type == "cuda" and num_workers == 0 and image_backend(processor) == "torchvision":
        return str(device)
    return None


@dataclass
class PreparedBatch:
    """One batch: every sample with its image or error, and the model inputs of the readable ones."""

    loaded: list[LoadedImage]
    inputs: dict[str, torch.Tensor] | None  # host (or processor-device) tensors; None: nothing readable

    def pin_memory(self) -> PreparedBatch:
        """Called by the DataLoader's pinning thread (``pin_memory=True``): page-locked host tensors."""
        if self.inputs is not None:
            self.inputs = {key: value.pin_memory() for key, value in self.inputs.items()}
        return self


@dataclass(frozen=True)
class SampleImages(torch.utils.data.Dataset):
    """Item k: ``samples[k]`` with its image opened by ``load`` (sample -> `LoadedImage`)."""

    samples: Sequence[Any]
    load: Callable[[Any], LoadedImage]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> LoadedImage:
        return self.load(self.samples[index])


@dataclass(frozen=True)
class CollateRequests:
    """A batch of loaded samples -> `PreparedBatch`: the task's requests through the processor."""

    processor: Any
    request: Callable[[Any, Image.Image], Any]  # (sample, image) -> engines.generate.Request
    settings: GenerationSettings
    dtype: torch.dtype
    device: str | None = None  # the image processor's device (torchvision backend), None: CPU

    def __call__(self, loaded: list[LoadedImage]) -> PreparedBatch:
        good = [(sample, image) for sample, image, _ in loaded if image is not None]
        if not good:
            return PreparedBatch(loaded, None)
        requests = [self.request(sample, image) for sample, image in good]
        inputs = processor_inputs(
            self.processor, requests, dtype=self.dtype, settings=self.settings, device=self.device
        )
        return PreparedBatch(loaded, inputs)


def batch_indices(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive batches of ``batch_size`` indices over ``range(n)`` (the last may be shorter)."""
    return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]


def prepared_batches(
    samples: Sequence[Any],
    batch_size: int,
    *,
    load: Callable[[Any], LoadedImage],
    collate: CollateRequests,
    num_workers: int,
    pin_memory: bool,
) -> Iterator[PreparedBatch]:
    """The batches of ``samples`` in order, prepared ahead by ``num_workers`` workers (0: in-process)."""
    if not samples:
        return iter(())
    if num_workers > 0:
        # The forked workers' tokenizers would otherwise warn that parallelism was disabled for them.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    loader = torch.utils.data.DataLoader(
        SampleImages(samples, load),
        batch_sampler=batch_indices(len(samples), batch_size),
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers > 0 else None,
        # Forked (the workers inherit processor, task and data; their parent is this process): lower
        # priority, killed with this process, out of its process group (`worker_process`).
        worker_init_fn=WorkerInit(os.getpid()) if num_workers > 0 else None,
        multiprocessing_context="fork" if num_workers > 0 else None,
    )
    return iter(loader)
