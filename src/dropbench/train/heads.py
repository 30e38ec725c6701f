"""The classifier head a cell is fine-tuned with: a model setting (``models.<name>.head``).

``native``: the architecture's own sequence-classification head (``AutoModelForSequenceClassification``:
BERT's [CLS] + pooler, RoBERTa's <s> head, XLNet's summary of the last token), the paper's protocol and
the right one for raw MLM checkpoints.

``mean_pooling``: the mean of the last kept layer's token vectors over the attention mask, then one linear
layer (no pooler, no extra dropout). The natural head for sentence-embedding checkpoints such as
all-MiniLM-L6-v2 and all-mpnet-base-v2, which were trained through mean pooling: their first token is
not a usable summary once top layers are gone. The mean is over the mask, so it is the same on either
padding side (XLNet pads on the left).

A ``mean_pooling`` cell's folder is the encoder as saved by ``save_pretrained`` (loads with a plain
``AutoModel.from_pretrained``, no custom code) plus ``classifier_head.safetensors`` (two tensors,
``weight`` [num_labels, hidden] and ``bias`` [num_labels]) and ``classifier_head.json``
(``{"head": "mean_pooling", "num_labels": ..., "problem_type": ...}``). ``load_classifier`` loads
either kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

NATIVE, MEAN_POOLING = "native", "mean_pooling"
HEADS = (NATIVE, MEAN_POOLING)
HEAD_WEIGHTS = "classifier_head.safetensors"
HEAD_INFO = "classifier_head.json"


def check_head(head) -> str:
    if head not in HEADS:
        raise ValueError(f"classifier head {head!r} is unknown; allowed: {', '.join(HEADS)}")
    return head


class MeanPoolingClassifier(nn.Module):
    """An encoder (``AutoModel``) whose masked mean of last-layer token vectors feeds a linear layer.

    Exposes ``config`` and ``base_model`` like a transformers task model, so ``dropbench.prune.layer_drop``
    prunes it and the training loop treats it as any other model."""

    def __init__(self, encoder, num_labels: int, problem_type: str):
        super().__init__()
        self.encoder = encoder
        self.num_labels = num_labels
        self.problem_type = problem_type
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        std = getattr(encoder.config, "initializer_range", 0.02)
        nn.init.normal_(self.classifier.weight, mean=0.0, std=std)  # as transformers initialises its heads
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):
        return self.encoder.config

    @property
    def base_model(self):
        return self.encoder

    def forward(self, input_ids, attention_mask, labels=None, **encoder_inputs):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            if self.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory) -> None:
        directory = Path(directory)
        self.encoder.save_pretrained(directory)
        save_file({name: tensor.detach().contiguous().cpu() for name, tensor in self.classifier.state_dict().items()},
                  str(directory / HEAD_WEIGHTS))
        info = {"head": MEAN_POOLING, "num_labels": self.num_labels, "problem_type": self.problem_type}
        (directory / HEAD_INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory, num_labels: int, problem_type: str) -> "MeanPoolingClassifier":
        """The encoder in ``directory``; the head saved beside it if there is one, else a new one."""
        directory = Path(directory)
        encoder = AutoModel.from_pretrained(directory, use_safetensors=True, trust_remote_code=False)
        model = cls(encoder, num_labels, problem_type)
        if (directory / HEAD_WEIGHTS).exists():
            info = json.loads((directory / HEAD_INFO).read_text())
            if (info["num_labels"], info["problem_type"]) != (num_labels, problem_type):
                raise ValueError(f"{directory / HEAD_INFO}: a head for {info['num_labels']} labels "
                                 f"({info['problem_type']}), asked for {num_labels} ({problem_type})")
            model.classifier.load_state_dict(load_file(str(directory / HEAD_WEIGHTS)))
        return model


def build(model_dir, head: str, num_labels: int, problem_type: str):
    """A model to fine-tune: the encoder in ``model_dir`` with ``head`` (kept from ``model_dir`` when
    it holds one, e.g. a first training stage's output)."""
    if check_head(head) == MEAN_POOLING:
        return MeanPoolingClassifier.from_pretrained(model_dir, num_labels, problem_type)
    return AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=num_labels, problem_type=problem_type, use_safetensors=True, trust_remote_code=False)


def saved_head(finetuned_dir) -> str:
    """Which head a fine-tuned folder holds."""
    return _head_info(finetuned_dir)["head"]


def _head_info(finetuned_dir) -> dict:
    """``classifier_head.json`` of a mean-pooling folder; a native folder has none."""
    path = Path(finetuned_dir) / HEAD_INFO
    return json.loads(path.read_text()) if path.exists() else {"head": NATIVE}


def load_classifier(finetuned_dir):
    """A fine-tuned cell, whichever head it was trained with (no custom code for the encoder)."""
    finetuned_dir = Path(finetuned_dir)
    info = _head_info(finetuned_dir)
    if info["head"] == MEAN_POOLING:
        return MeanPoolingClassifier.from_pretrained(finetuned_dir, info["num_labels"], info["problem_type"])
    return AutoModelForSequenceClassification.from_pretrained(finetuned_dir, use_safetensors=True,
                                                              trust_remote_code=False)
