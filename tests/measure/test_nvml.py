import os
import sys

import pytest

from vlm_quant.measure.nvml import Gpu, NullGpu, open_gpu


def test_cpu_run_gets_a_null_gpu_whose_readings_are_absent():
    gpu = open_gpu(None)
    assert isinstance(gpu, NullGpu)
    assert gpu.available is False
    assert "CPU" in gpu.reason
    readings = [
        gpu.energy_mj(),
        gpu.power_w(),
        gpu.memory_used_mib(),
        gpu.temperature_c(),
        gpu.sm_clock_mhz(),
    ]
    assert readings == [None] * 5
    assert gpu.other_processes() == []
    with gpu:
        pass
    gpu.close()


def test_missing_pynvml_gives_a_null_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    gpu = open_gpu(0)
    assert isinstance(gpu, NullGpu)
    assert gpu.reason.startswith("pynvml not installed")


def test_nvml_init_failure_gives_a_null_gpu_with_the_error(fake_nvml):
    gpu = open_gpu(0, nvml=fake_nvml(init_error="Driver Not Loaded"), environ={})
    assert isinstance(gpu, NullGpu)
    assert gpu.reason == "NVML init failed: Driver Not Loaded"


def test_missing_device_gives_a_null_gpu_and_releases_nvml(fake_nvml):
    nvml = fake_nvml(device_count=1)
    gpu = open_gpu(3, nvml=nvml, environ={})
    assert isinstance(gpu, NullGpu)
    assert "cuda:3" in gpu.reason
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_real_pynvml_here_degrades_or_works():
    with open_gpu(0) as gpu:  # no GPU on the CI machine: a NullGpu; on a GPU box: a Gpu
        assert gpu.available or gpu.reason


def test_readings_are_converted_to_the_units_in_their_names(fake_nvml):
    nvml = fake_nvml(energy_mj=[123_456], instant_power_mw=181_500, memory_used_bytes=3 * 1024**3)
    gpu = open_gpu(0, nvml=nvml, environ={})
    assert isinstance(gpu, Gpu) and gpu.available
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.driver_version == "570.86.15"
    assert gpu.energy_mj() == 123_456.0
    assert gpu.power_w() == pytest.approx(181.5)
    assert gpu.memory_used_mib() == pytest.approx(3 * 1024)
    assert gpu.temperature_c() == 55.0
    assert gpu.sm_clock_mhz() == 1980.0


def test_power_falls_back_to_the_averaged_reading_when_instant_is_unsupported(fake_nvml):
    nvml = fake_nvml(instant_power_mw=None, power_mw=75_250)
    gpu = open_gpu(0, nvml=nvml, environ={})
    assert gpu.power_w() == pytest.approx(75.25)
    assert gpu.power_w() == pytest.approx(75.25)
    assert nvml.field_calls == 1  # asked once, then remembered that the field is unsupported
    assert nvml.average_power_calls == 2


def test_unsupported_energy_counter_reads_as_none_not_zero(fake_nvml):
    gpu = open_gpu(0, nvml=fake_nvml(energy_mj=None), environ={})
    assert gpu.energy_mj() is None


def test_bytes_names_from_old_bindings_are_decoded(fake_nvml):
    gpu = open_gpu(0, nvml=fake_nvml(name=b"Tesla V100-SXM2-16GB"), environ={})
    assert gpu.name == "Tesla V100-SXM2-16GB"


def test_other_processes_excludes_ours_and_deduplicates(fake_nvml):
    me = os.getpid()
    nvml = fake_nvml(compute_pids=(me, 4242, 77), graphics_pids=(77,))
    gpu = open_gpu(0, nvml=nvml, environ={})
    assert gpu.other_processes() == [77, 4242]


def test_close_is_idempotent_and_balances_init(fake_nvml):
    nvml = fake_nvml()
    with open_gpu(0, nvml=nvml, environ={}) as gpu:
        pass
    gpu.close()
    assert nvml.init_calls == nvml.shutdown_calls == 1


@pytest.mark.parametrize(
    ("visible", "cuda_index", "expected_request"),
    [
        (None, 1, ("index", 1)),
        ("2,3", 1, ("index", 3)),
        (" 3 , 0 ", 0, ("index", 3)),
        ("GPU-8f2c1e0a-aaaa-bbbb-cccc-0123456789ab", 0, ("uuid", "GPU-8f2c1e0a-aaaa-bbbb-cccc-0123456789ab")),
    ],
)
def test_cuda_index_is_translated_through_cuda_visible_devices(
    fake_nvml, visible, cuda_index, expected_request
):
    nvml = fake_nvml(device_count=4)
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    gpu = open_gpu(cuda_index, nvml=nvml, environ=environ)
    assert gpu.available
    assert nvml.handle_requests == [expected_request]


def test_cuda_index_beyond_visible_devices_gives_a_null_gpu(fake_nvml):
    gpu = open_gpu(1, nvml=fake_nvml(device_count=4), environ={"CUDA_VISIBLE_DEVICES": "2"})
    assert isinstance(gpu, NullGpu)
    assert "CUDA_VISIBLE_DEVICES" in gpu.reason
