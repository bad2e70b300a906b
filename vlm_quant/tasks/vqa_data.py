"""VQA samples: VQAv2, TextVQA and VizWiz from their official local layouts or through HF `datasets`.

Every source gives the same `VqaSample`s (one question, its image, its 10 human answers and the
official type labels), keyed by an integer ``sample_id``:

* VQAv2 and TextVQA: ``sample_id`` is the official ``question_id``.
* VizWiz has no question ids (one question per image; results are keyed by the image name). Its
  ``sample_id`` is the number in the image name (``VizWiz_val_00001234.jpg`` -> 1234), which is the
  question's position in the official ``val.json`` (its entries are in name order), so local and HF
  copies of the split get the same ids. When a name carries no number, or two names share one, every
  sample falls back to its 0-based position in the file. ``question_id`` is the image name.

Local layouts (``data_dir`` holds the defaults; ``questions_file`` / ``annotations_file`` /
``image_dir`` override each one, relative to ``data_dir`` or absolute):

* vqav2 (split ``val2014``): ``v2_OpenEnded_mscoco_val2014_questions.json``,
  ``v2_mscoco_val2014_annotations.json``, ``val2014/COCO_val2014_%012d.jpg``;
* textvqa (split ``val``): ``TextVQA_0.5.1_val.json`` (questions and answers in one file; either
  ``questions_file`` or ``annotations_file`` may name it), ``train_images/<image_id>.jpg`` (the val
  images are in the train folder);
* vizwiz (split ``val``): ``val.json``, ``val/<image name>``.

The subset is a seeded random sample of sample ids (`select_ids`), never the first N. Bad input is a
`UserError` naming the file and the offending id.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image

from vlm_quant.errors import UserError
from vlm_quant.tasks.base import Split
from vlm_quant.tasks.captioning_data import select_ids
from vlm_quant.tasks.vqa_metrics import N_HUMAN_ANSWERS, UNSPECIFIED_TYPE, VqaAnnotation

VQA_DATASETS = ("vqav2", "textvqa", "vizwiz")
DEFAULT_LOCAL_SPLIT = {"vqav2": "val2014", "textvqa": "val", "vizwiz": "val"}
# Split names that mean "the validation split" whatever the dataset calls it ("val2017" is the
# captioning default of ExperimentConfig.split, so a VQA run that leaves it alone gets validation).
GENERIC_VAL_SPLITS = ("", "val", "val2014", "val2017", "validation")
HF_DATASETS = {"vqav2": "lmms-lab/VQAv2", "textvqa": "lmms-lab/textvqa", "vizwiz": "lmms-lab/VizWiz-VQA"}
HF_VAL_SPLIT = {"vqav2": "validation", "textvqa": "validation", "vizwiz": "val"}


@dataclass(frozen=True)
class VqaSample:
    """One question about one image, with its 10 human answers.

    ``image_file`` is relative to the split's ``data_dir`` (local source) or ``row:<n>`` (hf source).
    """

    sample_id: int
    question_id: int | str
    image_id: int | str
    image_file: str
    question: str
    answers: tuple[str, ...]
    answer_type: str = UNSPECIFIED_TYPE
    question_type: str = UNSPECIFIED_TYPE

    @property
    def consensus_answer(self) -> str:
        """The most frequent human answer (ties: the first given); the answer shown in few-shot turns."""
        counts = Counter(self.answers)
        best = max(counts.values())
        return next(a for a in self.answers if counts[a] == best)

    def annotation(self) -> VqaAnnotation:
        """The scoring record of `vqa_metrics.score_vqa`."""
        return VqaAnnotation(self.question_id, self.answers, self.answer_type, self.question_type,
                             self.image_id, question=self.question)


VqaSplit = Split  # one split type for every task (vlm_quant.tasks.base.Split)


# --- choosing the split and the subset -------------------------------------------------------------


def resolve_dataset(dataset: str) -> str:
    """The VQA dataset name ("" means vqav2)."""
    name = dataset or "vqav2"
    if name not in VQA_DATASETS:
        raise UserError(f"dataset={dataset!r} is not a VQA dataset; choose one of {', '.join(VQA_DATASETS)}.")
    return name


def resolve_split(dataset: str, split: str) -> str:
    """The dataset's own name for ``split``: any generic validation name -> val2014 (vqav2) / val."""
    return DEFAULT_LOCAL_SPLIT[dataset] if split in GENERIC_VAL_SPLITS else split


def select_question_ids(samples: Mapping[int, VqaSample], n_samples: int, seed: int) -> list[int]:
    """A seeded random subset of ``n_samples`` sample ids (0: all), via `select_ids` (never first-N)."""
    if n_samples > len(samples):
        raise UserError(
            f"n_samples={n_samples} is larger than the split ({len(samples)} questions); "
            f"use at most {len(samples)}."
        )
    return select_ids(list(samples), n_samples, seed)


# --- shared checks ------------------------------------------------------------------------------


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from exc


def check_answers(answers: Any, source: str, question_id: int | str) -> tuple[str, ...]:
    """10 human answers as strings; missing, empty, all-blank or non-10 lists are errors naming the id.

    One blank answer among ten is kept: it is a human answer and the official script scores it.
    """
    if not isinstance(answers, (list, tuple)) or not answers:
        raise UserError(f"{source}: question_id {question_id!r} has no human answers.")
    texts = [a.get("answer") if isinstance(a, dict) else a for a in answers]
    if not all(isinstance(t, str) for t in texts):
        raise UserError(f"{source}: question_id {question_id!r} has an answer that is not a string.")
    if not any(t.strip() for t in texts):
        raise UserError(f"{source}: question_id {question_id!r} has only empty answers.")
    if len(texts) != N_HUMAN_ANSWERS:
        raise UserError(
            f"{source}: question_id {question_id!r} has {len(texts)} human answers; "
            f"the official VQA accuracy needs exactly {N_HUMAN_ANSWERS}."
        )
    return tuple(texts)


def _check_question(question: Any, source: str, question_id: int | str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise UserError(f"{source}: question_id {question_id!r} has no question text.")
    return question


# --- local layouts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalPaths:
    """Where a local split lives: the root that ``image_file`` is relative to, and the files.

    ``image_prefix`` is the image folder relative to ``root`` ("" when the folder is the root).
    """

    root: Path
    image_prefix: str
    questions: Path
    annotations: Path


def _resolve(data_dir: str, given: str, default: str) -> Path:
    """``given`` (absolute, or relative to data_dir when it exists there, else to the cwd) or the default."""
    base = Path(data_dir).expanduser() if data_dir else None
    if not given:
        if base is None:
            raise UserError(f"cannot locate {default!r}: set data_dir (or the questions/annotations/images).")
        return base / default
    path = Path(given).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        return base / path
    return path


def local_paths(dataset: str, split: str, *, data_dir: str = "", questions_file: str = "",
                annotations_file: str = "", image_dir: str = "") -> LocalPaths:
    """The files of a local split: the dataset's default names in data_dir, each overridable."""
    if data_dir and not Path(data_dir).expanduser().is_dir():
        raise UserError(f"data_dir {data_dir} does not exist: pass the folder holding the {dataset} files.")
    if dataset == "vqav2":
        questions = _resolve(data_dir, questions_file, f"v2_OpenEnded_mscoco_{split}_questions.json")
        annotations = _resolve(data_dir, annotations_file, f"v2_mscoco_{split}_annotations.json")
        images = _resolve(data_dir, image_dir, split)
    elif dataset == "textvqa":
        questions = _resolve(data_dir, questions_file or annotations_file, f"TextVQA_0.5.1_{split}.json")
        annotations = questions
        images = _resolve(data_dir, image_dir, "test_images" if split == "test" else "train_images")
    else:
        questions = _resolve(data_dir, questions_file or annotations_file, f"{split}.json")
        annotations = questions
        images = _resolve(data_dir, image_dir, split)
    if not images.is_dir():
        raise UserError(f"image folder not found: {images} (set image_dir to the {dataset} image folder).")
    root = Path(data_dir).expanduser() if data_dir else images
    if not images.resolve().is_relative_to(root.resolve()):
        root = images
    prefix = images.resolve().relative_to(root.resolve()).as_posix()
    return LocalPaths(root, "" if prefix == "." else prefix, questions, annotations)


def _image_file(paths: LocalPaths, name: str) -> str:
    return f"{paths.image_prefix}/{name}" if paths.image_prefix else name


def read_vqav2_questions(path: Path) -> dict[int | str, dict[str, Any]]:
    """An official VQA questions file -> {question_id: {"image_id", "question"}}."""
    data = _load_json(path, "questions file")
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise UserError(f"{path}: expected an official VQA questions file: {{'questions': [...]}}.")
    out: dict[int | str, dict[str, Any]] = {}
    for n, entry in enumerate(data["questions"]):
        if not isinstance(entry, dict) or "question_id" not in entry or "image_id" not in entry:
            raise UserError(f"{path}: question {n} lacks 'question_id' or 'image_id'.")
        question_id = entry["question_id"]
        if question_id in out:
            raise UserError(f"{path}: question_id {question_id!r} appears more than once.")
        out[question_id] = {"image_id": entry["image_id"],
                            "question": _check_question(entry.get("question"), str(path), question_id)}
    return out


def read_vqav2_annotations(path: Path) -> dict[int | str, VqaAnnotation]:
    """An official VQA annotations file -> {question_id: VqaAnnotation}, every answer list checked."""
    data = _load_json(path, "annotations file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise UserError(f"{path}: expected an official VQA annotations file: {{'annotations': [...]}}.")
    out: dict[int | str, VqaAnnotation] = {}
    for n, entry in enumerate(data["annotations"]):
        if not isinstance(entry, dict) or "question_id" not in entry:
            raise UserError(f"{path}: annotation {n} lacks 'question_id'.")
        question_id = entry["question_id"]
        if question_id in out:
            raise UserError(f"{path}: question_id {question_id!r} is annotated more than once.")
        out[question_id] = VqaAnnotation(
            question_id, check_answers(entry.get("answers"), str(path), question_id),
            str(entry.get("answer_type") or UNSPECIFIED_TYPE),
            str(entry.get("question_type") or UNSPECIFIED_TYPE),
            entry.get("image_id"),
        )
    return out


def read_local_vqav2(paths: LocalPaths, split: str) -> dict[int, VqaSample]:
    """VQAv2: questions + annotations (each question annotated once, with 10 answers) + COCO images."""
    questions = read_vqav2_questions(paths.questions)
    annotations = read_vqav2_annotations(paths.annotations)
    _check_same_ids(questions, annotations, paths)
    samples = {}
    for question_id, question in questions.items():
        annotation = annotations[question_id]
        image_id = question["image_id"]
        if annotation.image_id is not None and annotation.image_id != image_id:
            raise UserError(f"{paths.questions}: question_id {question_id!r} is on image_id {image_id!r}, "
                            f"but {paths.annotations} says {annotation.image_id!r}.")
        if not isinstance(question_id, int) or not isinstance(image_id, int):
            raise UserError(
                f"{paths.questions}: question_id {question_id!r} / image_id {image_id!r} must be integers."
            )
        samples[question_id] = VqaSample(
            question_id, question_id, image_id, _image_file(paths, f"COCO_{split}_{image_id:012d}.jpg"),
            question["question"], annotation.answers, annotation.answer_type, annotation.question_type,
        )
    return samples


def _check_same_ids(questions: Mapping[Any, Any], annotations: Mapping[Any, Any], paths: LocalPaths) -> None:
    only_questions = [q for q in questions if q not in annotations]
    if only_questions:
        raise UserError(f"{paths.questions}: question_id {only_questions[0]!r} has no annotation in "
                        f"{paths.annotations} ({len(only_questions)} such question ids).")
    only_annotations = [q for q in annotations if q not in questions]
    if only_annotations:
        raise UserError(f"{paths.annotations}: question_id {only_annotations[0]!r} is annotated but absent "
                        f"from {paths.questions} ({len(only_annotations)} such question ids).")


def read_local_textvqa(paths: LocalPaths) -> dict[int, VqaSample]:
    """TextVQA: ``{"data": [{"question_id", "image_id", "question", "answers": [10 strings]}, ...]}``."""
    data = _load_json(paths.questions, "TextVQA file")
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserError(f"{paths.questions}: expected a TextVQA file: {{'data': [...]}}.")
    samples: dict[int, VqaSample] = {}
    for n, entry in enumerate(data["data"]):
        question_id = entry.get("question_id") if isinstance(entry, dict) else None
        if not isinstance(question_id, int) or not entry.get("image_id"):
            raise UserError(f"{paths.questions}: entry {n} lacks an integer 'question_id' or an 'image_id'.")
        if question_id in samples:
            raise UserError(f"{paths.questions}: question_id {question_id!r} appears more than once.")
        if "answers" not in entry:
            raise UserError(f"{paths.questions}: question_id {question_id!r} has no answers (a test split?).")
        answers = check_answers(entry["answers"], str(paths.questions), question_id)
        image_id = str(entry["image_id"])
        samples[question_id] = VqaSample(
            question_id, question_id, image_id, _image_file(paths, f"{image_id}.jpg"),
            _check_question(entry.get("question"), str(paths.questions), question_id), answers,
        )
    return samples


def read_local_vizwiz(paths: LocalPaths) -> dict[int, VqaSample]:
    """VizWiz: ``[{"image", "question", "answers": [{"answer", ...} x10], "answer_type", ...}, ...]``."""
    data = _load_json(paths.questions, "VizWiz file")
    if not isinstance(data, list):
        raise UserError(f"{paths.questions}: expected a VizWiz annotation file: a JSON list of questions.")
    names = []
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise UserError(f"{paths.questions}: entry {n} lacks an 'image' name.")
        names.append(entry["image"])
    ids = vizwiz_sample_ids(names)
    samples: dict[int, VqaSample] = {}
    for sample_id, name, entry in zip(ids, names, data, strict=True):
        if "answers" not in entry:
            raise UserError(f"{paths.questions}: question_id {name!r} has no 'answers' (a test split?).")
        answers = check_answers(entry["answers"], str(paths.questions), name)
        samples[sample_id] = VqaSample(
            sample_id, name, name, _image_file(paths, name),
            _check_question(entry.get("question"), str(paths.questions), name), answers,
            str(entry.get("answer_type") or UNSPECIFIED_TYPE),
        )
    return samples


def vizwiz_sample_ids(names: list[str]) -> list[int]:
    """The number in each image name (VizWiz_val_00001234.jpg -> 1234); file positions when not unique."""
    if len(set(names)) != len(names):
        raise UserError(f"question_id {Counter(names).most_common(1)[0][0]!r} appears more than once.")
    numbers = [re.findall(r"\d+", Path(name).stem) for name in names]
    ids = [int(found[-1]) if found else None for found in numbers]
    if None in ids or len(set(ids)) != len(ids):
        return list(range(len(names)))
    return ids  # type: ignore[return-value]


def _local_opener(root: Path) -> Callable[[VqaSample], Image.Image]:
    def open_image(sample: VqaSample) -> Image.Image:
        with Image.open(root / sample.image_file) as image:
            image.load()
            return image

    return open_image


def read_local_vqa(dataset: str, split: str, *, data_dir: str = "", questions_file: str = "",
                   annotations_file: str = "", image_dir: str = "") -> VqaSplit:
    """A local VQA split in its official layout (see the module docstring)."""
    paths = local_paths(dataset, split, data_dir=data_dir, questions_file=questions_file,
                        annotations_file=annotations_file, image_dir=image_dir)
    if dataset == "vqav2":
        samples = read_local_vqav2(paths, split)
    elif dataset == "textvqa":
        samples = read_local_textvqa(paths)
    else:
        samples = read_local_vizwiz(paths)
    if not samples:
        raise UserError(f"{paths.questions} holds no questions.")
    return VqaSplit(dataset, split, samples, _local_opener(paths.root), str(paths.root))


# --- Hugging Face datasets ------------------------------------------------------------------------


def default_hf_dataset(dataset: str, hf_dataset: str) -> str:
    """The user's ``hf_dataset``, unless it is empty or the captioning default: then the dataset's HF id."""
    from vlm_quant.config import ExperimentConfig

    caption_default = next(f.default for f in fields(ExperimentConfig) if f.name == "hf_dataset")
    return HF_DATASETS[dataset] if hf_dataset in ("", caption_default) else hf_dataset


def hf_split_name(dataset: str, split: str) -> str:
    return HF_VAL_SPLIT[dataset] if split in GENERIC_VAL_SPLITS else split


def _load_hf(dataset_id: str, hf_split: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError("source=hf needs `datasets`: pip install 'vlm-quant[hf-datasets]'.") from None
    try:
        if Path(dataset_id).expanduser().is_dir():
            loaded = datasets.load_from_disk(str(Path(dataset_id).expanduser()))
            if isinstance(loaded, datasets.DatasetDict):
                if hf_split not in loaded:
                    raise KeyError(f"no split {hf_split!r}; splits: {', '.join(loaded)}")
                return loaded[hf_split]
            return loaded
        return datasets.load_dataset(dataset_id, split=hf_split)
    except Exception as exc:  # network, missing split, bad repo: all mean "cannot read the data"
        raise UserError(
            f"could not load dataset {dataset_id!r} split {hf_split!r} ({type(exc).__name__}: {exc}). "
            "Offline? Use source=local with data_dir pointing to the official layout."
        ) from exc


def read_hf_vqa(dataset: str, dataset_id: str, split: str) -> VqaSplit:
    """A VQA split through `datasets` (lmms-lab/VQAv2, lmms-lab/textvqa, lmms-lab/VizWiz-VQA, a saved dir).

    Rows need ``question``, ``answers`` (10 strings, or 10 ``{"answer": ...}`` dicts) and ``image``;
    ``question_id`` (VizWiz: the image name), and optionally ``image_id``, ``answer_type`` (VizWiz:
    ``category``) and ``question_type``.
    """
    hf_split = hf_split_name(dataset, split)
    rows = _load_hf(dataset_id, hf_split)
    source = f"{dataset_id} [{hf_split}]"
    wanted = ("question_id", "question", "answers", "image_id", "answer_type", "category", "question_type")
    columns = rows.select_columns([c for c in wanted if c in rows.column_names]).to_dict()  # bulk, no images
    if "question_id" not in columns:
        raise UserError(f"{source}: no 'question_id' column (columns: {', '.join(rows.column_names)}).")
    question_ids = columns["question_id"]
    if not question_ids:
        raise UserError(f"{source} holds no rows.")
    if all(isinstance(q, int) for q in question_ids) and len(set(question_ids)) == len(question_ids):
        sample_ids = list(question_ids)
    else:
        sample_ids = vizwiz_sample_ids([str(q) for q in question_ids])
    samples: dict[int, VqaSample] = {}
    index_of: dict[int, int] = {}
    for index, sample_id in enumerate(sample_ids):
        row = {name: values[index] for name, values in columns.items()}
        question_id = row["question_id"]
        answers = check_answers(row.get("answers"), source, question_id)
        image_id = row.get("image_id")
        samples[sample_id] = VqaSample(
            sample_id, question_id, question_id if image_id is None else image_id, f"row:{index}",
            _check_question(row.get("question"), source, question_id), answers,
            str(row.get("answer_type") or row.get("category") or UNSPECIFIED_TYPE),
            str(row.get("question_type") or UNSPECIFIED_TYPE),
        )
        index_of[sample_id] = index

    def open_image(sample: VqaSample) -> Image.Image:
        return rows[index_of[sample.sample_id]]["image"]

    return VqaSplit(dataset, split, samples, open_image, "")


def read_vqa_split(cfg: Any) -> VqaSplit:
    """The configured VQA split (cfg: an ExperimentConfig, or anything with its VQA fields)."""
    dataset = resolve_dataset(cfg.dataset)
    split = resolve_split(dataset, cfg.split)
    if cfg.source == "hf":
        return read_hf_vqa(dataset, default_hf_dataset(dataset, cfg.hf_dataset), split)
    return read_local_vqa(dataset, split, data_dir=cfg.data_dir, questions_file=cfg.questions_file,
                          annotations_file=cfg.annotations_file, image_dir=cfg.image_dir)
