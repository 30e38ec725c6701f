"""Tiny stand-ins built inside the tests: a randomly initialised BERT and a few rows per task."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

WORDS = (
    "the a an movie film good bad great awful fine plot actor story it was is not very really quite "
    "man woman dog cat runs says said likes hates company shares price market rose fell percent year "
    "new old big small one two three four five of to and in on for with that this by as at from"
).split()


def build_tiny_bert(out_dir: Path, layers: int = 4) -> Path:
    """A 4-layer BERT with hidden size 32 and a word-level vocab, saved as safetensors."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 ignores vocab_file in the constructor; from_pretrained reads vocab.txt.
    BertTokenizerFast.from_pretrained(out_dir).save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=160,
    )
    import torch

    torch.manual_seed(0)
    BertForMaskedLM(config).bert.save_pretrained(out_dir)
    return out_dir


def write_tiny_tasks(root: Path, rows: int = 32) -> dict[str, dict]:
    """The first ``rows`` train and dev rows of shipped GLUE tasks, in GLUE TSV layout."""
    tasks = {"sst2": "SST-2", "stsb": "STS-B"}
    out = {}
    for task, folder in tasks.items():
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev"):
            source = next((REPO / "resources" / "glue" / folder).glob(f"{split}.tsv*"))
            lines = _read_lines(source)
            (target / f"{split}.tsv").write_text("".join(lines[: rows + 1]))
        out[task] = {"source": {"kind": "local", "path": str(target)}}
    return out


def _read_lines(path: Path) -> list[str]:
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
            return handle.readlines()
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def tiny_config(workdir: Path, strategies=("top", "bottom"), k=(1, 2), layers: int = 4) -> dict:
    model_dir = build_tiny_bert(workdir / "tiny_model", layers=layers)
    return {
        "models": {"tiny": {"source": {"kind": "local", "path": str(model_dir)}, "num_layers": layers}},
        "strategies": list(strategies),
        "k": list(k),
        "tasks": write_tiny_tasks(workdir / "glue"),
        "seeds": [1],
        "training": {"epochs": 1, "batch_size": 8, "max_length": 32, "checkpoint_minutes": 0.001},
        # agree 1: two timed passes; three passes of a ~1 ms model rarely agree within 2%, so each latency job
        # timed passes for its whole max_seconds
        "evaluation": {"batch_size": 16, "latency": {"batch_size": 4, "seq_len": 16, "warmup": 1, "repeats": 2, "agree": 1, "max_seconds": 1}},
        "resources": {"finetune": {"threads": 1}},
    }


def changed(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted key ``path`` set to ``value``."""
    import copy

    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return config


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build_tiny_xlnet(out_dir: Path, layers: int = 2) -> Path:
    """A 2-layer XLNet (d_model 32) with a word-level tokenizer that, like XLNet's own, pads on the left
    and ends each input with ``<sep> <cls>`` (the head reads the last position)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, XLNetConfig, XLNetModel

    out_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<pad>", "<unk>", "<sep>", "<cls>"]
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A:0 <sep>:0 <cls>:2", pair="$A:0 <sep>:0 $B:1 <sep>:1 <cls>:2",
        special_tokens=[("<sep>", vocab["<sep>"]), ("<cls>", vocab["<cls>"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", sep_token="<sep>", cls_token="<cls>",
        padding_side="left",
    )
    tokenizer.save_pretrained(out_dir)
    # initializer_range 0.2 (not 0.02): predictions that differ between rows, so a metric on them is not noise
    config = XLNetConfig(vocab_size=len(vocab), d_model=32, n_layer=layers, n_head=2, d_inner=64, pad_token_id=0,
                         initializer_range=0.2)
    import torch

    torch.manual_seed(0)
    XLNetModel(config).save_pretrained(out_dir)
    return out_dir


def tiny_train_inputs(root: Path) -> tuple[Path, Path]:
    """A tiny BERT (dropout on, so the RNG matters) and 64 tokenized sst2 rows: (model dir, features dir)."""
    from dropbench.data.prepare import prepare_task

    model_dir = build_tiny_bert(root / "model")
    source = write_tiny_tasks(root / "glue", rows=64)["sst2"]["source"]
    prepare_task(model_dir, "sst2", source, root / "features", max_length=32)
    return model_dir, root / "features"
