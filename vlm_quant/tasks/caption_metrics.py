"""COCO caption metrics: pycocoevalcap's tokenizer and scorers, called directly and offline.

We do not call ``COCOEvalCap.evaluate()``: it always builds SPICE, whose constructor downloads
Stanford CoreNLP and so fails offline. Instead we run the same steps it runs (PTB tokenization,
then BLEU-1..4, METEOR, ROUGE-L, CIDEr) with the same scorer classes and options, so the numbers
are the reference numbers. SPICE runs only when its CoreNLP jars are already installed.

Scales are pycocoevalcap's own: CIDEr (its CIDEr-D implementation) lies in about 0-10 (x10 scaling
built in), every other metric in 0-1. Corpus scores are the scorers' corpus scores, which for
BLEU and METEOR are *not* the mean of the per-image scores (both pool statistics over the corpus).

CIDEr's IDF weights come from the reference captions of the images being scored, so the same
prediction scores differently against a different image set: compare configurations only on the
identical id list.

Java (>= 8) must be on PATH: the PTB tokenizer and METEOR are Java programs.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vlm_quant.errors import UserError
from vlm_quant.tasks.chair import score_chair
from vlm_quant.tasks.coco_instances import read_instances
from vlm_quant.tasks.results_files import load_json, read_results

ImageId = int | str

SPICE_MODES = ("auto", "on", "off")
# Metric keys, in pycocoevalcap's order; the names are ours (its own are Bleu_1, ..., CIDEr, SPICE).
BLEU_KEYS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4")
STANDARD_KEYS = ("cider", *BLEU_KEYS, "meteor", "rouge_l")


@dataclass(frozen=True)
class CaptionScores:
    """Scores of one set of predicted captions against human references.

    ``corpus``: ``cider`` (~0-10), ``bleu_1``..``bleu_4``, ``meteor``, ``rouge_l`` (0-1), plus
    ``spice`` (0-1) when SPICE ran. ``per_image``: the same keys per image id, from the scorers'
    per-image arrays. ``spice_skipped_reason`` is None exactly when SPICE ran.
    ``n_empty_predictions`` counts predictions that are empty after PTB tokenization (an empty
    string, or punctuation only): they are scored, not dropped, and score 0 on every metric.
    """

    corpus: dict[str, float]
    per_image: dict[ImageId, dict[str, float]]
    spice_skipped_reason: str | None
    n_images: int
    n_empty_predictions: int = 0


def score_captions(
    predictions: Mapping[ImageId, str],
    references: Mapping[ImageId, Sequence[str]],
    *,
    spice: str = "auto",
) -> CaptionScores:
    """Score one caption per image in ``predictions`` against that image's ``references``.

    Only the predicted images are scored (``references`` may hold more); their references alone
    define CIDEr's IDF. ``spice``: "auto" runs SPICE when its jars are installed and otherwise
    records why not, "on" requires it (UserError when it cannot run), "off" never runs it.
    """
    if spice not in SPICE_MODES:
        raise UserError(f"spice={spice!r} is not one of {', '.join(SPICE_MODES)}.")
    image_ids = _validated_ids(predictions, references)
    _require_java()
    spice_reason = _spice_skip_reason(spice)  # before scoring: spice="on" without jars fails fast
    gts, res = _tokenize({i: predictions[i] for i in image_ids}, {i: references[i] for i in image_ids})
    corpus, per_image = _standard_scores(gts, res)
    if spice_reason is None:
        spice_reason = _add_spice(gts, res, corpus, per_image, required=spice == "on")
    return CaptionScores(
        corpus=corpus,
        per_image=per_image,
        spice_skipped_reason=spice_reason,
        n_images=len(image_ids),
        n_empty_predictions=sum(1 for i in image_ids if not res[i][0]),
    )


def score_caption_files(
    predictions_path: str | Path, annotations_path: str | Path, instances_path: str | Path | None = None
) -> dict[str, Any]:
    """Score a COCO results file against a COCO captions file; one JSON-ready dict.

    ``predictions_path``: ``[{"image_id": ..., "caption": ...}, ...]``, one entry per image.
    ``annotations_path``: a COCO captions file (``images`` + ``annotations``). Only the images in
    the predictions are scored. Returns ``cider`` (~0-10), ``bleu_1``..``bleu_4``, ``meteor``,
    ``rouge_l`` (0-1), ``spice`` (0-1) or ``spice_skipped_reason``, ``n_images`` and
    ``n_empty_predictions``.
    ``instances_path``: a COCO instances file; adds CHAIR exactly as an evaluate run computes it
    (`vlm_quant.tasks.chair.score_chair`, the captions file's references as the image's mentioned
    objects): ``chair_i``, ``chair_s``, ``object_recall`` (0-1; absent when nothing to divide by) and the
    counts ``chair_n_images``, ``chair_n_unannotated``, ``chair_n_mentions``, ``chair_n_hallucinated``,
    ``chair_n_objects``, ``chair_n_recalled``.
    """
    predictions = _read_coco_results(Path(predictions_path))
    references = _read_coco_captions(Path(annotations_path))
    missing = [i for i in predictions if i not in references]
    if missing:
        raise UserError(
            f"{predictions_path}: image_id {missing[0]!r} has no captions in {annotations_path}"
            + (f" ({len(missing)} such ids)." if len(missing) > 1 else ".")
        )
    scores = score_captions(predictions, references)
    out: dict[str, Any] = dict(scores.corpus)
    if scores.spice_skipped_reason is not None:
        out["spice_skipped_reason"] = scores.spice_skipped_reason
    out["n_images"] = scores.n_images
    out["n_empty_predictions"] = scores.n_empty_predictions
    if instances_path is not None:
        chair = score_chair(predictions, read_instances(instances_path).objects, references)
        out.update(chair.metrics())
        out.update(chair.counts())
    return out


# --- validation --------------------------------------------------------------------------------


def _validated_ids(predictions: Mapping[ImageId, str], references: Mapping[ImageId, Sequence[str]]) -> list:
    """The predicted image ids, in the caller's order, after checking every input a scorer would trip on."""
    if not predictions:
        raise UserError("no predictions to score: the predictions mapping is empty.")
    for image_id, caption in predictions.items():
        if not isinstance(caption, str):
            raise UserError(
                f"prediction for image_id {image_id!r} is {type(caption).__name__}, not a string."
            )
        refs = references.get(image_id)
        if refs is None:
            raise UserError(f"image_id {image_id!r} has a prediction but no reference captions.")
        if isinstance(refs, str) or len(refs) == 0:
            raise UserError(f"image_id {image_id!r}: references must be a non-empty list of strings.")
        for ref in refs:
            # An empty reference would silently enter CIDEr's and BLEU's statistics as a 0-length caption.
            if not isinstance(ref, str) or not ref.strip():
                raise UserError(
                    f"image_id {image_id!r} has an empty or non-string reference caption: {ref!r}."
                )
    return list(predictions)


def _require_java() -> None:
    if shutil.which("java") is None:
        raise UserError(
            "caption metrics need Java on PATH (pycocoevalcap's PTB tokenizer and METEOR are Java "
            "programs): install a JDK, e.g. the one conda.yaml pins."
        )


# --- tokenization and the four standard scorers ------------------------------------------------


def _one_line(text: str) -> str:
    """Text with every line break replaced by a space.

    The PTB tokenizer runs with -preserveLines and its output lines are zipped with the input
    captions; pycocoevalcap only replaces "\\n", but Java also breaks lines at "\\r", "\\u2028", etc.,
    which would silently shift every later caption onto the wrong image.
    """
    return " ".join(text.splitlines())


@contextlib.contextmanager
def _java_stderr_logged(module: Any, logger_name: str) -> Iterator[None]:
    """Run ``module``'s Java subprocess with its stderr captured into the log, not onto the terminal.

    pycocoevalcap's PTB tokenizer leaves the JVM's stderr on ours, so every scoring printed
    "PTBTokenizer tokenized 761 tokens at 7962.66 tokens per second." The module's own ``subprocess``
    name is swapped (under a lock, for this call only) for one whose ``Popen`` sends stderr to a file;
    the text is then logged as an INFO record of ``logger_name`` (the terminal filter drops that line,
    the run's log keeps it), anything else the JVM says as a WARNING (a Java error stays visible).
    """
    with _JAVA_STDERR_LOCK, tempfile.TemporaryFile() as stderr:
        original = module.subprocess
        module.subprocess = SimpleNamespace(
            PIPE=subprocess.PIPE, Popen=functools.partial(subprocess.Popen, stderr=stderr)
        )
        try:
            yield
        finally:
            module.subprocess = original
            stderr.seek(0)
            lines = stderr.read().decode(errors="replace").splitlines()
    logger = logging.getLogger(logger_name)
    for line in filter(None, (line.strip() for line in lines)):
        logger.log(logging.INFO if line.startswith(_PTB_ROUTINE_LINE) else logging.WARNING, "%s", line)


_JAVA_STDERR_LOCK = threading.Lock()
_PTB_ROUTINE_LINE = "PTBTokenizer tokenized"  # the tokenizer's speed report, printed on every call


def _tokenize(
    predictions: Mapping[ImageId, str], references: Mapping[ImageId, Sequence[str]]
) -> tuple[dict[ImageId, list[str]], dict[ImageId, list[str]]]:
    """PTB-tokenize (lower-case, punctuation dropped) references and predictions in one Java run."""
    from pycocoevalcap.tokenizer import ptbtokenizer
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # One call instead of pycocoevalcap's two: each line is tokenized independently, so the result is the
    # same and we start one JVM fewer. Keys are tagged so references and predictions cannot collide.
    batch: dict[tuple[str, ImageId], list[dict[str, str]]] = {}
    for image_id, refs in references.items():
        batch[("ref", image_id)] = [{"caption": _one_line(r)} for r in refs]
    for image_id, caption in predictions.items():
        batch[("pred", image_id)] = [{"caption": _one_line(caption)}]
    with _java_stderr_logged(ptbtokenizer, "pycocoevalcap.ptbtokenizer"):
        tokenized = PTBTokenizer().tokenize(batch)
    if any(len(tokenized.get(key, ())) != len(caps) for key, caps in batch.items()):
        raise RuntimeError("PTB tokenizer output is misaligned with its input (did the Java process fail?).")
    gts = {image_id: tokenized[("ref", image_id)] for image_id in references}
    res = {image_id: tokenized[("pred", image_id)] for image_id in predictions}
    return gts, res


def _standard_scores(
    gts: dict[ImageId, list[str]], res: dict[ImageId, list[str]]
) -> tuple[dict[str, float], dict[ImageId, dict[str, float]]]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr exactly as COCOEvalCap.evaluate() computes them."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    ids = list(gts)  # every scorer returns its per-image array in gts' key order
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)  # COCOEvalCap: option="closest"
    meteor_corpus, meteor_per_image = _meteor_scores(gts, res)
    rouge, rouge_per_image = Rouge().compute_score(gts, res)
    cider, cider_per_image = Cider().compute_score(gts, res)

    corpus = {"cider": float(cider)}
    corpus.update({key: float(value) for key, value in zip(BLEU_KEYS, bleu, strict=True)})
    corpus.update({"meteor": float(meteor_corpus), "rouge_l": float(rouge)})
    per_image: dict[ImageId, dict[str, float]] = {}
    for n, image_id in enumerate(ids):
        row = {"cider": float(cider_per_image[n])}
        row.update({key: float(bleu_per_image[k][n]) for k, key in enumerate(BLEU_KEYS)})
        row.update({"meteor": float(meteor_per_image[n]), "rouge_l": float(rouge_per_image[n])})
        per_image[image_id] = row
    return corpus, per_image


# METEOR's JVM spends ~20 s (2 CPU cores) loading its paraphrase table before the first score, so one
# process is started on first use and kept for the life of the interpreter: scoring several
# configurations in one run (a sweep, `compare`, the tests) pays that once. Each compute_score call is
# independent (it sends that call's SCORE lines and one EVAL line), so sharing changes no number.
_meteor_lock = threading.Lock()
_meteor_scorer: Any = None


def _meteor_instance() -> Any:
    """The shared pycocoevalcap ``Meteor`` scorer, (re)started when missing or dead."""
    global _meteor_scorer
    if _meteor_scorer is None or _meteor_scorer.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        _meteor_scorer = Meteor()
    return _meteor_scorer


def _meteor_scores(gts: dict[ImageId, list[str]], res: dict[ImageId, list[str]]) -> tuple[float, list[float]]:
    """METEOR corpus score and per-image scores from the shared process."""
    global _meteor_scorer
    with _meteor_lock:
        meteor = _meteor_instance()
        try:
            return meteor.compute_score(gts, res)
        except Exception:
            # A failed call leaves Meteor's own lock held and its pipe mid-protocol: discard the process.
            _meteor_scorer = None
            _stop_meteor(meteor)
            raise


def _stop_meteor(meteor: Any) -> None:
    if meteor.lock.locked():
        meteor.lock.release()  # otherwise Meteor.__del__ would block forever on it
    meteor.meteor_p.stdin.close()
    meteor.meteor_p.kill()
    meteor.meteor_p.wait()


@atexit.register
def _stop_shared_meteor() -> None:
    if _meteor_scorer is not None:
        _stop_meteor(_meteor_scorer)


# --- SPICE ---------------------------------------------------------------------------------------


def _spice_dir() -> Path:
    import pycocoevalcap.spice

    return Path(pycocoevalcap.spice.__file__).parent


def missing_spice_jars() -> list[str]:
    """The jars SPICE needs that are not installed (empty: SPICE can run).

    The list comes from spice-1.0.jar's own manifest Class-Path, so it is exactly what the JVM will
    look for; in a pip install the two Stanford CoreNLP 3.6.0 jars (code + models, ~400 MB) are missing
    until pycocoevalcap's Spice() downloads them into spice/lib.
    """
    spice_dir = _spice_dir()
    jar = spice_dir / "spice-1.0.jar"
    if not jar.is_file():
        return [jar.name]
    with zipfile.ZipFile(jar) as archive:
        manifest = archive.read("META-INF/MANIFEST.MF").decode()
    # Manifest lines are wrapped at 72 bytes; a continuation line starts with one space.
    unwrapped = manifest.replace("\r\n", "\n").replace("\n ", "")
    class_path = next(
        (line.split(":", 1)[1].split() for line in unwrapped.splitlines() if line.startswith("Class-Path:")),
        [],
    )
    return [entry for entry in class_path if not (spice_dir / entry).is_file()]


def _spice_skip_reason(mode: str) -> str | None:
    """Why SPICE will not run in this mode and environment, or None when it will."""
    if mode == "off":
        return "disabled (spice='off')"
    missing = missing_spice_jars()
    if not missing:
        return None
    reason = (
        f"SPICE jars missing from {_spice_dir()}: {', '.join(missing)} "
        "(install Stanford CoreNLP 3.6.0 with `vlm-quant setup spice`, or `--from` its zip offline)"
    )
    if mode == "on":
        raise UserError(f"spice='on' but {reason}.")
    return reason


def _add_spice(
    gts: dict[ImageId, list[str]],
    res: dict[ImageId, list[str]],
    corpus: dict[str, float],
    per_image: dict[ImageId, dict[str, float]],
    *,
    required: bool,
) -> str | None:
    """Run SPICE into ``corpus``/``per_image``; return None, or (mode "auto") why it failed."""
    from pycocoevalcap.spice.spice import Spice

    try:
        with _java_module_opens():
            score, scores = Spice().compute_score(gts, res)
    except (subprocess.CalledProcessError, OSError) as exc:
        if required:
            raise
        return f"SPICE failed: {exc}"
    corpus["spice"] = float(score)  # mean of per-image F-scores; NaN if any image has none (as the reference)
    # Spice returns its scores in sorted id order, not in gts' order.
    for image_id, image_scores in zip(sorted(gts), scores, strict=True):
        per_image[image_id]["spice"] = float(image_scores["All"]["f"])
    return None


# SPICE's cache serializer (fst 2.47) reflects into java.base, which Java >= 16 forbids unless opened.
# JDK_JAVA_OPTIONS is read by the java launcher of Java >= 9 only, so Java 8 is unaffected.
_SPICE_JAVA_OPENS = " ".join(
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.util", "java.math", "java.net", "java.text", "java.io", "java.nio")
)


@contextlib.contextmanager
def _java_module_opens() -> Iterator[None]:
    """Temporarily add the --add-opens flags SPICE needs on modern Java (Spice takes no JVM arguments)."""
    previous = os.environ.get("JDK_JAVA_OPTIONS")
    os.environ["JDK_JAVA_OPTIONS"] = f"{previous} {_SPICE_JAVA_OPENS}" if previous else _SPICE_JAVA_OPENS
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("JDK_JAVA_OPTIONS", None)
        else:
            os.environ["JDK_JAVA_OPTIONS"] = previous


# --- COCO files ----------------------------------------------------------------------------------


def _read_coco_results(path: Path) -> dict[ImageId, str]:
    """``[{"image_id", "caption"}, ...]`` -> {image_id: caption}; one caption per image."""
    return read_results(path, "image_id", "caption", "COCO")


def _read_coco_captions(path: Path) -> dict[ImageId, list[str]]:
    """A COCO captions file -> {image_id: [reference captions]} for the images it lists."""
    coco = load_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("annotations"), list):
        raise UserError(f"{path}: expected a COCO captions file with 'images' and 'annotations'.")
    image_ids = {image.get("id") for image in coco.get("images", []) if isinstance(image, dict)}
    references: dict[ImageId, list[str]] = {}
    for n, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise UserError(f"{path}: annotation {n} lacks 'image_id' or a string 'caption'.")
        if image_ids and ann["image_id"] not in image_ids:
            raise UserError(
                f"{path}: annotation {n} refers to image_id {ann['image_id']!r}, absent from 'images'."
            )
        references.setdefault(ann["image_id"], []).append(ann["caption"])
    return references
