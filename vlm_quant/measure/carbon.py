"""CO2e of measured energy, with the field's formulas and codecarbon's offline per-country data.

    facility energy (kWh)  = device energy (kWh) x PUE
    emissions (kg CO2e)    = facility energy (kWh) x carbon intensity (kg CO2e / kWh)
                             (equivalently t CO2e = MWh x t/MWh)

Carbon intensity is the per-country yearly average that codecarbon ships in
``codecarbon/data/private_infra/global_energy_mix.json`` (Our World in Data / Ember figures; field
``carbon_intensity`` in g CO2e/kWh, keyed by ISO 3166-1 alpha-3 code). We read it through
codecarbon's own ``Emissions.get_country_emissions`` so the number is exactly the one an
``OfflineEmissionsTracker(country_iso_code=...)`` would apply, including its fallback of computing
the intensity from the country's energy mix when the field is missing. It is a location-based,
annual average: it ignores the hour of day and any market-based (contractual) factor.

``CodecarbonTracker`` additionally runs codecarbon's offline tracker over a span, which adds the
CPU (RAPL where readable, else a TDP-based estimate) and RAM energy our NVML meter does not see.
"""

from __future__ import annotations

import difflib
import functools
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlm_quant.errors import UserError

_LIST_CODES_HINT = (
    "valid codes are ISO 3166-1 alpha-3 (USA, FRA, DEU, GBR, CHN, IND, ...); list them with: "
    'python -c "from codecarbon.input import DataSource; '
    'print(sorted(DataSource().get_global_energy_mix_data()))"'
)


@dataclass(frozen=True)
class CarbonEstimate:
    """CO2e of an amount of device energy in one country, and every number it came from."""

    energy_kwh: float  # device energy as measured (e.g. NVML counter)
    pue: float  # power usage effectiveness of the facility (>= 1)
    facility_energy_kwh: float  # energy_kwh x pue
    carbon_intensity_g_per_kwh: float  # g CO2e per kWh of the country's grid
    co2e_kg: float  # facility_energy_kwh x carbon intensity
    source: str  # where the intensity came from

    def as_metrics(self) -> dict[str, float]:
        """``co2e_kg``, ``facility_energy_kwh`` and ``carbon_intensity_g_per_kwh`` as metrics."""
        return {
            "co2e_kg": self.co2e_kg,
            "facility_energy_kwh": self.facility_energy_kwh,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
        }


@functools.cache  # codecarbon reads its JSON files anew on every call (~0.1 s)
def carbon_intensity_g_per_kwh(country_iso_code: str) -> tuple[float, str]:
    """Grid carbon intensity of a country (g CO2e/kWh) from codecarbon's data, and its source.

    Raises ``UserError`` for a code codecarbon has no data for (codecarbon itself would silently
    use the world average, which would make a paper's number wrong without anyone noticing).
    """
    try:
        import codecarbon
        from codecarbon.core.emissions import Emissions
        from codecarbon.core.units import Energy
        from codecarbon.external.geography import GeoMetadata
        from codecarbon.input import DataSource
    except ImportError as error:
        raise UserError(
            f"CO2e needs codecarbon's carbon-intensity data: pip install codecarbon ({error})"
        ) from error
    code = country_iso_code.strip().upper()
    data_source = DataSource()
    energy_mix = data_source.get_global_energy_mix_data()
    if code not in energy_mix:
        close = difflib.get_close_matches(code, list(energy_mix), n=3)
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown country ISO code {country_iso_code!r}{suggestion}; {_LIST_CODES_HINT}")
    kg_per_kwh = Emissions(data_source).get_country_emissions(Energy.from_energy(kWh=1.0), GeoMetadata(code))
    country = energy_mix[code]
    source = (
        f"codecarbon {codecarbon.__version__} global_energy_mix.json: "
        f"{country.get('country_name', code)} ({code}), {country.get('year', 'year unknown')}"
    )
    return kg_per_kwh * 1000.0, source


def estimate_co2e(energy_kwh: float, *, country_iso_code: str = "USA", pue: float = 1.0) -> CarbonEstimate:
    """CO2e (kg) of ``energy_kwh`` of device energy in a facility of ``pue`` in ``country_iso_code``."""
    if energy_kwh < 0:
        raise UserError(f"energy_kwh must be >= 0, got {energy_kwh}")
    if pue < 1.0:
        raise UserError(f"PUE is facility energy / IT energy and cannot be below 1.0, got {pue}")
    intensity_g_per_kwh, source = carbon_intensity_g_per_kwh(country_iso_code)
    facility_energy_kwh = energy_kwh * pue
    return CarbonEstimate(
        energy_kwh=energy_kwh,
        pue=pue,
        facility_energy_kwh=facility_energy_kwh,
        carbon_intensity_g_per_kwh=intensity_g_per_kwh,
        co2e_kg=facility_energy_kwh * intensity_g_per_kwh / 1000.0,
        source=source,
    )


@dataclass(frozen=True)
class CodecarbonResult:
    """What codecarbon measured over a span. Energies are facility energy (codecarbon applies PUE).

    A field is None when codecarbon did not measure it (no GPU found: ``gpu_energy_kwh`` is None,
    not 0), and every field is None, with ``reason`` set, when codecarbon was unavailable.
    """

    duration_s: float | None = None
    energy_kwh: float | None = None  # CPU + GPU + RAM, x PUE
    cpu_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    co2e_kg: float | None = None
    cpu_method: str | None = None  # codecarbon's CPU mode, e.g. "intel_rapl" (measured) or "constant"
    reason: str | None = None

    def as_metrics(self, prefix: str = "codecarbon_") -> dict[str, float]:
        """The measured numbers as ``{prefix}energy_kwh`` etc., leaving out what was not measured."""
        values = {
            "duration_s": self.duration_s,
            "energy_kwh": self.energy_kwh,
            "cpu_energy_kwh": self.cpu_energy_kwh,
            "gpu_energy_kwh": self.gpu_energy_kwh,
            "ram_energy_kwh": self.ram_energy_kwh,
            "co2e_kg": self.co2e_kg,
        }
        return {f"{prefix}{key}": value for key, value in values.items() if value is not None}


class NullCodecarbonTracker:
    """Stands in when codecarbon is missing or failed: ``stop()`` returns an empty result with the reason."""

    available = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> CodecarbonResult:
        """An all-None result carrying the reason."""
        return CodecarbonResult(reason=self.reason)


class CodecarbonTracker:
    """A thin wrapper over ``codecarbon.OfflineEmissionsTracker``: offline, quiet, no files written.

    Built by ``open_codecarbon_tracker``. codecarbon writes no file (``save_to_file=False``) and its
    output dir is the system temp dir, so nothing can land in the repository or working directory.
    """

    available = True
    reason: str | None = None

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker
        self._start_error: str | None = None

    def start(self) -> None:
        """Start codecarbon's measurement; a failure is reported by ``stop()``, never raised."""
        try:
            self._tracker.start()
        except Exception as error:  # codecarbon must never fail a benchmark run
            self._start_error = f"codecarbon start failed: {error!r}"

    def stop(self) -> CodecarbonResult:
        """Stop and return what codecarbon measured (an all-None result with a reason if it failed)."""
        if self._start_error is not None:
            return CodecarbonResult(reason=self._start_error)
        try:
            self._tracker.stop()
        except Exception as error:  # codecarbon must never fail a benchmark run
            return CodecarbonResult(reason=f"codecarbon stop failed: {error!r}")
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:  # codecarbon swallows its own errors and leaves this unset
            return CodecarbonResult(reason="codecarbon produced no emissions data (see its log)")
        has_gpu = bool(getattr(data, "gpu_count", 0))
        return CodecarbonResult(
            duration_s=data.duration,
            energy_kwh=data.energy_consumed,
            cpu_energy_kwh=data.cpu_energy,
            gpu_energy_kwh=data.gpu_energy if has_gpu else None,
            ram_energy_kwh=data.ram_energy,
            co2e_kg=data.emissions,
            cpu_method=_cpu_method(self._tracker),
        )


def open_codecarbon_tracker(
    *,
    country_iso_code: str = "USA",
    pue: float = 1.0,
    gpu_ids: list[int] | None = None,
    measure_power_secs: float = 5.0,
    tracking_mode: str = "machine",
    tracker_factory: Callable[..., Any] | None = None,
) -> CodecarbonTracker | NullCodecarbonTracker:
    """A codecarbon tracker for ``country_iso_code`` and ``pue``, or a null one saying why not.

    ``gpu_ids`` are NVML indices to include (None: all GPUs codecarbon finds; NVML's, not CUDA's
    numbering, see `nvml.nvml_indices`; codecarbon 3.3's UUID matching strips "GPU-" wrongly).
    ``tracking_mode`` "machine" bills the whole machine's CPU and RAM (right on a dedicated benchmark
    box), "process" only this process's share. ``tracker_factory`` replaces ``OfflineEmissionsTracker``
    in tests.
    """
    if tracker_factory is None:
        try:
            from codecarbon import OfflineEmissionsTracker as tracker_factory
        except ImportError:
            return NullCodecarbonTracker("codecarbon not installed (pip install codecarbon)")
    # Bad inputs are the user's error, not a reason to degrade to a null tracker.
    if pue < 1.0:
        raise UserError(f"PUE is facility energy / IT energy and cannot be below 1.0, got {pue}")
    carbon_intensity_g_per_kwh(country_iso_code)
    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # before construction: it logs while building
    options: dict[str, Any] = {
        "country_iso_code": country_iso_code.strip().upper(),
        "pue": pue,
        "measure_power_secs": measure_power_secs,
        "tracking_mode": tracking_mode,
        "output_dir": tempfile.gettempdir(),
        "save_to_file": False,
        "log_level": "error",
        "allow_multiple_runs": True,  # no lock file, and no refusal if another tracker is running
    }
    if gpu_ids is not None:
        options["gpu_ids"] = gpu_ids
    try:
        return CodecarbonTracker(tracker_factory(**options))
    except Exception as error:
        return NullCodecarbonTracker(f"codecarbon tracker failed to start: {error!r}")


def open_machine_codecarbon_tracker(
    *, local_rank: int = 0, gpu_ids: list[int] | None = None, **options: Any
) -> CodecarbonTracker | NullCodecarbonTracker:
    """codecarbon once per machine: local rank 0 measures it, the machine's other ranks get a null tracker.

    In "machine" mode codecarbon bills the whole machine's CPU and RAM, so a tracker per rank would
    count them once per rank. Local rank 0's tracker therefore takes ``gpu_ids``: the NVML indices of
    the GPUs of every rank on this machine (`nvml.nvml_indices`), and the totals over ranks (summed
    by `run.distributed.combine_metrics`) count each machine, CPU, RAM and GPU, once.
    ``options`` go to `open_codecarbon_tracker`.
    """
    if local_rank != 0:
        return NullCodecarbonTracker(
            f"local rank {local_rank}: codecarbon measures the whole machine once, in local rank 0"
        )
    return open_codecarbon_tracker(gpu_ids=gpu_ids, **options)


def _cpu_method(tracker: Any) -> str | None:
    """codecarbon's CPU measurement mode (private attribute; None if its layout changes)."""
    for hardware in getattr(tracker, "_hardware", []):
        if type(hardware).__name__ == "CPU":
            return getattr(hardware, "_mode", None)
    return None
