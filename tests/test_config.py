"""ExperimentConfig: YAML + overrides, type coercion, errors that name the key, the shipped YAMLs."""

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from vlm_quant.config import ExperimentConfig, load_yaml
from vlm_quant.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def base(**kw):
    return ExperimentConfig.from_mapping({"data_dir": "/data/coco", **kw})


def test_overrides_beat_yaml_and_strings_are_coerced(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"quant": "int8", "n_samples": 100, "data_dir": "/x", "log_model": False}))
    cfg = ExperimentConfig.from_sources(path, n_samples="12", seed="3", quant=None)
    assert (cfg.quant, cfg.n_samples, cfg.seed, cfg.log_model) == ("int8", 12, 3, False)


def test_precision_mapping_in_yaml_becomes_override_string(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data_dir: /x\nprecision:\n  vision: int8\n  language: nf4\n")
    assert load_yaml(path)["precision"] == "vision=int8,language=nf4"


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"n_sample": 3}, "unknown config key(s): n_sample"),
        ({"n_samples": "many"}, "n_samples='many' is not a valid int"),
        ({"n_samples": 2.5}, "n_samples=2.5 is not a valid int"),
        ({"log_model": "maybe"}, "log_model='maybe' is not a valid bool"),
        ({"weights": "zeros"}, "weights='zeros' is not valid; choose one of pretrained, random"),
        ({"batch_size": 0}, "batch_size=0 must be >= 1"),
        ({"device": "tpu"}, "choose one of auto, cpu, cuda"),
    ],
)
def test_bad_values_name_the_key(values, fragment):
    with pytest.raises(UserError) as err:
        base(**values)
    assert fragment in str(err.value)


def test_local_source_needs_a_data_dir():
    with pytest.raises(UserError, match="data_dir is required"):
        ExperimentConfig.from_mapping({})


def test_missing_and_malformed_yaml(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        ExperimentConfig.from_sources(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        ExperimentConfig.from_sources(bad)


def test_config_hash_ignores_bookkeeping_but_not_results():
    a = base()
    assert a.config_hash() == base(experiment="other", run_name="x", log_model=False).config_hash()
    assert a.config_hash() != base(seed=1).config_hash()
    assert a.config_hash() != base(quant="int8").config_hash()


def test_every_shipped_config_loads():
    shipped = sorted((REPO / "configs").glob("*.yaml"))
    assert shipped, "configs/ ships at least one experiment YAML"
    for path in shipped:
        cfg = ExperimentConfig.from_sources(path, data_dir="/data/coco")
        assert cfg.to_dict()  # loads and validates


def test_mlproject_passes_every_parameter_through_to_the_typed_cli():
    project = yaml.safe_load((REPO / "MLproject").read_text())
    evaluate = project["entry_points"]["evaluate"]
    assert "parameters" not in evaluate  # -P key=value arrive as --key value, typed by ExperimentConfig
    assert evaluate["command"].startswith("python entrypoints/evaluate.py")


def test_cli_accepts_mlflow_run_spelling_of_every_key():
    from click.testing import CliRunner

    from vlm_quant.cli.commands import main

    help_text = CliRunner().invoke(main, ["evaluate", "--help"]).output
    for f in fields(ExperimentConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text
    # parameter names that scripts outside the project rely on
    for stable in (
        "quant",
        "model",
        "weights",
        "n_samples",
        "data_dir",
        "seed",
        "batch_size",
        "max_new_tokens",
        "config",
        "experiment",
        "log_model",
    ):
        assert stable in {f.name for f in fields(ExperimentConfig)} | {"config"}


def test_the_reference_documents_every_parameter():
    # Generated from ExperimentConfig (tools/write_reference.py); tests/docs checks that it is up to date.
    reference = (REPO / "docs" / "reference" / "parameters.md").read_text()
    for f in fields(ExperimentConfig):
        assert f"| `{f.name}` |" in reference, f"docs/reference/parameters.md lacks {f.name}"
    assert "| parameter | default | meaning |" not in (REPO / "README.md").read_text()  # no hand-written copy
