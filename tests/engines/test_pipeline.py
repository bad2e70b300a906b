"""The input pipeline: workers prepare exactly what the main process would, in order; the quality pass
splits its wall time into the model's share and its wait for inputs (checked with a fake clock)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from PIL import Image

import vlm_quant.run.quality_pass as quality_pass
from vlm_quant.engines.generate import GenerationSettings, single_image_request
from vlm_quant.engines.pipeline import (
    CollateRequests,
    default_num_workers,
    image_backend,
    prepared_batches,
    processor_device,
    resolve_num_workers,
)
from vlm_quant.engines.worker_process import WORKER_NICENESS, WorkerInit, parent_death_signal
from vlm_quant.measure.timing import DeviceTimer
from vlm_quant.models.loading import load_processor, load_vlm
from vlm_quant.tasks.base import TaskData
from vlm_quant.tasks.captioning_data import downscale

SETTINGS = GenerationSettings(max_new_tokens=4)


@dataclass(frozen=True)
class Sample:
    sample_id: int
    image_file: str


def open_sample(sample: Sample):
    try:
        return sample, downscale(Image.open(sample.image_file).convert("RGB"), 128), None
    except OSError as error:
        return sample, None, f"{type(error).__name__}: {error}"


def caption_request(sample: Sample, image: Image.Image):
    return single_image_request(image, "Caption this image.")


@pytest.fixture(scope="module")
def samples(coco_dir, tmp_path_factory) -> list[Sample]:
    files = sorted((coco_dir / "val2017").glob("*.jpg"))[:7]
    broken = tmp_path_factory.mktemp("broken") / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [*files[:3], broken, *files[3:]]
    return [Sample(i, str(path)) for i, path in enumerate(paths)]


def batches_of(samples, processor, num_workers: int) -> list:
    collate = CollateRequests(processor, caption_request, SETTINGS, torch.float32)
    batches = prepared_batches(
        samples, 3, load=open_sample, collate=collate, num_workers=num_workers, pin_memory=False
    )
    return list(batches)


def test_workers_prepare_the_same_batches_in_order_as_the_main_process(samples, tiny_vlm_dirs):
    processor = load_processor(str(tiny_vlm_dirs["idefics3"]))
    in_process = batches_of(samples, processor, num_workers=0)
    pipelined = batches_of(samples, processor, num_workers=2)
    assert [[s.sample_id for s, _, _ in b.loaded] for b in pipelined] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    for ours, theirs in zip(in_process, pipelined, strict=True):
        assert ours.inputs.keys() == theirs.inputs.keys()
        for key in ours.inputs:
            assert torch.equal(ours.inputs[key], theirs.inputs[key]), key
    broken = pipelined[1]
    (_, image, error), *_ = broken.loaded
    assert image is None and "UnidentifiedImageError" in error
    assert broken.inputs["input_ids"].shape[0] == 2  # the readable two of that batch
    assert broken.inputs["pixel_values"].dtype == torch.float32


def test_a_batch_without_a_readable_image_has_no_inputs(tiny_vlm_dirs, tmp_path):
    missing = [Sample(0, str(tmp_path / "gone.jpg"))]
    (batch,) = batches_of(missing, load_processor(str(tiny_vlm_dirs["llava"])), num_workers=0)
    assert batch.inputs is None and "FileNotFoundError" in batch.loaded[0][2]


@pytest.mark.parametrize(
    "cores, processes, workers",
    [(1, 1, 1), (2, 1, 1), (4, 1, 3), (9, 1, 8), (64, 1, 8), (16, 2, 7), (16, 8, 1)],
)
def test_auto_workers_leave_one_core_to_each_evaluate_process(cores, processes, workers):
    assert default_num_workers(cores, processes) == workers


def test_num_workers_below_minus_one_is_refused():
    with pytest.raises(ValueError, match="num_workers must be -1"):
        resolve_num_workers(-2)
    assert resolve_num_workers(0) == 0 and resolve_num_workers(3) == 3


def test_processor_works_on_the_gpu_only_in_process_with_a_torchvision_backend(tiny_vlm_dirs):
    processor = load_processor(str(tiny_vlm_dirs["idefics3"]))
    cuda = torch.device("cuda", 0)
    expected = "cuda:0" if image_backend(processor) == "torchvision" else None
    assert processor_device(processor, cuda, num_workers=0) == expected
    assert processor_device(processor, cuda, num_workers=2) is None  # forked workers never touch CUDA
    assert processor_device(processor, torch.device("cpu"), num_workers=0) is None


def test_image_processor_backend_is_what_was_asked(tiny_vlm_dirs):
    assert image_backend(load_processor(str(tiny_vlm_dirs["llava"]), image_backend="pil")) == "pil"
    pytest.importorskip("torchvision", reason="the torchvision backend needs torchvision")
    fast = load_processor(str(tiny_vlm_dirs["llava"]), image_backend="torchvision")
    assert image_backend(fast) == "torchvision"


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def timed_pass(samples, tiny_vlm_dirs, monkeypatch, stream=None):
    """The quality pass over six readable samples at batch 2 on a fake clock: preparing a sample costs
    1 s (in the main process: the model waits), a generate() call 3 s."""
    clock = FakeClock()
    loaded = load_vlm(str(tiny_vlm_dirs["llava"]), dtype=torch.float32)
    eos = loaded.model.generation_config.eos_token_id
    eos = eos if isinstance(eos, int) else eos[0]

    class SlowTask:
        name = "captioning"

        def request(self, data, sample, image):
            clock.now_s += 1.0
            return caption_request(sample, image)

    def fake_generate(model, inputs, settings, **kwargs):
        clock.now_s += 3.0
        return torch.full((inputs["input_ids"].shape[0], 2), eos)

    monkeypatch.setattr(quality_pass, "generate_prepared", fake_generate)
    readable = [s for s in samples if "broken" not in s.image_file][:6]
    data = TaskData(
        "coco",
        "val2017",
        {s.sample_id: s for s in readable},
        [s.sample_id for s in readable],
        open_image=lambda s: Image.open(s.image_file).convert("RGB"),
    )
    return quality_pass.run_quality_pass(
        loaded.model,
        loaded.processor,
        SlowTask(),
        data,
        batch_size=2,
        max_image_side=128,
        settings=SETTINGS,
        dtype=torch.float32,
        progress=False,
        num_workers=0,
        timer=DeviceTimer("cpu", clock=clock, synchronize=lambda: None),
        stream=stream,
    )


def test_quality_pass_splits_its_wall_time_into_model_and_wait(samples, tiny_vlm_dirs, monkeypatch):
    """Six samples at batch 2 wait 6 s, generate 9 s, in a 15 s pass, so the harness's share is 6/15."""
    result = timed_pass(samples, tiny_vlm_dirs, monkeypatch)
    assert len(result.predictions) == 6
    assert (result.attempt_s, result.model_s, result.wait_s) == (15.0, 9.0, 6.0)
    split = result.time_split_metrics()
    assert split["harness_overhead_fraction"] == pytest.approx(6 / 15)
    assert split["quality_pass_model_s"] == 9.0 and split["quality_pass_wait_s"] == 6.0
    assert result.pass_metrics() == {"quality_pass_s": 15.0, "quality_pass_samples_per_s": 6 / 15}


def test_a_resumed_pass_times_its_last_attempt_only(samples, tiny_vlm_dirs, monkeypatch):
    """Two samples came from an earlier attempt that took 100 s: quality_pass_s is this attempt's 10 s
    (2 batches: 4 s preparing, 6 s generating), like its energy window, and the rate is 4 samples / 10 s."""
    from vlm_quant.run.partial_predictions import PredictionStream
    from vlm_quant.tracking.tracker import InMemoryTracker

    readable = [s for s in samples if "broken" not in s.image_file][:2]
    rows = "".join(
        f'{{"sample_id": {s.sample_id}, "prediction": "earlier", "new_tokens": 2, "seconds": 50.0}}\n'
        for s in readable
    )
    tracker = InMemoryTracker()
    tracker.log_text(rows, "predictions/partial.jsonl")
    result = timed_pass(samples, tiny_vlm_dirs, monkeypatch, stream=PredictionStream.open(tracker))
    assert len(result.predictions) == 6 and result.n_resumed == 2
    assert result.pass_metrics() == {"quality_pass_s": 10.0, "quality_pass_samples_per_s": 4 / 10}


def test_no_generation_means_no_time_split():
    split = quality_pass.QualityPassResult(attempt_s=2.0).time_split_metrics()
    assert set(split) == {"quality_pass_model_s", "quality_pass_wait_s", "harness_overhead_fraction"}
    assert set(split.values()) == {None}  # absent, never 0


def report_niceness(sample: Sample):
    return sample, None, str(os.nice(0))  # the process's CPU priority, carried back as the "error"


def test_workers_yield_the_cpu_to_the_model_process(tiny_vlm_dirs):
    collate = CollateRequests(
        load_processor(str(tiny_vlm_dirs["llava"])), caption_request, SETTINGS, torch.float32
    )
    samples = [Sample(i, "unused.jpg") for i in range(4)]

    def niceness(workers: int) -> set[int]:
        batches = prepared_batches(
            samples, 2, load=report_niceness, collate=collate, num_workers=workers, pin_memory=False
        )
        return {int(error) for batch in batches for _, _, error in batch.loaded}

    here = os.nice(0)
    assert niceness(0) == {here}  # in-process: the main process's own priority
    assert niceness(2) == {min(19, here + WORKER_NICENESS)}


def report_worker_state(sample: Sample):
    """What a worker process was set up with, carried back as the "error": parent-death signal, how it
    treats SIGINT and SIGTERM, and whether it left its parent's process group."""
    state = (
        parent_death_signal(), signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM),
        os.getpgid(0) == os.getpid() != os.getpgid(os.getppid()),
    )
    return sample, None, repr(state)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_workers_die_with_the_main_process_and_leave_its_signals_to_it(tiny_vlm_dirs):
    collate = CollateRequests(
        load_processor(str(tiny_vlm_dirs["llava"])), caption_request, SETTINGS, torch.float32
    )
    batches = prepared_batches(
        [Sample(i, "unused.jpg") for i in range(2)], 1, load=report_worker_state, collate=collate,
        num_workers=1, pin_memory=False,
    )
    states = {error for batch in batches for _, _, error in batch.loaded}
    # SIGTERM keeps its default action: the DataLoader's and multiprocessing's terminate() must end it.
    assert states == {repr((int(signal.SIGKILL), signal.SIG_IGN, signal.SIG_DFL, True))}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_worker_ends_on_its_parents_terminate_even_with_a_handler_inherited():
    """multiprocessing's exit handler terminate()s and then joins leftover daemonic workers: a worker deaf
    to SIGTERM (ignored, or the main process's own handler inherited by the fork) hung its parent."""
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # the main process's handler, inherited
    try:
        process = multiprocessing.get_context("fork").Process(target=_init_then_wait, daemon=True)
        process.start()
        time.sleep(1.0)  # let it run the init
        process.terminate()
        process.join(timeout=10)
        assert process.exitcode == -signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def _init_then_wait() -> None:
    WorkerInit(os.getppid())(0)
    time.sleep(60)


def start_worker_init(parent_pid: int) -> int:
    """Exit status of a forked process that runs the worker init believing ``parent_pid`` forked it."""
    process = multiprocessing.get_context("fork").Process(target=WorkerInit(parent_pid), args=(0,))
    process.start()
    process.join(timeout=30)
    return process.exitcode


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_worker_whose_parent_died_before_its_init_kills_itself():
    assert start_worker_init(os.getpid()) == 0  # its parent is alive: it carries on
    assert start_worker_init(os.getpid() + 10**6) == -signal.SIGKILL  # not its parent: already orphaned
