"""Evaluation: a cell's dev predictions and metrics, chance levels, latency (rules in evaluate.smk, latency.smk)."""
