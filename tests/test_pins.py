"""The places that pin versions agree: requirements-lock.txt (make), conda.yaml (mlflow run), Makefile."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, str]:
    lines = (REPO / "requirements-lock.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines]
    return {name.lower(): version for name, version in (p.split("==") for p in pins if "==" in p)}


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "conda.yaml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return {name.lower(): version for name, version in (p.split("==") for p in pip if "==" in p)}


def test_conda_env_pins_what_the_lock_pins():
    lock, conda = lock_pins(), conda_pins()
    shared = lock.keys() & conda.keys()
    differing = {name: (lock[name], conda[name]) for name in shared if lock[name] != conda[name]}
    assert not differing
    assert {"torch", "torchvision", "transformers", "mlflow"} <= lock.keys() & conda.keys()


def test_makefile_installs_the_locked_torch_pair_first():
    default = re.search(r"^TORCH \?= (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    lock = lock_pins()
    assert default == [f"torch=={lock['torch']}", f"torchvision=={lock['torchvision']}"]
