"""The COCO split: official local layout, seeded subsets, id hashes, downscaling, bad input."""

import json

import pytest
from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.tasks.captioning_data import downscale, ids_hash, read_hf_coco, read_local_coco, select_ids


def test_reads_the_real_slice_with_all_references(coco_dir):
    split = read_local_coco(coco_dir)
    coco = json.loads((coco_dir / "annotations" / "captions_val2017.json").read_text())
    assert len(split.samples) == len(coco["images"]) == 159
    sample = split.samples[139]
    assert sample.image_file == "val2017/000000000139.jpg"
    assert len(sample.references) == sum(a["image_id"] == 139 for a in coco["annotations"]) >= 5
    assert split.open_image(sample).size == (640, 426)


def test_seeded_subset_is_random_not_first_n_and_reproducible():
    ids = list(range(1000, 1100))
    a = select_ids(ids, 10, seed=0)
    assert a == select_ids(list(reversed(ids)), 10, seed=0)  # independent of input order
    assert a != sorted(ids)[:10] and len(set(a)) == 10
    assert a != select_ids(ids, 10, seed=1)
    assert select_ids(ids, 0, seed=0) == sorted(ids)
    assert ids_hash(a) == ids_hash(list(a)) != ids_hash(select_ids(ids, 10, seed=1))


def test_n_larger_than_split_is_a_clear_error():
    with pytest.raises(UserError, match="n_samples=5 is larger than the split \\(3 images\\)"):
        select_ids([1, 2, 3], 5, seed=0)


def test_downscale_keeps_aspect_and_never_upscales():
    big = Image.new("L", (2000, 1000))
    small = downscale(big, 1024)
    assert small.size == (1024, 512) and small.mode == "RGB"
    assert downscale(Image.new("RGB", (640, 480)), 1024).size == (640, 480)


def test_missing_data_dir_and_annotation_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_local_coco(tmp_path / "nowhere")
    with pytest.raises(UserError, match="annotation file missing: .*captions_val2017.json"):
        read_local_coco(tmp_path)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text("{not json")
    with pytest.raises(UserError, match="is not a COCO captions file"):
        read_local_coco(tmp_path)


def test_hf_source_reads_a_saved_dataset(tmp_path, coco_dir):
    datasets = pytest.importorskip("datasets")
    local = read_local_coco(coco_dir)
    ids = sorted(local.samples)[:3]
    rows = {
        "question_id": [local.samples[i].image_file.split("/")[-1] for i in ids],
        "image": [local.open_image(local.samples[i]) for i in ids],
        "answer": [list(local.samples[i].references) for i in ids],
    }
    datasets.DatasetDict({"val": datasets.Dataset.from_dict(rows)}).save_to_disk(tmp_path / "hf")
    split = read_hf_coco(str(tmp_path / "hf"))
    assert sorted(split.samples) == ids
    assert split.samples[ids[0]].references == local.samples[ids[0]].references
    assert split.open_image(split.samples[ids[1]]).size == local.open_image(local.samples[ids[1]]).size
