"""Fine-tuning: the training loop and its resumable state, heads, the paper's section-5 families, learning-rate selection (rules in finetune.smk, tuning.smk)."""
