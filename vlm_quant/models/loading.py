"""``load_vlm``: the one place where models and processors are read with ``from_pretrained``.

Real weights come from the Hugging Face Hub (or its local cache) or from a local directory; random
weights are first written by ``random_weights.materialize_random_checkpoint`` and then read through
the very same ``from_pretrained`` call, so a quantization config applies identically to both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoProcessor,
    Qwen2_5_VLProcessor,
    Qwen2VLProcessor,
    SmolVLMProcessor,
)
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_num2words_available, is_torchvision_available

from vlm_quant.errors import UserError
from vlm_quant.models.config_source import bundled_model_ids
from vlm_quant.models.families import FamilySpec, family_for_config, family_of
from vlm_quant.models.random_weights import materialize_random_checkpoint
from vlm_quant.models.remote_code import (
    RemoteCode,
    auto_model_class,
    check_random_weights_code,
    check_remote_code,
    read_raw_config,
)

__all__ = ["WEIGHT_SOURCES", "LoadedVLM", "family_of", "load_processor", "load_vlm"]

WEIGHT_SOURCES: tuple[str, ...] = ("pretrained", "random")


@dataclass
class LoadedVLM:
    """A model ready for generation, with where it came from.

    ``revision`` is the Hub commit hash when the weights (for random weights: the configuration) came
    from the Hub (or its cache), else None.
    ``source_dir`` is the local directory the weights were read from, when known. ``load_time_s`` is
    the wall time of reading config, weights and processor, in seconds (for random weights it
    excludes writing the random checkpoint the first time).
    """

    model: Any
    processor: Any
    family: FamilySpec
    model_id: str
    revision: str | None
    weights: str
    source_dir: str | None
    load_time_s: float
    remote_code: RemoteCode | None = None  # the checkpoint's own code that ran (trust_remote_code)


def load_vlm(
    model_id: str,
    *,
    weights: str = "pretrained",
    revision: str | None = None,
    dtype: torch.dtype = torch.float16,
    device: str = "cpu",
    trust_remote_code: bool = False,
    quantization_config=None,
    seed: int = 0,
    local_files_only: bool = False,
    image_backend: str = "auto",
) -> LoadedVLM:
    """Load a supported VLM and its processor, in eval mode.

    ``model_id`` is a Hub id (``"HuggingFaceTB/SmolVLM-256M-Instruct"``) or a local checkpoint
    directory. ``weights="random"`` builds the architecture of ``model_id`` (its bundled, local or Hub
    configuration at ``revision``; `config_source`) with random weights drawn from ``seed`` (cached on
    disk); ``seed`` is unused for pretrained weights.
    ``device`` is passed as ``device_map`` ("cpu", "cuda", "cuda:0", "auto"). ``image_backend``: the
    image processor's backend, "torchvision", "pil" or "auto" (transformers' default), see `load_processor`.
    """
    if weights not in WEIGHT_SOURCES:
        raise UserError(f"Unknown weights {weights!r}; choose one of: {', '.join(WEIGHT_SOURCES)}.")
    config_revision = None
    if weights == "random":
        # Remote code (Phi-3.5-vision, Bunny): the architecture is the checkpoint's own code, found in the
        # local Hugging Face cache at `revision`, which then pins that code; otherwise `revision` picks the
        # configuration files on the Hub (`config_source`).
        code = check_random_weights_code(model_id, trust_remote_code=trust_remote_code, revision=revision)
        if code is None:
            source = str(materialize_random_checkpoint(model_id, seed=seed, revision=revision))
            config_revision, remote_code = _random_config_revision(Path(source)), None
        else:  # its bundled config, built by the checkpoint's own code cached at `revision`
            source = str(materialize_random_checkpoint(model_id, seed=seed, code_dir=code.directory))
            config_revision, remote_code = code.remote_code.revision, code.remote_code
        revision = None  # the random checkpoint is a local directory
    else:
        source = _checked_source(model_id)
        local_dir = Path(source) if Path(source).is_dir() else None
        remote_code = check_remote_code(  # before any code or weight file is fetched
            model_id,
            read_raw_config(source, revision),
            trust_remote_code=trust_remote_code,
            revision=revision,
            local_dir=local_dir,
        )
    hub_kwargs = _hub_kwargs(revision, trust_remote_code, local_files_only)

    started = time.perf_counter()
    config = _load_config(source, model_id, hub_kwargs)
    family = family_for_config(config, trust_remote_code=trust_remote_code)  # fails fast, before the weights
    commit_hash = getattr(config, "_commit_hash", None)
    if commit_hash is not None and not Path(source).is_dir():
        # Weights and processor from the very commit the config came from, even if "main" moves on.
        hub_kwargs["revision"] = commit_hash
    # The processor first: a checkpoint without one (Bunny) is refused before its weights are read.
    processor = load_processor(
        source, model_type=config.model_type, image_backend=image_backend, **hub_kwargs
    )
    processor = with_prompt_format(processor, family, model_id)
    model_kwargs = {"config": config, "dtype": dtype, "device_map": device, **hub_kwargs}
    if quantization_config is not None:
        model_kwargs["quantization_config"] = quantization_config
    model = auto_model_class(config, trust_remote_code=trust_remote_code).from_pretrained(
        source, **model_kwargs
    )
    model.eval()
    load_time_s = time.perf_counter() - started

    return LoadedVLM(
        model=model,
        processor=processor,
        family=family,
        model_id=model_id,
        revision=commit_hash or config_revision,
        weights=weights,
        source_dir=_local_dir(source, commit_hash),
        load_time_s=load_time_s,
        remote_code=remote_code,
    )


def with_prompt_format(processor: Any, family: FamilySpec, model_id: str) -> Any:
    """``processor``, checked to take images, with the family's prompt format as its chat template when
    the checkpoint has none (`FamilyException.chat_template`: Phi-3.5-vision, Bunny).

    UserError when ``AutoProcessor`` gave no image processor (Bunny's checkpoints ship only a tokenizer:
    their model card builds the image inputs by hand, which vlm-quant does not reproduce).
    """
    if not hasattr(processor, "image_processor"):
        raise UserError(
            f"Model {model_id!r} ships no multimodal processor (AutoProcessor gives a "
            f"{type(processor).__name__}, which cannot encode images), so vlm-quant cannot build its inputs. "
            "Pass a checkpoint directory that adds a processor (processor_config.json + "
            "preprocessor_config.json)."
        )
    if getattr(processor, "chat_template", None) is None and family.chat_template is not None:
        processor.chat_template = family.chat_template
    return processor


def load_processor(
    path_or_id: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    model_type: str | None = None,
    image_backend: str = "auto",
):
    """``AutoProcessor.from_pretrained``, plus an image-only Qwen processor when torchvision is missing.

    transformers 5 cannot build any Qwen2-VL / Qwen2.5-VL processor without torchvision (its video
    processor needs it). vlm-quant never feeds videos, so without torchvision the Qwen processors are
    built without their video part; images, text and chat templates behave exactly as usual.
    SmolVLM2's processor refuses to start without the ``num2words`` package, which it needs only to word
    a video's frame count; vlm-quant never feeds videos, so without it the processor is built without that
    check (images, text and chat template unchanged). ``model_type`` (the config's) saves reading the
    config again when the caller has it.
    ``image_backend`` "torchvision" or "pil" replaces the image processor by that backend's (loaded
    alone: a Qwen processor's video part has no PIL backend); "auto" keeps transformers' choice.
    """
    if image_backend not in ("auto", "torchvision", "pil"):
        raise UserError(f"image_processor={image_backend!r}: choose auto, torchvision or pil.")
    if image_backend == "torchvision" and not is_torchvision_available():
        raise UserError(
            "image_processor=torchvision, but torchvision is not installed (or does not import beside "
            "this torch build); install the torchvision release matching torch, or use image_processor=pil."
        )
    hub_kwargs = _hub_kwargs(revision, trust_remote_code, local_files_only)
    if model_type is None and not (is_torchvision_available() and is_num2words_available()):
        model_type = _model_type(path_or_id, hub_kwargs)
    if not is_torchvision_available() and model_type in _IMAGE_ONLY_PROCESSORS:
        return _IMAGE_ONLY_PROCESSORS[model_type].from_pretrained(path_or_id, **hub_kwargs)
    if model_type == "smolvlm" and not is_num2words_available():
        processor = _SmolVLMProcessorWithoutNum2Words.from_pretrained(path_or_id, **hub_kwargs)
    else:
        processor = AutoProcessor.from_pretrained(path_or_id, **hub_kwargs)
    if image_backend != "auto" and hasattr(processor, "image_processor"):
        processor.image_processor = AutoImageProcessor.from_pretrained(
            path_or_id, backend=image_backend, **hub_kwargs
        )
    return processor


def _model_type(path_or_id: str, hub_kwargs: dict) -> str | None:
    """The config's ``model_type``; None for a folder of processor files alone (no config.json), whose
    processor class then comes from its own files."""
    try:
        return getattr(AutoConfig.from_pretrained(path_or_id, **hub_kwargs), "model_type", None)
    except (OSError, ValueError):
        return None


def _hub_kwargs(revision: str | None, trust_remote_code: bool, local_files_only: bool) -> dict:
    kwargs: dict = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    if revision is not None:
        kwargs["revision"] = revision
    return kwargs


def _checked_source(model_id: str) -> str:
    """``model_id`` itself, after rejecting a local path that does not exist (a Hub id has one '/')."""
    looks_like_path = model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1
    if looks_like_path and not Path(model_id).expanduser().is_dir():
        raise UserError(
            f"Model directory {model_id!r} does not exist; pass an existing checkpoint directory."
        )
    return str(Path(model_id).expanduser()) if looks_like_path else model_id


def _load_config(source: str, model_id: str, hub_kwargs: dict):
    """The model config, turning "not found / Hub unreachable" into a UserError that says what to do."""
    try:
        return AutoConfig.from_pretrained(source, **hub_kwargs)
    except OSError as error:
        raise UserError(_not_found_message(model_id, error)) from error
    except ValueError as error:  # e.g. a local directory without config.json
        if not Path(source).is_dir():
            raise
        raise UserError(f"Directory {source!r} holds no readable model checkpoint: {error}") from error


def _not_found_message(model_id: str, error: OSError) -> str:
    if Path(model_id).expanduser().is_dir():
        return f"Cannot read a checkpoint from directory {model_id!r}: {error}"
    advice = (
        "it is bundled, so `-P weights=random` runs its real architecture with random weights offline"
        if model_id in bundled_model_ids()
        else f"pass a local checkpoint directory instead, or use `-P weights=random` with a bundled model "
        f"({', '.join(bundled_model_ids())})"
    )
    return (
        f"Cannot load model {model_id!r} from the Hugging Face Hub: the Hub is unreachable (offline, or "
        f"HF_HUB_OFFLINE=1) and the model is not in the local cache, or no such repository/revision "
        f"exists. For {model_id!r}, {advice}. ({error})"
    )


def _random_config_revision(checkpoint: Path) -> str | None:
    """The Hub commit a random checkpoint's configuration came from (None: bundled or local files)."""
    manifest = checkpoint / "vlm_quant_random.json"
    if not manifest.is_file():
        return None
    import json

    return json.loads(manifest.read_text()).get("config_revision")


def _local_dir(source: str, commit_hash: str | None) -> str | None:
    """The directory the files were read from: the path itself, or the Hub cache snapshot."""
    if Path(source).is_dir():
        return str(Path(source).resolve())
    if commit_hash is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached_config = try_to_load_from_cache(source, "config.json", revision=commit_hash)
    return str(Path(cached_config).parent) if isinstance(cached_config, str) else None


def _image_only_init(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
    """Qwen2(.5)-VL processor ``__init__`` without the video processor (same token attributes)."""
    self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
    self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
    self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
    ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def _save_with_image_config(self, save_directory, *args, **kwargs):
    """Save as usual, plus the legacy ``preprocessor_config.json`` from which a video processor can be
    rebuilt where torchvision exists (best effort; untested here for lack of torchvision)."""
    result = ProcessorMixin.save_pretrained(self, save_directory, *args, **kwargs)
    self.image_processor.to_json_file(str(Path(save_directory) / "preprocessor_config.json"))
    return result


def _image_only(base: type[ProcessorMixin]) -> type[ProcessorMixin]:
    # Keeps the base class's __name__: it is what save_pretrained records as processor_class, so a
    # saved processor reloads as the real class wherever torchvision is installed.
    return type(
        base.__name__,
        (base,),
        {
            "__init__": _image_only_init,
            "save_pretrained": _save_with_image_config,
            "__qualname__": f"{base.__name__}WithoutVideo",
            "__module__": __name__,
        },
    )


_IMAGE_ONLY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": _image_only(Qwen2VLProcessor),
    "qwen2_5_vl": _image_only(Qwen2_5_VLProcessor),
}


def _smolvlm_init_without_num2words(
    self, image_processor, tokenizer, video_processor, image_seq_len: int = 169, chat_template=None, **kwargs
):
    """``SmolVLMProcessor.__init__`` (the same token attributes) without its ``num2words`` check: that
    package only spells out a video's frame count, and vlm-quant passes images only."""
    self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
    self.image_token = getattr(tokenizer, "image_token", "<image>")
    self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
    self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
    self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
    self.image_seq_len = image_seq_len
    self.video_token = getattr(tokenizer, "video_token", "<video>")
    ProcessorMixin.__init__(
        self, image_processor, tokenizer, video_processor, chat_template=chat_template, **kwargs
    )


# Keeps SmolVLMProcessor's __name__, so a saved processor records the real class (see _image_only).
_SmolVLMProcessorWithoutNum2Words = type(
    SmolVLMProcessor.__name__,
    (SmolVLMProcessor,),
    {
        "__init__": _smolvlm_init_without_num2words,
        "__qualname__": "SmolVLMProcessorWithoutNum2Words",
        "__module__": __name__,
    },
)
