import copy

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from dropbench.prune import architectures, layer_drop
from dropbench.prune.layer_scores import hidden_similarity

LAYERS = 5
DROP = [0, 3]  # dropping layer 0 forces every kept layer to be re-indexed
KEEP = [1, 2, 4]

_COMMON = dict(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)
TINY = {
    "bert": dict(num_hidden_layers=LAYERS, **_COMMON),
    "roberta": dict(num_hidden_layers=LAYERS, pad_token_id=1, **_COMMON),
    "electra": dict(num_hidden_layers=LAYERS, embedding_size=16, **_COMMON),
    "mpnet": dict(num_hidden_layers=LAYERS, pad_token_id=1, **_COMMON),
    # DeBERTa-v3 settings (relative attention with shared keys and log buckets).
    "deberta-v2": dict(
        num_hidden_layers=LAYERS,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=16,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        **_COMMON,
    ),
    "distilbert": dict(vocab_size=100, dim=32, n_heads=2, hidden_dim=37, n_layers=LAYERS, max_position_embeddings=64),
    "xlnet": dict(vocab_size=100, d_model=32, n_head=2, d_inner=37, n_layer=LAYERS),
    "albert": dict(num_hidden_layers=LAYERS, embedding_size=16, num_hidden_groups=1, inner_group_num=1, **_COMMON),
}
LAYERED = [t for t in TINY if t != "albert"]


def tiny_model(model_type, auto=AutoModelForSequenceClassification, **overrides):
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**TINY[model_type], **overrides})
    return auto.from_config(config).eval()


def example_inputs():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 100, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def param_count(module):
    return sum(p.numel() for p in module.parameters())


def layer_list(model):
    return model.base_model.get_submodule(layer_drop.adapter_for(model).layers)


def assert_saves_and_reloads(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / "pytorch_model.bin").exists()
    reloaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reloaded.eval()
    assert layer_drop.num_layers(reloaded.config) == layer_drop.num_layers(model.config)
    expected = model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**example_inputs()).logits, model(**example_inputs()).logits)


def test_supported_types():
    assert architectures.supported_model_types() == sorted(TINY)


@pytest.mark.parametrize("model_type", LAYERED)
def test_drop_layers(model_type, tmp_path):
    model = tiny_model(model_type)
    originals = [copy.deepcopy(layer.state_dict()) for layer in layer_list(model)]
    dropped_params = sum(param_count(layer_list(model)[i]) for i in DROP)
    params_before = param_count(model)

    assert layer_drop.drop_layers(model, DROP) is model

    layers = layer_list(model)
    assert len(layers) == len(KEEP)
    assert layer_drop.num_layers(model.config) == len(KEEP)
    assert param_count(model) == params_before - dropped_params
    for new_index, old_index in enumerate(KEEP):
        kept = layers[new_index].state_dict()
        assert kept.keys() == originals[old_index].keys()
        assert all(torch.equal(kept[name], originals[old_index][name]) for name in kept)
        for module in layers[new_index].modules():
            assert getattr(module, "layer_idx", new_index) == new_index
    with torch.no_grad():
        outputs = model(**example_inputs(), output_hidden_states=True)
    assert len(outputs.hidden_states) == len(KEEP) + 1
    assert_saves_and_reloads(model, tmp_path)


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_hidden_similarity_every_architecture(model_type):
    model = tiny_model(model_type, auto=AutoModel)
    # token_type_ids must be skipped for models without them (DistilBERT)
    with_types = {**example_inputs(), "token_type_ids": torch.zeros(2, 9, dtype=torch.long)}
    sim = hidden_similarity(model, [example_inputs(), with_types])
    assert sim.shape == (LAYERS + 1, LAYERS + 1)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    np.testing.assert_allclose(sim, sim.T, atol=1e-9)
    assert not model.training


def test_base_model_drop_and_layer_types():
    model = tiny_model("bert", auto=AutoModel)
    model.config.layer_types = [f"kind{i}" for i in range(LAYERS)]
    layer_drop.drop_layers(model, DROP)
    assert len(model.encoder.layer) == len(KEEP)
    assert model.config.num_hidden_layers == len(KEEP)
    assert model.config.layer_types == [f"kind{i}" for i in KEEP]


def test_albert_single_group_drops_applications_not_parameters(tmp_path):
    model = tiny_model("albert")
    params_before = param_count(model)
    originals = copy.deepcopy(model.state_dict())
    layer_drop.drop_layers(model, DROP)
    assert model.config.num_hidden_layers == len(KEEP)
    # One shared group: fewer applications of it, identical parameters.
    assert param_count(model) == params_before
    assert all(torch.equal(tensor, originals[name]) for name, tensor in model.state_dict().items())
    with torch.no_grad():
        assert len(model(**example_inputs(), output_hidden_states=True).hidden_states) == len(KEEP) + 1
    assert_saves_and_reloads(model, tmp_path)


def test_albert_groups_removed_when_all_their_applications_are_dropped(tmp_path):
    model = tiny_model("albert", num_hidden_layers=4, num_hidden_groups=2)  # layers 0,1 -> group 0; 2,3 -> group 1
    groups = model.albert.encoder.albert_layer_groups
    params_before = param_count(model)
    group0_params = param_count(groups[0])
    group1 = copy.deepcopy(groups[1].state_dict())
    layer_drop.drop_layers(model, [0, 1])
    assert (model.config.num_hidden_layers, model.config.num_hidden_groups) == (2, 1)
    assert param_count(model) == params_before - group0_params
    kept = model.albert.encoder.albert_layer_groups[0].state_dict()
    assert all(torch.equal(kept[name], tensor) for name, tensor in group1.items())
    assert_saves_and_reloads(model, tmp_path)

    # one application of each group survives: still expressible, nothing removed
    model = tiny_model("albert", num_hidden_layers=4, num_hidden_groups=2)
    params_before = param_count(model)
    layer_drop.drop_layers(model, [0, 2])
    assert (model.config.num_hidden_layers, model.config.num_hidden_groups) == (2, 2)
    assert param_count(model) == params_before


def test_albert_uneven_group_drop_rejected():
    model = tiny_model("albert", num_hidden_layers=4, num_hidden_groups=2)
    with pytest.raises(ValueError, match="num_hidden_groups=2.*cannot express"):
        layer_drop.drop_layers(model, [0])
    assert model.config.num_hidden_layers == 4  # untouched on error


def test_unsupported_architecture_lists_supported():
    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=32, n_head=2, vocab_size=100)
    message = "model_type='gpt2'; supported: albert, bert, deberta-v2, distilbert, electra, mpnet, roberta, xlnet"
    with pytest.raises(ValueError, match=message):
        layer_drop.adapter_for(config)
    with pytest.raises(ValueError, match="gpt2"):
        layer_drop.num_layers(config)


@pytest.mark.parametrize(("drop", "match"), [([5], r"0\.\.4"), ([-1], r"0\.\.4"), ([1, 1], "duplicates"),
                                             ([0, 1, 2, 3, 4], "cannot drop all 5"), (["1"], "integers")])
def test_bad_drop_lists(drop, match):
    with pytest.raises(ValueError, match=match):
        layer_drop.drop_layers(tiny_model("bert", auto=AutoModel), drop)
