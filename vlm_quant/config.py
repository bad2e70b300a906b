"""The experiment config: one frozen, validated value built from YAML and command-line parameters.

Every knob a run depends on lives here, flat, with its type, default and help text, so that
`--help`, the README's parameter table, the YAML loader and the MLflow params all come from one
place. Explicit parameters override the YAML; unknown keys and bad values are errors naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vlm_quant.errors import UserError
from vlm_quant.quantize.presets import PRESETS

DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
# The caption prompt used by lmms-eval for COCO captioning: short, one sentence, comparable.
DEFAULT_CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
AUTO = "auto"
VQA_MAX_NEW_TOKENS = 16

WEIGHTS_CHOICES = ("pretrained", "random")
TASK_CHOICES = ("captioning", "vqa", "pope")
SPICE_CHOICES = ("auto", "on", "off")
DATASET_CHOICES = ("", "coco", "nocaps", "vqav2", "textvqa", "vizwiz", "docvqa", "chartqa")
SOURCE_CHOICES = ("local", "hf")
ENGINE_CHOICES = ("eager", "compiled")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
SPLITTING_CHOICES = ("auto", "on", "off")
IMAGE_PROCESSOR_CHOICES = ("auto", "torchvision", "pil")
ORT_CALIBRATION_CHOICES = ("minmax", "entropy", "percentile")
ORT_PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
SCORE_CHOICES = ("now", "later")


def _param(default: Any, help: str, choices: tuple[str, ...] | None = None):
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class ExperimentConfig:
    """One evaluation: which model, at which precision, on which samples, measured how."""

    # --- tracking ---------------------------------------------------------------------------
    experiment: str = _param("vlm-quant", "MLflow experiment name (created when missing).")
    run_name: str = _param("", "MLflow run name; empty: '<model short name> · <quant>[+precision]'.")
    # --- model ------------------------------------------------------------------------------
    model: str = _param(
        DEFAULT_MODEL, "Hugging Face model id or local directory of an image-text-to-text model."
    )
    revision: str = _param("", "Hub revision (branch, tag or commit); empty: the default branch.")
    base_model: str = _param(
        "",
        "quant=prequantized: the unquantized model the checkpoint was made from, so compare pairs the run "
        "with that model's baseline; empty: the model itself.",
    )
    weights: str = _param(
        "pretrained",
        "'pretrained' loads the checkpoint; 'random' builds the real architecture at its real size with "
        "seeded random weights from its configuration files alone: bundled in the package (offline), a "
        "local folder, or the Hub (config files only, no weights). For cost only: quality is meaningless.",
        WEIGHTS_CHOICES,
    )
    trust_remote_code: bool = _param(
        False,
        "Allow a checkpoint built by its own Python code (Phi-3.5-vision, Bunny) to run that code on this "
        "machine; a Hub model then needs revision=<40-hex commit hash>. Off by default.",
    )
    # --- precision --------------------------------------------------------------------------
    quant: str = _param(
        "fp16",
        f"Precision preset ({', '.join(PRESETS)}); docs/precision.md (gguf-*: llama.cpp, docs/gguf.md).",
    )
    precision: str = _param(
        "", "Per-role override composed on top of the preset, e.g. 'vision=int8,language=nf4,projector=fp16'."
    )
    int8_threshold: float = _param(
        6.0, "LLM.int8() outlier threshold: activations above it stay in fp16 (bitsandbytes default 6.0)."
    )
    double_quant: bool = _param(
        True, "NF4: also quantize the quantization constants (bitsandbytes double quant)."
    )
    ar_group_size: int = _param(
        -1,
        "AutoRound (ar-w4, ar-w8): weights per quantization group (-1: 128, or the largest power of two "
        "dividing every language linear's input width when 128 does not).",
    )
    ar_iters: int = _param(
        200, "AutoRound: SignRound tuning steps per decoder block (0: data-free round-to-nearest)."
    )
    ar_calibration_samples: int = _param(
        64,
        "AutoRound: image-prompt pairs to calibrate on, a seeded sample of the split disjoint from the "
        "evaluated ids and their images.",
    )
    ptq_calibration_samples: int = _param(
        64,
        "gptq-w4, awq-w4, gptq-w8, w8a8-sq (llm-compressor): image-prompt pairs to calibrate on, the same "
        "seeded draw as AutoRound's (disjoint from the evaluated images).",
    )
    ort_calibration_samples: int = _param(
        4,
        "ort-int8-static: calibration images, a seeded draw from the split disjoint from the evaluated ids.",
    )
    ort_calibration_method: str = _param(
        "minmax",
        "ort-int8-static: ONNX Runtime calibration method of the activation ranges.",
        ORT_CALIBRATION_CHOICES,
    )
    ort_provider: str = _param(
        "auto",
        "ONNX Runtime execution provider of ort-* roles: 'auto' (CUDA on a GPU when onnxruntime-gpu is "
        "installed, else CPU), 'cpu', 'cuda' or 'tensorrt' (both need onnxruntime-gpu).",
        ORT_PROVIDER_CHOICES,
    )
    # --- task and data ----------------------------------------------------------------------
    task: str = _param("captioning", "Evaluation task.", TASK_CHOICES)
    dataset: str = _param(
        "",
        "Dataset: coco or nocaps (captioning); vqav2, textvqa, vizwiz, docvqa or chartqa (vqa). "
        "Empty: coco / vqav2.",
        DATASET_CHOICES,
    )
    source: str = _param(
        "local",
        "Where samples come from: 'local' (official COCO layout in data_dir) or 'hf' (datasets).",
        SOURCE_CHOICES,
    )
    data_dir: str = _param(
        "",
        "Local dataset folder: COCO (val2017/ + annotations/captions_val2017.json) or a VQA-format folder.",
    )
    questions_file: str = _param(
        "", "VQA: questions JSON (official format); empty: the dataset's default name in data_dir."
    )
    annotations_file: str = _param(
        "", "VQA: annotations JSON (official format); empty: the default name in data_dir."
    )
    image_dir: str = _param("", "VQA: folder of the images; empty: the dataset's default folder in data_dir.")
    shots: int = _param(
        0, "VQA few-shot: solved examples (image, question, answer) from a disjoint seeded pool."
    )
    spotcheck_n: int = _param(25, "VQA: size of the seeded random human spot-check sheet (0: none).")
    hf_dataset: str = _param(
        "lmms-lab/COCO-Caption2017", "Hugging Face dataset id used when source=hf (COCO 2017 val captions)."
    )
    split: str = _param(
        "val2017", "Dataset split name (logged; the local layout reads annotations/captions_<split>.json)."
    )
    n_samples: int = _param(
        500, "Number of images, a seeded random sample of the split (0: the whole split)."
    )
    seed: int = _param(0, "Seed of the sample selection and of random weights.")
    prompt: str = _param(
        "",
        "Prompt sent with each image (VQA: appended after the question). Empty: the task's default, logged.",
    )
    max_image_side: int = _param(
        1024, "Images are downscaled so their longest side is at most this many pixels."
    )
    instances_file: str = _param(
        "",
        "COCO instance annotations JSON (CHAIR of captions, POPE questions); empty: "
        "annotations/instances_<split>.json in data_dir when present (else CHAIR is absent, with a reason).",
    )
    pope_file: str = _param(
        "",
        "POPE: a published question file (JSONL of question_id, image, text, label) or a folder of "
        "coco_pope_{random,popular,adversarial}.json, read as is; empty: built from the instances.",
    )
    pope_objects: int = _param(
        3,
        "POPE built from instances: only images with at least this many distinct objects; positive (and as "
        "many negative) questions per image and split.",
    )
    pope_allow_subset: bool = _param(
        False,
        "POPE with pope_file: true scores only the questions whose image is in data_dir (not the published "
        "POPE then); false: any missing image (e.g. val2014 files given a val2017 folder) is an error before "
        "the model loads.",
    )
    spice: str = _param(
        "auto",
        "Captioning SPICE: 'auto' (runs when its Stanford CoreNLP jars are installed, else absent with the "
        "reason), 'on' (required: without the jars the run fails before the model loads; install them with "
        "`vlm-quant setup spice`), 'off'.",
        SPICE_CHOICES,
    )
    # --- generation -------------------------------------------------------------------------
    batch_size: int = _param(8, "Images per generate() call in the quality pass.")
    max_new_tokens: int = _param(
        32, "Greedy decoding stops at EOS or after this many new tokens (task=vqa: 16)."
    )
    engine: str = _param(
        "eager",
        "'eager' (HF generate, dynamic cache) or 'compiled' (static KV cache + torch.compile/CUDA graphs "
        "on GPU; engine_resolved=static-cache where nothing compiled, e.g. on CPU; eager with a logged "
        "reason where the probe fails). All configurations of a study must use the same.",
        ENGINE_CHOICES,
    )
    device: str = _param("auto", "'auto' (CUDA when available), 'cpu' or 'cuda'.", DEVICE_CHOICES)
    image_splitting: str = _param(
        "auto",
        "SmolVLM/Idefics3 image tiling: 'on', 'off', or 'auto' (processor default on GPU, off on CPU).",
        SPLITTING_CHOICES,
    )
    image_processor: str = _param(
        "auto",
        "Image-processor backend: 'torchvision' (tensor ops, several times faster; on the GPU when "
        "num_workers=0), 'pil', or 'auto' (transformers' choice: torchvision when installed). The backend "
        "that ran is logged as image_processor_backend; the two resize differently "
        "(see docs/input_pipeline.md).",
        IMAGE_PROCESSOR_CHOICES,
    )
    num_workers: int = _param(
        -1,
        "Input-pipeline worker processes preparing the next batches (images, chat template, processor) "
        "while the model generates; 0: in the main process between batches; -1: CPU cores per evaluate "
        "process - 1, 1 to 8.",
    )
    # 35: the fewest samples whose 95% Wilson interval, all identical, lies above the report's 0.90 warning
    # threshold (study/report/batch_invariance.samples_needed); with 16 every run would be warned.
    invariance_samples: int = _param(
        35,
        "Batch invariance: predicted samples (a seeded subset) regenerated at batch 1 after the quality pass "
        "and compared with their batched predictions (batch_invariance_agreement); 0: off. Only when "
        "batch_size > 1.",
    )
    # --- fidelity to the unquantized model (quantized runs) ---------------------------------
    fidelity_samples: int = _param(
        16,
        "Fidelity: distinct images, a seeded draw from the evaluated samples' (one sample each), run through "
        "the model before and after quantization.",
    )
    fidelity_new_tokens: int = _param(
        16,
        "Fidelity: greedy tokens the unquantized model continues each fidelity image with; KL and top-1 "
        "agreement are taken at every one of those positions, teacher-forced.",
    )
    # --- cost pass --------------------------------------------------------------------------
    cost_samples: int = _param(4, "Size of the fixed micro-set of image-prompt pairs timed in the cost pass.")
    cost_warmup: int = _param(
        -1, "Warm-up rounds before timing, each over every micro-set batch (-1: 3 on GPU, 1 on CPU)."
    )
    cost_iterations: int = _param(-1, "Minimum timed iterations per measurement (-1: 20 on GPU, 3 on CPU).")
    cost_seconds: float = _param(-1.0, "Minimum timed seconds per measurement (-1: 5 on GPU, 0 on CPU).")
    cost_new_tokens: int = _param(
        -1, "Fixed output length of the cost pass (-1: max_new_tokens on GPU, 8 on CPU)."
    )
    cost_batch_sizes: str = _param(
        "",
        "Comma-separated batch sizes of the cost pass's throughput (empty: 1, 8, 32 and batch_size on "
        "GPU; 1 and batch_size on CPU). A size that runs out of memory is absent, tagged "
        "vlm_quant.cost_oom_bs<B>.",
    )
    cost_phase_repeats: int = _param(
        -1,
        "Pairs of batch-1 NVML energy windows (prefill-only calls, then full-length calls, each >= 2 s) "
        "splitting energy into prefill J/image and decode J/token (-1: 10 on GPU, 0 on CPU; GPU only).",
    )
    # --- energy and carbon ------------------------------------------------------------------
    power_hz: float = _param(10.0, "GPU power/temperature/clock sampling rate during the whole run (Hz).")
    idle_seconds: float = _param(3.0, "Seconds of idle GPU power measured before the model loads (GPU only).")
    country_iso_code: str = _param(
        "USA", "ISO-3 country code for the grid's carbon intensity (codecarbon's data)."
    )
    pue: float = _param(
        1.0, "Power usage effectiveness of the data centre (facility energy = device energy x PUE)."
    )
    wue_l_per_kwh: float = _param(
        0.55,
        "On-site water usage effectiveness (L of cooling water per kWh of IT energy); default: Li et al. "
        "2023 'Making AI less thirsty', Table 1, U.S. average.",
    )
    water_intensity_l_per_kwh: float = _param(
        -1.0,
        "Water the grid consumes per kWh generated (L/kWh, off-site EWIF); -1: the sourced value for "
        "country_iso_code (USA 3.142, Li et al. 2023 Table 1), absent for countries without one.",
    )
    # --- scale out --------------------------------------------------------------------------
    processes: int = _param(
        1, "Processes (GPUs) to split the quality pass over; >1 relaunches through `accelerate launch`."
    )
    # --- crash safety -----------------------------------------------------------------------
    resume: str = _param(
        "", "Continue an interrupted run: a run id, or 'auto' (the latest unfinished run of the same config)."
    )
    # --- outputs ----------------------------------------------------------------------------
    log_model: bool = _param(
        True, "Log the checkpoint as saved at its precision as the run's model artifact."
    )
    register: str = _param(
        "", "Register the logged model under this name in the MLflow model registry (one version per config)."
    )
    score: str = _param(
        "now",
        "'now' scores the predictions when the quality pass ends (captioning needs Java on PATH); 'later' "
        "ends the run with predictions and costs but no scores (tag vlm_quant.scoring=deferred), for "
        "`vlm-quant score run RUN_ID` on a machine with Java.",
        SCORE_CHOICES,
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UserError(
                    f"{f.name}={getattr(self, f.name)!r} is not valid; choose one of {', '.join(choices)}."
                )
        positive = (
            "n_samples",
            "batch_size",
            "max_new_tokens",
            "max_image_side",
            "cost_samples",
            "processes",
        )
        for name in positive:
            minimum = 0 if name == "n_samples" else 1
            if getattr(self, name) < minimum:
                raise UserError(f"{name}={getattr(self, name)} must be >= {minimum}.")
        if self.source == "local" and not self.data_dir and not (self.questions_file and self.image_dir):
            raise UserError(
                "data_dir is required with source=local: the folder holding the images and annotations."
            )
        if self.shots < 0 or self.spotcheck_n < 0:
            raise UserError("shots and spotcheck_n must be >= 0.")
        if self.fidelity_samples < 1 or self.fidelity_new_tokens < 1:
            raise UserError(
                f"fidelity_samples={self.fidelity_samples} and "
                f"fidelity_new_tokens={self.fidelity_new_tokens} must be >= 1."
            )
        if self.wue_l_per_kwh < 0 or self.cost_phase_repeats < -1:
            raise UserError(
                f"wue_l_per_kwh={self.wue_l_per_kwh} must be >= 0 and cost_phase_repeats="
                f"{self.cost_phase_repeats} -1 (auto) or >= 0."
            )
        if self.invariance_samples < 0:
            raise UserError(f"invariance_samples={self.invariance_samples} must be >= 0 (0: off).")
        if (
            self.ar_group_size in (0,)
            or self.ar_group_size < -1
            or self.ar_iters < 0
            or self.ar_calibration_samples < 1
            or self.ptq_calibration_samples < 1
        ):
            raise UserError(
                "ar_group_size must be -1 (auto) or >= 1, ar_calibration_samples >= 1, "
                "ptq_calibration_samples >= 1, ar_iters >= 0."
            )
        if self.shots and self.task != "vqa":
            raise UserError(f"shots={self.shots} applies to task=vqa only.")
        if self.task == "captioning" and self.dataset not in ("", "coco", "nocaps"):
            raise UserError(
                f"dataset={self.dataset!r} is a VQA dataset; use task=vqa (captioning uses coco or nocaps)."
            )
        if self.task == "pope" and self.dataset not in ("", "coco"):
            raise UserError(f"dataset={self.dataset!r}: task=pope asks about COCO images (dataset=coco).")
        if self.num_workers < -1:
            raise UserError(f"num_workers={self.num_workers}: use -1 (auto), 0 (in-process) or more.")
        if self.pope_objects < 1:
            raise UserError(f"pope_objects={self.pope_objects} must be >= 1.")
        if self.task == "vqa" and self.dataset in ("coco", "nocaps"):
            raise UserError(
                f"dataset={self.dataset} is for captioning; "
                "VQA datasets: vqav2, textvqa, vizwiz, docvqa, chartqa."
            )

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, **overrides: Any) -> ExperimentConfig:
        """Build from an optional YAML file, then explicit overrides (None means 'not given')."""
        values: dict[str, Any] = {}
        if yaml_path:
            values.update(load_yaml(yaml_path))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ExperimentConfig:
        """Coerce each value to its field's type; unknown keys are errors naming the key."""
        known = {f.name: f for f in fields(cls)}
        if values.get("task") in ("vqa", "pope"):
            # VQA answers are a word or a phrase: 16 new tokens, not the captioning 32, also keeps the
            # cost pass (fixed output length) representative of VQA.
            values = {"max_new_tokens": VQA_MAX_NEW_TOKENS, **values}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"unknown config key(s): {', '.join(unknown)}. Valid keys: {', '.join(known)}.")
        coerced = {name: _coerce(name, value, known[name].type) for name, value in values.items()}
        return cls(**coerced)

    # --- views ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self) -> str:
        """Short hash of every field that can change a result (not the experiment, run name, log_model,
        register or score)."""
        relevant = {
            k: v
            for k, v in self.to_dict().items()
            # score: when the predictions are scored does not change them or their scores
            if k not in ("experiment", "run_name", "log_model", "register", "score")
        }
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read an experiment YAML: a flat mapping of config keys (``precision`` may be a role mapping)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}."
        )
    if isinstance(data.get("precision"), dict):
        data["precision"] = ",".join(f"{role}={value}" for role, value in data["precision"].items())
    return data


def _coerce(name: str, value: Any, type_name: str) -> Any:
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if type_name == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if type_name == "float":
            return float(value)
        if value is None:
            return ""
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} is not a valid {type_name}.") from None


def field_help() -> dict[str, tuple[Any, str]]:
    """name -> (default, help) for every parameter, for --help and the README table."""
    return {f.name: (f.default, f.metadata["help"]) for f in fields(ExperimentConfig)}
