"""`vlm-quant paper` / `slides` on the command line: selection, logging as a run, no-TeX fallback, errors."""

from __future__ import annotations

import json

import mlflow
from click.testing import CliRunner

from vlm_quant.cli.commands import main
from vlm_quant.study.paper import compile as tex_compile


def last_json(output: str) -> dict:
    return json.JSONDecoder().raw_decode(output, output.index("{\n"))[0]


def test_without_tex_paper_writes_the_sources_says_how_to_install_and_logs_a_paper_run(
    caption_store, tmp_path, monkeypatch
):
    monkeypatch.setattr(tex_compile.shutil, "which", lambda name: None)
    out = tmp_path / "study"
    result = CliRunner().invoke(
        main,
        [
            "paper",
            "--parent-run",
            caption_store.parent_run_id,
            "--out-dir",
            str(out),
            "--bootstrap",
            "200",
            "--tracking-uri",
            caption_store.uri,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "apt-get install texlive-latex-recommended" in result.output
    summary = last_json(result.output)
    assert summary["pdf"] is None and summary["tex_engine"] is None
    for name in ("paper.tex", "references.bib", "numbers.json", "tables/results_quality.tex"):
        assert (out / "paper" / name).is_file(), name
    client = mlflow.MlflowClient(caption_store.uri)
    run = client.get_run(summary["paper_run_id"])
    assert run.data.tags["vlm_quant.kind"] == "paper" and run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_run(caption_store.runs["fp16"].run_id).info.experiment_id
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "paper")}
    assert {"paper/paper.tex", "paper/references.bib", "paper/figures", "paper/tables"} <= logged
    assert set(run.data.tags["vlm_quant.compared_runs"].split(",")) == {
        r.run_id for r in caption_store.runs.values()
    }


def test_paper_and_slides_refuse_a_missing_template_and_a_bad_selection(caption_store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "paper",
            "--experiment",
            caption_store.experiment,
            "--template",
            str(tmp_path / "none.cls"),
            "--tracking-uri",
            caption_store.uri,
            "--no-log",
        ],
    )
    assert result.exit_code == 2 and "--template" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["slides", "--tracking-uri", caption_store.uri, "--no-log"])
    assert result.exit_code == 2 and "exactly one of experiment, parent_run, run_ids" in result.output
