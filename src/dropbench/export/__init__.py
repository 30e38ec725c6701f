"""Results that leave the workflow: ONNX/safetensors exports and MLflow tracking (rules in export.smk, tracking.smk)."""
