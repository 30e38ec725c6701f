"""Reports: summaries, tables, figures, statistics, the paper comparison, model cards, the oracle and layer-profile reports (rules in report.smk, card.smk, oracle.smk, retry.smk)."""
