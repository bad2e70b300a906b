"""`vlm-quant setup spice`: CoreNLP jars from a folder or the zip, checked; spice=on fails early."""

from __future__ import annotations

import zipfile

import pytest
from click.testing import CliRunner

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.tasks.spice_setup import SPICE_JARS, install_spice_jars


def _fake_jar(path, inner):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr(inner + "Placeholder.class", b"\xca\xfe")


def _corenlp_zip(path):
    """The layout of stanford-corenlp-full-2015-12-09.zip, with stand-in jars."""
    folder = path.parent / "build"
    with zipfile.ZipFile(path, "w") as archive:
        for name, inner in SPICE_JARS.items():
            _fake_jar(folder / name, inner)
            archive.write(folder / name, f"stanford-corenlp-full-2015-12-09/{name}")
    return path


def test_installs_the_jars_from_the_archive_or_a_folder(tmp_path):
    installed = install_spice_jars(_corenlp_zip(tmp_path / "corenlp.zip"), lib_dir=tmp_path / "lib")
    assert sorted(p.name for p in installed) == sorted(SPICE_JARS) and all(p.is_file() for p in installed)
    again = install_spice_jars(tmp_path / "build", lib_dir=tmp_path / "lib2")
    assert all(p.read_bytes() == (tmp_path / "build" / p.name).read_bytes() for p in again)


def test_a_wrong_jar_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "jars"
    for name in SPICE_JARS:
        _fake_jar(folder / name, "org/other/")
    with pytest.raises(UserError, match="not the Stanford CoreNLP 3.6.0 jar"):
        install_spice_jars(folder, lib_dir=tmp_path / "lib")
    assert not (tmp_path / "lib").exists()


def test_setup_spice_command_reports_a_missing_source(tmp_path):
    from vlm_quant.cli.commands import main

    result = CliRunner().invoke(main, ["setup", "spice", "--from", str(tmp_path / "absent.zip")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


def test_spice_on_without_jars_fails_before_the_model_loads_naming_the_command(monkeypatch, coco_dir):
    from vlm_quant.run import runner
    from vlm_quant.tasks import caption_metrics

    monkeypatch.setattr(caption_metrics, "missing_spice_jars", lambda: ["lib/stanford-corenlp-3.6.0.jar"])
    monkeypatch.setattr(runner, "model_config", lambda cfg: pytest.fail("the model was reached"))
    cfg = ExperimentConfig.from_mapping({"data_dir": str(coco_dir), "spice": "on", "n_samples": 2})
    with pytest.raises(UserError, match="run `vlm-quant setup spice`"):
        runner.prepare_experiment(cfg)
