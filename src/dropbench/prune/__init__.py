"""Pruning: which layers a strategy drops (strategies, layer scores, the greedy search) and removing them from a checkpoint (rules in prune.smk, greedy.smk, profile.smk)."""
