"""Statistics against hand-computed cases, the library metrics, and known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dropbench.evaluate import metrics
from dropbench.report import stats
from dropbench.report.significance import metric_layout


def run(prediction, label, split="validation"):
    return {split: {"prediction": np.asarray(prediction), "label": np.asarray(label)}}


def test_t_interval_by_hand():
    out = stats.seed_interval([1.0, 2.0, 3.0])
    # sd 1, t(0.975, 2) = 4.302653, half width 4.302653 / sqrt(3) = 2.484138
    assert (out["n_seeds"], out["mean"], out["sd"]) == (3, 2.0, 1.0)
    assert out["ci_low"] == pytest.approx(2 - 2.484138, abs=1e-6)
    assert out["ci_high"] == pytest.approx(2 + 2.484138, abs=1e-6)


def test_one_seed_has_no_interval_and_missing_values_are_skipped():
    out = stats.seed_interval([0.7, math.nan])
    assert out["n_seeds"] == 1 and out["mean"] == 0.7
    assert all(math.isnan(out[key]) for key in ("sd", "ci_low", "ci_high"))


def test_t_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(4000):
        out = stats.seed_interval(rng.normal(0.8, 0.05, size=3))
        covered += out["ci_low"] <= 0.8 <= out["ci_high"]
    assert 0.94 <= covered / 4000 <= 0.96  # binomial sd 0.0034


@pytest.mark.parametrize("task", ["cola", "mrpc", "stsb", "mnli"])
def test_batch_metrics_equal_the_library_metrics(task):
    rng = np.random.default_rng(2)
    spec = metrics.get_task(task)
    preds, labels, expected = {}, {}, {}
    for split in spec.dev_splits:
        if spec.is_regression:
            labels[split] = rng.uniform(0, 5, 50).astype(np.float32)
            preds[split] = (labels[split] + rng.normal(0, 2, 50)).astype(np.float32)
        else:
            labels[split] = rng.integers(0, spec.num_labels, 50)
            preds[split] = np.where(rng.random(50) < 0.6, labels[split], rng.integers(0, spec.num_labels, 50))
        prefix = "" if len(spec.dev_splits) == 1 else f"{split}_"
        expected.update({prefix + k: v for k, v in metrics.compute(task, preds[split], labels[split]).items()})
    got = stats.run_metrics(metric_layout(task), preds, labels)
    assert {k: float(v[0]) for k, v in got.items() if k != "task_score"} == pytest.approx(expected)
    assert float(got["task_score"][0]) == pytest.approx(np.mean(list(expected.values())))


def test_permutation_p_value_by_hand():
    # A right on all 4 examples, B wrong on all 4: of the 2^4 equally likely swaps only "none" and
    # "all" reach |delta| = 1, so the exact p-value is 2/16.
    a, b = run([1, 0, 1, 1], [1, 0, 1, 1]), run([0, 1, 0, 0], [1, 0, 1, 1])
    delta, p = stats.paired_permutation_test(metric_layout("sst2"), [a], [b], resamples=20000)["accuracy"]
    assert delta == 1.0
    assert p == pytest.approx(2 / 16, abs=0.01)
    # identical predictions: every replicate equals the observed 0
    assert stats.paired_permutation_test(metric_layout("sst2"), [a], [a], resamples=100)["accuracy"] == (0.0, 1.0)


def _simulated_pair(rng, n, accuracy_a, accuracy_b, seeds=2):
    labels = rng.integers(0, 2, n)
    runs = []
    for accuracy in (accuracy_a, accuracy_b):
        runs.append([run(np.where(rng.random(n) < accuracy, labels, 1 - labels), labels) for _ in range(seeds)])
    return runs


def test_no_true_difference_rejects_at_about_the_nominal_rate():
    rng = np.random.default_rng(3)
    draws = 300
    rejected = {"accuracy": 0, "f1": 0}
    for draw in range(draws):
        a, b = _simulated_pair(rng, 120, 0.75, 0.75)
        result = stats.paired_permutation_test(metric_layout("mrpc"), a, b, resamples=199, seed=draw)
        for name in rejected:
            rejected[name] += result[name][1] <= 0.05
    # nominal 5%: 15 of 300 expected, binomial sd 3.8
    assert all(5 <= count <= 27 for count in rejected.values()), rejected


def test_a_real_difference_is_found_with_its_sign():
    rng = np.random.default_rng(4)
    a, b = _simulated_pair(rng, 400, 0.65, 0.85, seeds=3)
    result = stats.paired_permutation_test(metric_layout("cola"), a, b, resamples=500)
    delta, p = result["matthews_correlation"]
    assert delta < -0.2 and p < 0.01


def test_correlation_tests_recompute_pearson_on_each_replicate():
    rng = np.random.default_rng(5)
    labels = rng.uniform(0, 5, 200)
    good = run(labels + rng.normal(0, 0.5, 200), labels)
    bad = run(labels + rng.normal(0, 3.0, 200), labels)
    result = stats.paired_permutation_test(metric_layout("stsb"), [good], [bad], resamples=300)
    assert result["pearson"][0] > 0.3 and result["pearson"][1] < 0.01
    constant = run(np.full(200, 2.5), labels)
    delta, p = stats.paired_permutation_test(metric_layout("stsb"), [constant], [bad], resamples=50)["pearson"]
    assert math.isnan(delta) and math.isnan(p)


def test_holm_by_hand():
    adjusted = stats.holm([0.01, 0.04, 0.03, math.nan])
    # sorted 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> kept monotone at 0.06
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert stats.holm([0.5, 0.9])[1] == 1.0  # capped at 1


def test_chance_levels_and_diverged_runs():
    labels = {"validation": np.array([1, 1, 1, 0])}
    levels = stats.chance_levels(metric_layout("mrpc"), labels)
    assert levels == pytest.approx({"accuracy": 0.75, "f1": 2 * 0.75 / 1.75})
    majority = {"accuracy": 0.75, "f1": 6 / 7}
    assert stats.at_chance(majority, levels)
    assert not stats.at_chance({"accuracy": 0.9, "f1": 0.92}, levels)
    score = np.mean(list(majority.values()))
    assert stats.diverged(majority, levels, score, [score + 0.06, math.nan])
    assert not stats.diverged(majority, levels, score, [score + 0.04])  # not clearly above
    corr = stats.chance_levels(metric_layout("stsb"), {"validation": np.array([0.0, 5.0])})
    assert stats.at_chance({"pearson": math.nan, "spearmanr": math.nan}, corr)
    assert stats.at_chance({"pearson": -0.05, "spearmanr": 0.09}, corr)
    assert not stats.at_chance({"pearson": 0.11, "spearmanr": 0.11}, corr)
    assert not stats.at_chance({"pearson": 0.3, "spearmanr": 0.05}, corr)
    assert stats.at_chance({"matthews_correlation": 0.0}, stats.chance_levels(metric_layout("cola"), {"validation": np.array([0, 1])}))


def test_spearman_with_and_without_ties_equals_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(6)
    refs = rng.uniform(0, 5, 40)
    for preds in (rng.normal(size=40), np.round(rng.normal(size=40))):  # continuous, then many ties
        assert stats.run_metrics(metric_layout("stsb"), {"validation": preds}, {"validation": refs})["spearmanr"][0] == pytest.approx(spearmanr(preds, refs)[0])
