"""The same facility energy's CO2e in a fixed set of countries ("where it runs" changes it 5-10x and more).

Intensities are codecarbon's bundled per-country yearly averages (``carbon.carbon_intensity_g_per_kwh``:
Our World in Data / Ember figures in ``global_energy_mix.json``), so each country's number is the one an
``OfflineEmissionsTracker(country_iso_code=...)`` would apply. Location-based annual averages: they ignore
the hour of day and any contract for renewable power.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vlm_quant.measure.carbon import carbon_intensity_g_per_kwh

# France, Sweden, Norway, Germany, USA, China, India, Australia, Poland (ISO 3166-1 alpha-3).
PLACES = ("FRA", "SWE", "NOR", "DEU", "USA", "CHN", "IND", "AUS", "POL")


@dataclass(frozen=True)
class PlaceRow:
    """CO2e of ``facility_kwh`` in one country."""

    country_iso_code: str
    carbon_intensity_g_per_kwh: float
    co2e_g: float  # facility_kwh x intensity
    source: str


def co2e_by_place(facility_kwh: float, places: tuple[str, ...] = PLACES) -> list[PlaceRow]:
    """One row per country of ``places`` (g CO2e of ``facility_kwh`` kWh there), lowest first."""
    rows = []
    for code in places:
        intensity, source = carbon_intensity_g_per_kwh(code)
        rows.append(PlaceRow(code, intensity, facility_kwh * intensity, source))
    return sorted(rows, key=lambda row: row.co2e_g)


def highest_to_lowest_ratio(rows: list[PlaceRow]) -> float | None:
    """CO2e of the dirtiest place over the cleanest (>= 1); None when the cleanest is 0 or no rows."""
    if not rows or min(r.co2e_g for r in rows) <= 0:
        return None
    return max(r.co2e_g for r in rows) / min(r.co2e_g for r in rows)


def place_record(rows: list[PlaceRow], *, basis: str, facility_kwh: float) -> dict:
    """The artifact ``sustainability/co2e_by_place.json``: what energy was placed, and every row."""
    return {
        "basis": basis,  # what the energy is: GPU per 1,000 images, or codecarbon's CPU+RAM estimate
        "facility_energy_kwh": facility_kwh,
        "highest_to_lowest_ratio": highest_to_lowest_ratio(rows),
        "rows": [asdict(row) for row in rows],
    }
