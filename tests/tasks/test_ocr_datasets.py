"""DocVQA, ChartQA and NoCaps: loaders on small official-format folders, the OCR task's scores."""

from __future__ import annotations

import json

import pytest
from ocr_layouts import (
    CHARTQA_RECORDS,
    DOCVQA_RECORDS,
    NOCAPS_DOMAINS,
    build_chartqa,
    build_docvqa,
    build_nocaps,
)

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.tasks.chartqa_data import AUGMENTED_ID_OFFSET, read_local_chartqa
from vlm_quant.tasks.docvqa_data import read_local_docvqa
from vlm_quant.tasks.nocaps_data import read_local_nocaps
from vlm_quant.tasks.ocr_vqa import OcrVqaTask
from vlm_quant.tasks.registry import make_task


@pytest.fixture()
def docvqa_dir(tmp_path, coco_dir):
    build_docvqa(tmp_path, coco_dir)
    return tmp_path


@pytest.fixture()
def chartqa_dir(tmp_path, coco_dir):
    build_chartqa(tmp_path, coco_dir)
    return tmp_path


def test_docvqa_loader_keys_by_question_id_and_opens_the_named_documents(docvqa_dir):
    split = read_local_docvqa("val2017", data_dir=str(docvqa_dir))  # the config's default split means val
    assert split.dataset == "docvqa" and split.split == "val"
    assert sorted(split.samples) == [49150, 49151, 49152]
    first = split.samples[49150]
    assert first.answers == tuple(DOCVQA_RECORDS[0][1]) and first.question_types == ("form",)
    assert first.image_file.startswith("documents/") and split.open_image(first).size[0] > 0


def test_docvqa_without_answers_is_an_error_naming_the_question(docvqa_dir):
    path = docvqa_dir / "val_v1.0.json"
    content = json.loads(path.read_text())
    del content["data"][1]["answers"]
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match="questionId 49151 has no answers"):
        read_local_docvqa("val", data_dir=str(docvqa_dir))


def test_chartqa_loader_keeps_human_and_augmented_apart(chartqa_dir):
    split = read_local_chartqa("", data_dir=str(chartqa_dir))
    assert split.split == "test"
    human = [s for s in split.samples.values() if s.subset == "human"]
    augmented = [s for s in split.samples.values() if s.subset == "augmented"]
    assert [s.sample_id for s in human] == [0, 1] and [s.question_id for s in human] == [0, 1]
    assert [s.sample_id for s in augmented] == [AUGMENTED_ID_OFFSET, AUGMENTED_ID_OFFSET + 1]
    assert [s.question_id for s in augmented] == [0, 1]  # the row index in its own file
    assert [s.answers for s in augmented] == [(label,) for _, label in CHARTQA_RECORDS["augmented"]]
    assert split.open_image(augmented[0]).size[0] > 0


def test_chartqa_folder_without_question_files_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no test_human.json or test_augmented.json"):
        read_local_chartqa("test", data_dir=str(tmp_path))


def test_nocaps_loader_reads_domains_and_refuses_unknown_ones(tmp_path, coco_dir):
    build_nocaps(tmp_path, coco_dir)
    split = read_local_nocaps("val2017", data_dir=str(tmp_path))
    assert [split.samples[i].domain for i in sorted(split.samples)] == list(NOCAPS_DOMAINS)
    assert all(len(s.references) >= 5 for s in split.samples.values())
    assert split.open_image(split.samples[0]).size[0] > 0
    path = tmp_path / "nocaps_val_4500_captions.json"
    content = json.loads(path.read_text())
    content["images"][2]["domain"] = "coco"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match="image 2 has domain 'coco'"):
        read_local_nocaps("val", data_dir=str(tmp_path))


def _prepared(dataset, data_dir, **extra):
    cfg = ExperimentConfig.from_mapping(
        {"task": "vqa", "dataset": dataset, "data_dir": str(data_dir), "n_samples": 0, **extra}
    )
    task = make_task(cfg.task, cfg.dataset)
    return task, task.prepare(cfg)


def test_docvqa_scores_anls_and_declares_its_image_side(docvqa_dir):
    task, data = _prepared("docvqa", docvqa_dir)
    assert isinstance(task, OcrVqaTask) and data.params["task_image_side_needed"] == 2048
    predictions = {49150: "12/15/89", 49151: "dr lobo", 49152: "nothing"}  # 0.875, 0.875, 0
    scores = task.score(data, predictions)
    assert scores.corpus == {"anls": pytest.approx((0.875 + 0.875 + 0.0) / 3)}
    assert sorted(r["anls"] for r in scores.rows) == pytest.approx([0.0, 0.875, 0.875])
    assert "max_image_side=1024 is below the 2048 px" in scores.tags["vlm_quant.image_side_caveat"]
    _, roomy = _prepared("docvqa", docvqa_dir, max_image_side=2048)
    assert not task.score(roomy, predictions).tags


def test_chartqa_reports_relaxed_accuracy_overall_and_per_subset(chartqa_dir):
    task, data = _prepared("chartqa", chartqa_dir)
    off = AUGMENTED_ID_OFFSET
    # human: "46" vs 45 within 5% (1), "2020" vs 2019 a year within 5% (1); augmented: 13 vs 12.5 (0.04: 1),
    # "No" vs "Yes" (0)
    scores = task.score(data, {0: "46", 1: "2020", off: "13", off + 1: "No"})
    assert scores.corpus == {
        "relaxed_accuracy": 0.75,
        "relaxed_accuracy_human": 1.0,
        "relaxed_accuracy_augmented": 0.5,
    }
    human_only = task.score(data, {0: "46"})
    assert human_only.corpus == {"relaxed_accuracy": 1.0, "relaxed_accuracy_human": 1.0}


def _score_cli(tmp_path, dataset, annotations, answers):
    from click.testing import CliRunner

    from vlm_quant.cli.vqa import score_vqa_command

    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps([{"question_id": q, "answer": a} for q, a in answers.items()]))
    return CliRunner().invoke(
        score_vqa_command,
        ["--dataset", dataset, "--predictions", str(predictions), "--annotations", str(annotations)],
    )


def test_score_vqa_rescores_docvqa_and_chartqa_files(docvqa_dir, chartqa_dir, tmp_path):
    result = _score_cli(tmp_path, "docvqa", docvqa_dir / "val_v1.0.json", {49150: "12/15/89", 49152: "0.28"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"anls": (0.875 + 1.0) / 2, "n_questions": 2, "n_annotated": 3}
    augmented = chartqa_dir / "test" / "test_augmented.json"
    result = _score_cli(tmp_path, "chartqa", augmented, {0: "12.9", 1: "yes"})  # 12.9 vs 12.5: 0.032
    assert json.loads(result.output)["relaxed_accuracy"] == 1.0
    result = _score_cli(tmp_path, "chartqa", augmented, {2: "yes"})
    assert result.exit_code == 2 and "question_id 2 is absent" in result.output
