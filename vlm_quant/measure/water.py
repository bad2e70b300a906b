"""Water consumed per unit of work: on-site cooling plus the water of generating the electricity.

Li, Yang, Islam and Ren (2023), "Making AI Less 'Thirsty': Uncovering and Addressing the Secret Water
Footprint of AI Models", arXiv:2304.03271, section 3 (operational water footprint):

    water (L) = e x WUE_on-site + e x PUE x EWIF

with ``e`` the servers' (here: the measured device's) energy in kWh, WUE_on-site the litres the data centre
evaporates for cooling per kWh of IT energy, and EWIF (electricity water intensity factor) the litres the
grid consumes per kWh generated. PUE multiplies only the off-site term: the facility draws e x PUE from the
grid, while cooling water is reported per kWh of IT energy.

Defaults are Li et al.'s Table 1 row "U.S. Average": on-site WUE 0.55 L/kWh and off-site EWIF 3.142 L/kWh
(their sources: Microsoft's published WUE, and the U.S. EWIF of Reig et al. / Macknick et al. 2012's
per-fuel consumption factors weighted by the U.S. generation mix). We have no sourced EWIF for any other
country, so for another ``country_iso_code`` the water metric is absent unless the user passes
``water_intensity_l_per_kwh`` explicitly.
"""

from __future__ import annotations

from vlm_quant.errors import UserError

SOURCE_LI_2023 = 'Li et al. 2023, "Making AI Less Thirsty", arXiv:2304.03271, Table 1 (U.S. Average)'
DEFAULT_WUE_L_PER_KWH = 0.55  # on-site WUE, Li et al. 2023 Table 1, U.S. average
GRID_WATER_INTENSITY_L_PER_KWH = {"USA": 3.142}  # off-site EWIF by ISO-3 country; Li et al. 2023 Table 1


def grid_water_intensity(country_iso_code: str, override_l_per_kwh: float = -1.0) -> tuple[float | None, str]:
    """The grid's water intensity (L/kWh) for a country and its source, or (None, reason) without one.

    ``override_l_per_kwh`` >= 0 is the user's own number and wins (source "user parameter").
    """
    if override_l_per_kwh >= 0:
        return override_l_per_kwh, "user parameter water_intensity_l_per_kwh"
    code = country_iso_code.strip().upper()
    if code in GRID_WATER_INTENSITY_L_PER_KWH:
        return GRID_WATER_INTENSITY_L_PER_KWH[code], SOURCE_LI_2023
    return None, (
        f"no sourced grid water intensity for {code} (only {', '.join(GRID_WATER_INTENSITY_L_PER_KWH)} from "
        f"{SOURCE_LI_2023}); pass water_intensity_l_per_kwh to set one"
    )


def water_litres(device_kwh: float, *, pue: float, wue_l_per_kwh: float, ewif_l_per_kwh: float) -> float:
    """Litres of water for ``device_kwh`` of IT energy: ``e x WUE + e x PUE x EWIF`` (Li et al. 2023)."""
    if device_kwh < 0:
        raise UserError(f"energy must be >= 0 kWh, got {device_kwh}")
    if pue < 1.0:
        raise UserError(f"PUE is facility energy / IT energy and cannot be below 1.0, got {pue}")
    if wue_l_per_kwh < 0 or ewif_l_per_kwh < 0:
        raise UserError(f"water intensities must be >= 0 L/kWh, got {wue_l_per_kwh}, {ewif_l_per_kwh}")
    return device_kwh * wue_l_per_kwh + device_kwh * pue * ewif_l_per_kwh
