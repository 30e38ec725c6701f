"""GLUE metric for the `evaluate` library; the scores come from `dropbench.evaluate.metrics.compute`.

Load it offline from this file or its directory:
    evaluate.load(".../dropbench/evaluate/glue_metric", config_name="mrpc")
`evaluate` copies this file into its modules cache and imports the copy, so
`dropbench` must be importable there (installed, or on PYTHONPATH). Delegating
keeps a single implementation of each metric.
"""

import datasets
import evaluate

from dropbench.data.glue import get_task
from dropbench.evaluate.metrics import compute

_CITATION = "Wang et al., GLUE: A Multi-Task Benchmark and Analysis Platform for NLU, ICLR 2019."

_DESCRIPTION = "Official GLUE dev-set metrics for one task (config_name = lowercase task name, e.g. 'sst2')."

_KWARGS_DESCRIPTION = (
    "predictions: class indices (int), or scores (float) for stsb. "
    "references: gold labels, same type and length. Returns a dict of metric name to float: "
    "accuracy, f1, matthews_correlation, pearson or spearmanr, as the task defines."
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    def _info(self):
        spec = get_task(self.config_name)  # unknown task -> ValueError naming the known ones
        value = datasets.Value("float64" if spec.is_regression else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
            # No format="numpy": datasets' numpy formatter would downcast float64 scores to float32.
        )

    def _compute(self, predictions, references):
        return compute(self.config_name, predictions, references)
