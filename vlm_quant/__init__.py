"""vlm-quant: what post-training quantization does to vision-language models, measured and tracked in MLflow."""

__version__ = "0.1.0"
