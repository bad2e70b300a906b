"""vlm-quant: what post-training quantization does to vision-language models, measured and tracked in
MLflow."""

__version__ = "0.1.0"


def load_logged_model(run_id: str, **kwargs):  # noqa: ANN003, ANN201 - see models.logged_model
    """The logged model of MLflow run ``run_id``, at its logged precision per role (model, processor, ...)."""
    from vlm_quant.models.logged_model import load_logged_model as load

    return load(run_id, **kwargs)
