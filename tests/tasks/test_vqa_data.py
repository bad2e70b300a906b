"""VQA splits: the official VQAv2 / TextVQA / VizWiz layouts, HF datasets, seeded subsets, bad input."""

import json
import shutil

import pytest
from PIL import Image
from vqa_layouts import build_textvqa, build_vizwiz, build_vqav2

from vlm_quant.config import ExperimentConfig
from vlm_quant.errors import UserError
from vlm_quant.tasks.vqa_data import (
    default_hf_dataset,
    read_local_vqa,
    read_vqa_split,
    resolve_split,
    select_question_ids,
    vizwiz_sample_ids,
)


@pytest.fixture()
def vqav2(tmp_path, coco_dir):
    return build_vqav2(tmp_path / "vqav2", coco_dir)


def vqa_cfg(**values):
    return ExperimentConfig.from_mapping({"task": "vqa", **values})


def test_vqav2_layout_reads_every_question_with_its_answers_and_image(vqav2, coco_dir):
    split = read_vqa_split(vqa_cfg(data_dir=str(vqav2["root"])))  # split "val2017" (default) -> val2014
    assert (split.dataset, split.split, split.data_dir) == ("vqav2", "val2014", str(vqav2["root"]))
    assert len(split.samples) == len(vqav2["questions"]) == 36
    question, annotation = vqav2["questions"][0], vqav2["annotations"][0]
    sample = split.samples[question["question_id"]]
    assert sample.sample_id == sample.question_id == question["question_id"]
    assert sample.image_id == question["image_id"]
    assert sample.image_file == f"val2014/COCO_val2014_{question['image_id']:012d}.jpg"
    assert sample.question == question["question"]
    assert sample.answers == tuple(a["answer"] for a in annotation["answers"]) and len(sample.answers) == 10
    assert (sample.answer_type, sample.question_type) == (
        annotation["answer_type"],
        annotation["question_type"],
    )
    with Image.open(coco_dir / "val2017" / f"{question['image_id']:012d}.jpg") as original:
        assert split.open_image(sample).size == original.size


def test_textvqa_layout(tmp_path, coco_dir):
    built = build_textvqa(tmp_path / "textvqa", coco_dir)
    split = read_vqa_split(vqa_cfg(dataset="textvqa", data_dir=str(built["root"])))
    assert (split.dataset, split.split, len(split.samples)) == ("textvqa", "val", 8)
    entry = built["data"][1]
    sample = split.samples[entry["question_id"]]
    assert sample.image_file == f"train_images/{entry['image_id']}.jpg"
    assert sample.answers == tuple(entry["answers"]) and sample.answer_type == "unspecified"
    assert split.open_image(sample).mode == "RGB"


def test_vizwiz_layout_ids_come_from_the_image_names(tmp_path, coco_dir):
    built = build_vizwiz(tmp_path / "vizwiz", coco_dir)
    split = read_vqa_split(vqa_cfg(dataset="vizwiz", data_dir=str(built["root"])))
    assert sorted(split.samples) == [3 * n + 5 for n in range(8)]
    sample = split.samples[5 + 3 * 3]
    assert sample.question_id == sample.image_id == "VizWiz_val_00000014.jpg"
    assert sample.image_file == "val/VizWiz_val_00000014.jpg"
    assert sample.answer_type == "unanswerable" and sample.consensus_answer == "unanswerable"
    split.open_image(sample)
    # names without a number, or colliding numbers: the position in the file instead
    assert vizwiz_sample_ids(["a.jpg", "b.jpg"]) == [0, 1]
    assert vizwiz_sample_ids(["x_1.jpg", "y_1.jpg", "z_7.jpg"]) == [0, 1, 2]
    with pytest.raises(UserError, match="'a.jpg' appears more than once"):
        vizwiz_sample_ids(["a.jpg", "a.jpg"])


def test_paths_can_be_overridden(vqav2, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(vqav2["root"] / "v2_mscoco_val2014_annotations.json", elsewhere / "a.json")
    shutil.move(vqav2["root"] / "val2014", elsewhere / "pictures")
    (vqav2["root"] / "v2_OpenEnded_mscoco_val2014_questions.json").rename(vqav2["root"] / "q.json")
    split = read_local_vqa(
        "vqav2",
        "val2014",
        data_dir=str(vqav2["root"]),
        questions_file="q.json",
        annotations_file=str(elsewhere / "a.json"),
        image_dir=str(elsewhere / "pictures"),
    )
    sample = next(iter(split.samples.values()))
    assert split.data_dir == str(elsewhere / "pictures")  # images outside data_dir: paths relative to them
    assert sample.image_file.startswith("COCO_val2014_")
    split.open_image(sample)
    # no data_dir at all: explicit files and image folder
    split = read_local_vqa(
        "vqav2",
        "val2014",
        questions_file=str(vqav2["root"] / "q.json"),
        annotations_file=str(elsewhere / "a.json"),
        image_dir=str(elsewhere / "pictures"),
    )
    assert len(split.samples) == 36


def test_relative_data_dir_with_an_absolute_image_dir_inside_it(vqav2, monkeypatch):
    monkeypatch.chdir(vqav2["root"].parent)
    split = read_local_vqa("vqav2", "val2014", data_dir="vqav2", image_dir=str(vqav2["root"] / "val2014"))
    sample = next(iter(split.samples.values()))
    assert split.data_dir == "vqav2" and sample.image_file.startswith("val2014/COCO_val2014_")
    split.open_image(sample)


def test_split_names_resolve_per_dataset():
    assert resolve_split("vqav2", "val2017") == "val2014"
    assert resolve_split("vqav2", "train2014") == "train2014"
    assert resolve_split("textvqa", "val2017") == resolve_split("vizwiz", "") == "val"


def test_seeded_subset_is_random_reproducible_and_bounded(vqav2):
    samples = read_vqa_split(vqa_cfg(data_dir=str(vqav2["root"]))).samples
    ids = select_question_ids(samples, 10, seed=0)
    assert ids == select_question_ids(dict(reversed(list(samples.items()))), 10, seed=0)
    assert ids != sorted(samples)[:10] and len(set(ids)) == 10
    assert ids != select_question_ids(samples, 10, seed=1)
    assert select_question_ids(samples, 0, seed=0) == sorted(samples)
    with pytest.raises(UserError, match=r"n_samples=37 is larger than the split \(36 questions\)"):
        select_question_ids(samples, 37, seed=0)


# --- bad input: every error names the file and the offending id --------------------------------


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_missing_and_malformed_files(vqav2, tmp_path):
    root = vqav2["root"]
    with pytest.raises(UserError, match="data_dir .*nowhere does not exist"):
        read_local_vqa("vqav2", "val2014", data_dir=str(tmp_path / "nowhere"))
    annotations = root / "v2_mscoco_val2014_annotations.json"
    annotations.rename(root / "moved.json")
    with pytest.raises(UserError, match="annotations file not found: .*v2_mscoco_val2014_annotations.json"):
        read_local_vqa("vqav2", "val2014", data_dir=str(root))
    annotations.write_text("{not json")
    with pytest.raises(UserError, match="v2_mscoco_val2014_annotations.json is not valid JSON"):
        read_local_vqa("vqav2", "val2014", data_dir=str(root))
    (root / "moved.json").rename(annotations)
    shutil.rmtree(root / "val2014")
    with pytest.raises(UserError, match="image folder not found: .*val2014"):
        read_local_vqa("vqav2", "val2014", data_dir=str(root))


@pytest.mark.parametrize(
    ("which", "change", "message"),
    [
        (
            "questions",
            lambda d: d["questions"].append({"image_id": 139, "question": "Why?", "question_id": 7}),
            r"questions.json: question_id 7 has no annotation in .*annotations.json \(1 such",
        ),
        (
            "annotations",
            lambda d: d["annotations"].append({**d["annotations"][0], "question_id": 8}),
            r"annotations.json: question_id 8 is annotated but absent from .*questions.json",
        ),
        (
            "annotations",
            lambda d: d["annotations"][2].update(answers=[]),
            r"annotations.json: question_id \d+ has no human answers",
        ),
        (
            "annotations",
            lambda d: d["annotations"][2].pop("answers"),
            r"annotations.json: question_id \d+ has no human answers",
        ),
        (
            "annotations",
            lambda d: d["annotations"][2].update(answers=[{"answer": " "}] * 10),
            r"annotations.json: question_id \d+ has only empty answers",
        ),
        (
            "annotations",
            lambda d: d["annotations"][2]["answers"].pop(),
            r"annotations.json: question_id \d+ has 9 human answers; .* exactly 10",
        ),
        (
            "annotations",
            lambda d: d["annotations"][2].update(image_id=1),
            r"questions.json: question_id \d+ is on image_id \d+, but .*annotations.json says 1",
        ),
        (
            "questions",
            lambda d: d["questions"].append(d["questions"][0]),
            r"questions.json: question_id \d+ appears more than once",
        ),
    ],
)
def test_inconsistent_vqav2_files_name_the_file_and_the_id(vqav2, which, change, message):
    root = vqav2["root"]
    name = {
        "questions": "v2_OpenEnded_mscoco_val2014_questions.json",
        "annotations": "v2_mscoco_val2014_annotations.json",
    }[which]
    _edit(root / name, change)
    with pytest.raises(UserError, match=message):
        read_local_vqa("vqav2", "val2014", data_dir=str(root))


def test_bad_textvqa_and_vizwiz_entries(tmp_path, coco_dir):
    textvqa = build_textvqa(tmp_path / "textvqa", coco_dir)["root"]
    _edit(textvqa / "TextVQA_0.5.1_val.json", lambda d: d["data"][3].update(answers=["a"] * 3))
    with pytest.raises(UserError, match=r"TextVQA_0.5.1_val.json: question_id 34605 has 3 human answers"):
        read_local_vqa("textvqa", "val", data_dir=str(textvqa))
    vizwiz = build_vizwiz(tmp_path / "vizwiz", coco_dir)["root"]
    _edit(vizwiz / "val.json", lambda d: d[1].pop("answers"))
    with pytest.raises(UserError, match=r"val.json: question_id 'VizWiz_val_00000008.jpg' has no 'answers'"):
        read_local_vqa("vizwiz", "val", data_dir=str(vizwiz))


# --- Hugging Face datasets -----------------------------------------------------------------------


def test_hf_default_id_replaces_the_captioning_default():
    assert default_hf_dataset("vqav2", "lmms-lab/COCO-Caption2017") == "lmms-lab/VQAv2"
    assert default_hf_dataset("vizwiz", "") == "lmms-lab/VizWiz-VQA"
    assert default_hf_dataset("textvqa", "me/my-textvqa") == "me/my-textvqa"


def test_hf_saved_datasets_in_the_lmms_lab_shapes(tmp_path, vqav2, coco_dir):
    datasets = pytest.importorskip("datasets")
    local = read_vqa_split(vqa_cfg(data_dir=str(vqav2["root"])))
    picked = [local.samples[i] for i in sorted(local.samples)[:4]]
    images = [local.open_image(s).resize((32, 24)) for s in picked]
    vqav2_rows = {  # lmms-lab/VQAv2: answers as {answer, answer_confidence, answer_id} dicts
        "question_type": [s.question_type for s in picked],
        "multiple_choice_answer": [s.answers[0] for s in picked],
        "answers": [
            [{"answer": a, "answer_confidence": "yes", "answer_id": i} for i, a in enumerate(s.answers)]
            for s in picked
        ],
        "image_id": [s.image_id for s in picked],
        "answer_type": [s.answer_type for s in picked],
        "question_id": [s.question_id for s in picked],
        "question": [s.question for s in picked],
        "image": images,
    }
    datasets.DatasetDict({"validation": datasets.Dataset.from_dict(vqav2_rows)}).save_to_disk(
        tmp_path / "hf_vqav2"
    )
    split = read_vqa_split(vqa_cfg(source="hf", hf_dataset=str(tmp_path / "hf_vqav2")))
    assert split.split == "val2014" and sorted(split.samples) == [s.sample_id for s in picked]
    got = split.samples[picked[1].sample_id]
    assert (got.answers, got.answer_type, got.question_type, got.image_file) == (
        picked[1].answers,
        picked[1].answer_type,
        picked[1].question_type,
        "row:1",
    )
    assert split.open_image(got).size == (32, 24)

    vizwiz_rows = {  # lmms-lab/VizWiz-VQA: string ids, answer strings, the answer type as "category"
        "question_id": [f"VizWiz_val_{n:08d}.jpg" for n in (4, 9)],
        "image": images[:2],
        "question": ["What is this?", "Which color?"],
        "answers": [["soup"] * 10, ["red"] * 6 + ["pink"] * 4],
        "category": ["other", "other"],
    }
    datasets.DatasetDict({"val": datasets.Dataset.from_dict(vizwiz_rows)}).save_to_disk(
        tmp_path / "hf_vizwiz"
    )
    split = read_vqa_split(vqa_cfg(source="hf", dataset="vizwiz", hf_dataset=str(tmp_path / "hf_vizwiz")))
    assert sorted(split.samples) == [4, 9]
    assert (
        split.samples[9].question_id == "VizWiz_val_00000009.jpg" and split.samples[9].answer_type == "other"
    )

    vizwiz_rows["answers"][1] = []  # the test split has no answers
    datasets.Dataset.from_dict(vizwiz_rows).save_to_disk(tmp_path / "hf_bad")
    with pytest.raises(
        UserError, match=r"hf_bad \[val\]: question_id 'VizWiz_val_00000009.jpg' has no human"
    ):
        read_vqa_split(vqa_cfg(source="hf", dataset="vizwiz", hf_dataset=str(tmp_path / "hf_bad")))
    with pytest.raises(UserError, match="could not load dataset .*nothing-here"):
        read_vqa_split(vqa_cfg(source="hf", hf_dataset=str(tmp_path / "nothing-here")))
