import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # test this checkout's code, installed or not

from dropbench.evaluate import evaluate_metric, metrics  # noqa: E402

CASES = json.loads((Path(__file__).resolve().parent / "fixtures" / "metric_cases.json").read_text())
TASK_CASE = {"cola": "binary", "sst2": "binary", "mrpc": "binary", "qqp": "binary", "qnli": "binary",
             "rte": "binary", "wnli": "binary", "mnli": "three_class", "stsb": "regression"}


def reference_scores(task: str) -> dict[str, float]:
    """The same metrics straight from sklearn/scipy, as HF's `glue` metric computes them."""
    case = CASES[TASK_CASE[task]]
    p, r = case["predictions"], case["references"]
    return {
        "cola": lambda: {"matthews_correlation": matthews_corrcoef(r, p)},
        "mrpc": lambda: {"f1": f1_score(r, p), "accuracy": accuracy_score(r, p)},
        "qqp": lambda: {"f1": f1_score(r, p), "accuracy": accuracy_score(r, p)},
        "stsb": lambda: {"pearson": pearsonr(p, r)[0], "spearmanr": spearmanr(p, r)[0]},
    }.get(task, lambda: {"accuracy": accuracy_score(r, p)})()


@pytest.mark.parametrize("task", sorted(TASK_CASE))
def test_compute_equals_sklearn_scipy(task):
    """Counts-based metrics exactly; correlations to the last bits (numpy sums in another order than scipy:
    one implementation, metrics.BATCH_METRICS, serves the records and the statistics, issue 23 item 1)."""
    case = CASES[TASK_CASE[task]]
    got = metrics.compute(task, case["predictions"], case["references"])
    expected = reference_scores(task)
    assert list(got) == list(expected)
    if task == "stsb":
        assert got == {k: pytest.approx(float(v), rel=1e-13, abs=0) for k, v in expected.items()}
    else:
        assert got == {k: float(v) for k, v in expected.items()}
    assert all(type(v) is float for v in got.values())


def test_fixture_scores_are_not_trivial():
    # Guards against fixtures where every metric is 0 or 1 and exactness would prove little.
    for task in ("cola", "mrpc", "mnli", "stsb"):
        assert all(0.2 < v < 0.99 for v in reference_scores(task).values()), task


def test_input_validation():
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        metrics.compute("rte", [0, 1, 0], [0, 1])
    with pytest.raises(ValueError, match=r"predictions holds 2; allowed class indices 0\.\.1"):
        metrics.compute("rte", [0, 2], [0, 1])
    with pytest.raises(ValueError, match="must be integer class indices"):
        metrics.compute("mrpc", [0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        metrics.compute("sst2", [], [])
    with pytest.raises(ValueError, match="finite numbers"):
        metrics.compute("stsb", [1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown task"):
        metrics.compute("glue", [0], [0])


def test_degenerate_predictions_do_not_crash():
    assert math.isnan(metrics.compute("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])
    assert metrics.compute("mrpc", [0, 0], [1, 0]) == {"f1": 0.0, "accuracy": 0.5}
    assert metrics.compute("cola", [1, 1, 1], [0, 1, 1]) == {"matthews_correlation": 0.0}


# The evaluate path runs in a fresh interpreter so that (a) the offline switches are
# set before `evaluate`/`datasets` read them at import, (b) every socket connection
# fails, and (c) evaluate's modules cache lives in a temporary HF_HOME.
EVALUATE_SCRIPT = textwrap.dedent("""
    import json, socket, sys

    def no_network(*args, **kwargs):
        raise OSError("network access attempted")
    socket.socket.connect = no_network
    socket.create_connection = no_network

    import evaluate
    from dropbench.evaluate import evaluate_metric, metrics

    cases, task_case = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    out = {}
    for task, case_name in task_case.items():
        case = cases[case_name]
        via_helper = evaluate_metric.evaluate_task(task, case["predictions"], case["references"])
        module = evaluate.load(sys.argv[3], config_name=task)  # the documented direct use
        via_load = module.compute(predictions=case["predictions"], references=case["references"])
        out[task] = [via_helper, via_load]
    print(json.dumps(out))
""")


def test_evaluate_module_equals_direct_path_offline(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(ROOT / "src")}
    env.pop("HF_MODULES_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATE_SCRIPT, json.dumps(CASES), json.dumps(TASK_CASE),
         str(ROOT / "src" / "dropbench" / "evaluate" / "glue_metric")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for task, (via_helper, via_load) in results.items():
        case = CASES[TASK_CASE[task]]
        direct = metrics.compute(task, case["predictions"], case["references"])
        assert via_helper == direct, task
        assert via_load == direct, task
    assert set(results) == set(TASK_CASE)


def test_load_glue_metric_rejects_unknown_task():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        evaluate_metric.load_glue_metric("nope")
