"""The documentation site builds with `mkdocs build --strict`: a broken link or anchor fails the suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install mkdocs==1.6.1 mkdocs-material==9.8.2 (or: pip install -e '.[docs]')"


def _mkdocs() -> list[str]:
    pytest.importorskip("mkdocs", reason=f"mkdocs is not installed: {INSTALL}")
    pytest.importorskip("material", reason=f"mkdocs-material is not installed: {INSTALL}")
    return [sys.executable, "-m", "mkdocs"]


def test_the_site_builds_strictly_with_the_reference_pages(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [*_mkdocs(), "build", "--strict", "--quiet", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WARNING" not in done.stderr
    html = (site / "reference" / "parameters" / "index.html").read_text()
    assert "<code>max_new_tokens</code>" in html and "<table>" in html
    assert (site / "reference" / "metrics" / "index.html").is_file()
    assert (site / "supported_models" / "index.html").is_file()


def _build_copy(tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_mkdocs(), "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_a_page_outside_the_nav_passes_and_a_broken_link_fails(tmp_path):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    # A page another branch adds before it is listed in the nav: an INFO, not a failed build.
    (tmp_path / "docs" / "new_guide.md").write_text("# A new guide\n\nSee [First run](first_run.md).\n")
    done = _build_copy(tmp_path)
    assert done.returncode == 0 and "new_guide.md" in done.stderr, done.stderr[-3000:]
    (tmp_path / "docs" / "new_guide.md").write_text("# A new guide\n\n[gone](no_such_page.md)\n")
    done = _build_copy(tmp_path)
    assert done.returncode != 0 and "no_such_page.md" in done.stderr
