"""Data: GLUE tasks and their readers, model and data sources, tokenized features (rules in workflow/rules/data.smk, models.smk)."""
