import numpy as np
import pytest

from dropbench.prune import strategies, user_strategies
from dropbench.prune.strategies import layers_to_drop

BUILT_IN = ["angular", "bottom", "contribution", "even_alternate", "odd_alternate", "random", "symmetric", "top"]

TWELVE_LAYERS = {
    ("top", 2): [10, 11],
    ("top", 4): [8, 9, 10, 11],
    ("top", 6): [6, 7, 8, 9, 10, 11],
    ("bottom", 2): [0, 1],
    ("bottom", 4): [0, 1, 2, 3],
    ("bottom", 6): [0, 1, 2, 3, 4, 5],
    ("even_alternate", 2): [9, 11],
    ("even_alternate", 4): [5, 7, 9, 11],
    ("even_alternate", 6): [1, 3, 5, 7, 9, 11],
    ("odd_alternate", 2): [8, 10],
    ("odd_alternate", 4): [4, 6, 8, 10],
    ("odd_alternate", 6): [0, 2, 4, 6, 8, 10],
    ("symmetric", 2): [5, 6],
    ("symmetric", 4): [4, 5, 6, 7],
    ("symmetric", 6): [3, 4, 5, 6, 7, 8],
}


def fake_similarity(num_layers, seed=0):
    rng = np.random.default_rng(seed)
    sim = rng.uniform(0.2, 1.0, size=(num_layers + 1, num_layers + 1))
    sim = (sim + sim.T) / 2
    np.fill_diagonal(sim, 1.0)
    return sim


def test_built_ins_registered():
    assert set(BUILT_IN) <= set(strategies.available())
    assert strategies.available() == sorted(strategies.available())
    assert [name for name in BUILT_IN if strategies.needs_data(name)] == ["angular", "contribution"]


@pytest.mark.parametrize(("name", "k"), sorted(TWELVE_LAYERS))
def test_twelve_layer_lists(name, k):
    assert layers_to_drop(name, 12, k) == TWELVE_LAYERS[(name, k)]


def test_alternate_overflow_continues_from_the_top():
    assert layers_to_drop("even_alternate", 12, 8) == [1, 3, 5, 7, 8, 9, 10, 11]
    assert layers_to_drop("odd_alternate", 12, 7) == [0, 2, 4, 6, 8, 10, 11]
    assert layers_to_drop("even_alternate", 5, 4) == [0, 2, 3, 4]


def test_symmetric_odd_remainder_keeps_extra_layer_at_bottom():
    assert layers_to_drop("symmetric", 12, 3) == [5, 6, 7]
    assert layers_to_drop("symmetric", 7, 2) == [3, 4]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_valid_k_gives_k_sorted_unique_indices(name):
    for num_layers in range(2, 25):
        context = {"similarity": fake_similarity(num_layers, seed=num_layers), "seed": 3}
        for k in range(1, num_layers):
            drop = layers_to_drop(name, num_layers, k, context)
            assert drop == sorted(set(drop)), (num_layers, k, drop)
            assert len(drop) == k and all(0 <= i < num_layers for i in drop), (num_layers, k, drop)


def test_random_is_deterministic_per_seed():
    assert layers_to_drop("random", 12, 4) == layers_to_drop("random", 12, 4, {"seed": 0})
    assert layers_to_drop("random", 12, 4, {"seed": 7}) == layers_to_drop("random", 12, 4, {"seed": 7})
    draws = {tuple(layers_to_drop("random", 12, 4, {"seed": seed})) for seed in range(10)}
    assert len(draws) > 1


def test_contribution_drops_layers_that_change_least():
    sim = np.eye(5)
    for layer, score in enumerate([0.5, 0.9, 0.2, 0.9]):
        sim[layer, layer + 1] = sim[layer + 1, layer] = score
    assert layers_to_drop("contribution", 4, 1, {"similarity": sim}) == [1]  # tie 1 vs 3: lower first
    assert layers_to_drop("contribution", 4, 2, {"similarity": sim}) == [1, 3]
    assert layers_to_drop("contribution", 4, 3, {"similarity": sim}) == [0, 1, 3]


def test_angular_picks_most_similar_contiguous_block():
    sim = np.full((7, 7), 0.1)
    np.fill_diagonal(sim, 1.0)
    sim[2, 4] = sim[4, 2] = 0.95  # block of layers 2,3
    sim[3, 5] = sim[5, 3] = 0.9
    sim[1, 4] = sim[4, 1] = 0.99  # block of layers 1,2,3
    assert layers_to_drop("angular", 6, 2, {"similarity": sim}) == [2, 3]
    assert layers_to_drop("angular", 6, 3, {"similarity": sim}) == [1, 2, 3]


def test_data_strategies_require_similarity_of_right_shape():
    with pytest.raises(ValueError, match="context\\['similarity'\\]"):
        layers_to_drop("contribution", 12, 2)
    with pytest.raises(ValueError, match=r"shape \(5, 5\).*\(13, 13\)"):
        layers_to_drop("angular", 12, 2, {"similarity": np.eye(5)})


def test_unknown_strategy_names_it_and_lists_available():
    with pytest.raises(ValueError, match="unknown strategy 'middle'.*even_alternate.*top"):
        layers_to_drop("middle", 12, 2)
    with pytest.raises(ValueError, match="'middle'"):
        strategies.validate("middle")
    with pytest.raises(ValueError, match="'middle'"):
        strategies.needs_data("middle")


@pytest.mark.parametrize("k", [0, -1, 12, 13])
def test_bad_k_names_k_and_allowed_range(k):
    with pytest.raises(ValueError, match=f"k={k}.*1\\.\\.11"):
        layers_to_drop("top", 12, k)


def test_validate_without_num_layers():
    strategies.validate("top", k=3)
    strategies.validate("contribution")
    with pytest.raises(ValueError, match="k=0"):
        strategies.validate("top", k=0)
    with pytest.raises(ValueError, match="k must be an integer, got '2'"):
        strategies.validate("top", 12, "2")
    with pytest.raises(ValueError, match="num_layers"):
        strategies.validate("top", 1, 1)


@pytest.fixture
def isolated_registry(monkeypatch):
    """User strategies registered by a test vanish after it."""
    monkeypatch.setattr(strategies, "_REGISTRY", dict(strategies._REGISTRY))
    monkeypatch.setattr(user_strategies, "_FILE_MODULES", {})


def test_user_strategies_from_file_and_module(tmp_path, monkeypatch, isolated_registry):
    source = tmp_path / "my_strategies.py"
    source.write_text(
        "def every_third(num_layers, k, context):\n"
        "    return list(range(num_layers - 1, -1, -3))[:k]\n"
        "def best_pair(num_layers, k, context):\n"
        "    return [0, 1][:k]\n"
        "best_pair.needs_data = True\n"
        "def broken(num_layers, k, context):\n"
        "    return [0] * k\n"
    )
    assert strategies.load_user_strategies([f"{source}:every_third"]) == ["every_third"]
    assert layers_to_drop("every_third", 12, 3) == [5, 8, 11]
    assert not strategies.needs_data("every_third")
    # reloading the same config line is harmless
    strategies.load_user_strategies([f"{source}:every_third"])

    monkeypatch.syspath_prepend(str(tmp_path))
    assert strategies.load_user_strategies({"pair_user": "my_strategies:best_pair"}) == ["pair_user"]
    assert strategies.needs_data("pair_user")
    assert layers_to_drop("pair_user", 4, 2, {"similarity": np.eye(5)}) == [0, 1]

    strategies.load_user_strategies({"broken_user": f"{source}:broken"})
    with pytest.raises(ValueError, match="'broken_user' returned \\[0, 0\\]"):
        layers_to_drop("broken_user", 12, 2)


def test_user_strategy_errors(tmp_path, isolated_registry):
    with pytest.raises(ValueError, match="'no_colon'.*module.path:function"):
        strategies.load_user_strategies(["no_colon"])
    with pytest.raises(ValueError, match="does not exist"):
        strategies.load_user_strategies([f"{tmp_path}/missing.py:fn"])
    with pytest.raises(ValueError, match="has no function 'nope'"):
        strategies.load_user_strategies(["dropbench.prune.strategies:nope"])
    with pytest.raises(ValueError, match="'top' is already registered"):
        strategies.load_user_strategies({"top": "dropbench.prune.strategies:bottom"})


# ---------------------------------------------------------------- families (task_specific_<base>, iterative_<base>)


@pytest.mark.parametrize("family", ["task_specific_", "iterative_"])
@pytest.mark.parametrize(("name", "k"), sorted(TWELVE_LAYERS))
def test_family_drops_the_layers_of_its_base(family, name, k):
    assert layers_to_drop(family + name, 12, k) == TWELVE_LAYERS[(name, k)]
    assert strategies.family_of(family + name) == (family, name)


def test_family_keeps_its_bases_data_scope():
    assert strategies.needs_data("task_specific_contribution") and strategies.needs_data("iterative_angular")
    assert not strategies.needs_data("iterative_top")
    sim = fake_similarity(12)
    assert layers_to_drop("iterative_contribution", 12, 4, {"similarity": sim}) == layers_to_drop("contribution", 12, 4, {"similarity": sim})
    with pytest.raises(ValueError, match="context\\['similarity'\\]"):
        layers_to_drop("task_specific_contribution", 12, 2)


def test_family_with_unknown_base_names_it_and_lists_bases():
    with pytest.raises(ValueError, match="'task_specific_middle'.*'middle' is not one.*allowed bases: angular.*top"):
        strategies.validate("task_specific_middle")
    with pytest.raises(ValueError, match="unknown strategy 'iterative_'.*iterative_<base>.*task_specific_<base>"):
        strategies.validate("iterative_")
    with pytest.raises(ValueError, match="'iterative_iterative_top'"):  # families do not nest
        strategies.validate("iterative_iterative_top")
    assert not strategies.is_known("task_specific_middle") and strategies.is_known("task_specific_top")
    assert strategies.family_of("top") == (None, "top")


def test_family_of_a_custom_base(tmp_path, isolated_registry):
    source = tmp_path / "mine.py"
    source.write_text("def lowest_pair(num_layers, k, context):\n    return [1, 0][:k]\n")
    assert not strategies.is_known("iterative_lowest_pair")
    strategies.load_user_strategies([f"{source}:lowest_pair"])
    assert layers_to_drop("iterative_lowest_pair", 6, 2) == [0, 1]
    assert strategies.drop_order("iterative_lowest_pair", 6, 2) == [1, 0]  # k=1 gives [1], then 0 joins


def test_drop_order_follows_the_base_strategy():
    assert strategies.drop_order("iterative_top", 12, 4) == [11, 10, 9, 8]
    assert strategies.drop_order("iterative_bottom", 12, 3) == [0, 1, 2]
    assert strategies.drop_order("iterative_symmetric", 12, 4) == [6, 5, 7, 4]
    assert strategies.drop_order("iterative_even_alternate", 12, 3) == [11, 9, 7]
    sim = np.eye(5)
    for layer, score in enumerate([0.5, 0.9, 0.2, 0.8]):
        sim[layer, layer + 1] = sim[layer + 1, layer] = score
    assert strategies.drop_order("iterative_contribution", 4, 3, {"similarity": sim}) == [1, 3, 0]


def test_drop_order_of_a_strategy_whose_choices_are_not_nested(isolated_registry):
    @strategies.register("jumpy")
    def jumpy(num_layers, k, context):
        return [5, 2, 3][:k] if k == 3 else list(range(k))

    assert strategies.drop_order("iterative_jumpy", 6, 3) == [5, 2, 3]  # its own listing order


# ---------------------------------------------------------------- one resolution path (issue 23 item 5)


def test_names_a_config_key_implies_are_families_resolved_without_registering():
    assert strategies.family_of("layer3") == ("layer", "3") and strategies.family_of("drop_1_4") == ("drop_", "1_4")
    assert strategies.family_of("cls_above_950") == ("cls_above_", "950")
    assert "cls_above_950" not in strategies.available() and strategies.is_known("cls_above_950")
    assert strategies.decides_k("cls_above_950") and strategies.needs_data("cls_above_950")
    assert layers_to_drop("layer3", 6, 1) == [2] and layers_to_drop("drop_1_4", 6, 2) == [0, 3]
    for bad, pattern in [("layer0", "layer<i>"), ("drop_4_1", "drop_<i>_<j>"), ("cls_above_95", "cls_above_<thousandths>")]:
        with pytest.raises(ValueError, match=f"unknown strategy '{bad}': allowed {pattern}"):
            strategies.validate(bad)


def test_only_the_families_a_grid_may_list_are_offered_for_strategies():
    assert strategies.families() == ["iterative_<base>", "task_specific_<base>"]
    assert [p.split(" ")[0] for p in strategies.families(listed=False)] == ["cls_above_<thousandths>", "drop_<i>_<j>...", "layer<i>"]
    assert "layer<i>" not in strategies.allowed() and "cls_above_" not in strategies.allowed()
    with pytest.raises(ValueError, match="unknown strategy 'middle'; available: .*top.*or cls_above_.*or drop_.*or layer<i>"):
        strategies.validate("middle")


def test_base_of_strips_a_training_family_only():
    assert strategies.base_of("task_specific_top") == "top" and strategies.base_of("iterative_layer2") == "layer2"
    assert strategies.base_of("layer2") == "layer2" and strategies.base_of("cls_above_950") == "cls_above_950"


def test_load_from_config_registers_the_custom_strategies(tmp_path, isolated_registry):
    source = tmp_path / "mine.py"
    source.write_text("def lowest(num_layers, k, context):\n    return list(range(k))\n")
    assert not strategies.is_known("lowest")
    strategies.load_from_config({"custom_strategies": [f"{source}:lowest"], "cls_thresholds": [0.9]})
    assert layers_to_drop("lowest", 6, 2) == [0, 1]
    strategies.load_from_config({})  # no custom_strategies key: nothing to register
