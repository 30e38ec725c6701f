"""A Hugging Face model card for every fine-tuned cell, in a folder that can be published as it is.

``write_publish_folder`` (rule ``model_card``) fills ``results/cells/<model>/<variant>/<task>/seed<seed>/publish/``
with the fine-tuned files (``config.json``, ``model.safetensors`` and, for a ``mean_pooling`` cell,
``classifier_head.safetensors`` + ``classifier_head.json``), the tokenizer files of the encoder the cell
started from, and ``README.md``: the card. The model files are hard links to the cell's ``finetuned/``
files (no extra disk), or copies where a hard link is impossible (another filesystem); the card lists
which. The folder loads with ``from_pretrained`` and is what ``huggingface_hub.upload_folder`` publishes.

The card's YAML metadata follows the Hugging Face model-card format (``base_model``, ``license`` where
known, ``datasets: [glue]``, ``tags``, ``pipeline_tag`` and a ``model-index`` whose metrics are exactly the
defined metrics of the cell's ``metrics.json``, each named as there); the body says which layers were
dropped and kept (1-based), the strategy and k, the training settings and rows, the seed, the variant's
mean and 95% interval over seeds from ``results/stats.csv``, the stage versions, the commit and the base
model's note, and how to load the head.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import yaml

from dropbench.data import tasks
from dropbench.plan.cells import Cell
from dropbench.runtime.provenance import workflow_commit

# Part of the rule's params: bump it when the card's text or layout changes, so that cards are rewritten.
CARD_VERSION = 1
CARD = "README.md"
# What upload_folder must leave out: the empty file Snakemake marks its directory outputs with.
UPLOAD_IGNORE = [".snakemake_timestamp"]
# Files a tokenizer may be saved in (transformers' save_pretrained names); those present are published.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model")
# The Hugging Face metric ids (https://huggingface.co/metrics) of our metric names.
HF_METRIC_TYPES = {"accuracy": "accuracy", "f1": "f1", "matthews_correlation": "matthews_correlation",
                   "pearson": "pearsonr", "spearmanr": "spearmanr"}
GLUE_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B", "mnli": "MNLI",
              "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


def base_identity(model_cfg: dict) -> dict:
    """``base_model`` (a Hugging Face hub id) and ``license`` of a model entry where known: the entry's own
    ``base_model``/``license`` keys, else the hub source's ``repo_id``; None where unknown."""
    source = model_cfg["source"]
    base = model_cfg.get("base_model") or (source.get("repo_id") if source["kind"] == "hub" else None)
    return {"base_model": base, "license": model_cfg.get("license")}


def _one_based(layers) -> list[int]:
    return [int(layer) + 1 for layer in layers]


def _split_of(task: str, metric: str) -> tuple[str, str]:
    """(dev split, metric name within it) of a metrics.json key: MNLI's are prefixed with their split."""
    splits = tasks.get_task(task).dev_splits
    if len(splits) == 1:
        return splits[0], metric
    for split in splits:
        if metric.startswith(f"{split}_"):
            return split, metric[len(split) + 1:]
    raise ValueError(f"task {task}: metric {metric!r} names none of the dev splits {splits}")


def model_index(name: str, record: dict) -> list[dict]:
    """The ``model-index`` of a cell: one result per dev split, with every defined metric of ``metrics.json``
    (an undefined one, e.g. the correlation of a constant prediction, has no value to publish)."""
    task = record["task"]
    results: dict[str, list[dict]] = {}
    for metric, value in record["metrics"].items():
        split, base = _split_of(task, metric)
        results.setdefault(split, [])
        if value is not None:
            results[split].append({"type": HF_METRIC_TYPES.get(base, base), "value": value, "name": metric})
    return [{"name": name, "results": [
        {"task": {"type": "text-classification", "name": "Text Classification"},
         "dataset": {"type": "glue", "name": f"GLUE {GLUE_NAMES.get(task, task)}", "config": task, "split": split},
         "metrics": metrics}
        for split, metrics in results.items() if metrics]}]


def seed_intervals(stats_csv: str | Path, cell: Cell) -> list[dict]:
    """The variant's intervals over seeds (rows of results/stats.csv with an empty ``comparison``)."""
    with open(stats_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = (cell.model, cell.strategy, str(cell.k), cell.task)
    return [row for row in rows if (row["model"], row["strategy"], row["k"], row["task"]) == key
            and not row["comparison"]]


def _number(text: str, scale: float = 100.0) -> str:
    return "" if text in ("", None) else f"{float(text) * scale:.1f}"


def metadata(cell: Cell, record: dict, identity: dict) -> dict:
    head = record.get("head", "native")
    meta = {}
    if identity.get("base_model"):
        meta["base_model"] = identity["base_model"]
    if identity.get("license"):
        meta["license"] = identity["license"]
    meta.update({
        "datasets": ["glue"],
        "language": ["en"],
        "library_name": "transformers",
        # a mean_pooling cell's head is a file beside the encoder: as a plain transformers model it is an encoder
        "pipeline_tag": "text-classification" if head == "native" else "feature-extraction",
        "tags": ["dropbench", "layer-dropping", "pruned" if record["dropped_layers"] else "unpruned", "glue",
                 cell.task, f"strategy-{cell.strategy}", f"head-{head}"],
        "model-index": model_index(card_name(cell), record),
    })
    return meta


def card_name(cell: Cell) -> str:
    return f"{cell.model}-{cell.strategy}-k{cell.k}-{cell.task}-seed{cell.seed}"


def _loading(head: str) -> str:
    if head == "native":
        return (
            "The classifier is the architecture's own sequence-classification head, saved with the encoder:\n\n"
            "```python\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
            "model = AutoModelForSequenceClassification.from_pretrained(folder)\n"
            "```\n")
    return (
        "The classifier is **mean pooling** (the mean of the last kept layer's token vectors over the attention "
        "mask) followed by one linear layer, saved beside the encoder in `classifier_head.safetensors` "
        "(`weight` [num_labels, hidden], `bias` [num_labels]) and `classifier_head.json`. "
        "`AutoModelForSequenceClassification.from_pretrained` would **not** load it (it would add a new, "
        "untrained [CLS] head); `AutoModel.from_pretrained` loads the encoder alone. With dropbench installed:\n\n"
        "```python\n"
        "from transformers import AutoTokenizer\n"
        "from dropbench.train.heads import load_classifier\n\n"
        "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        "model = load_classifier(folder)  # encoder + mean pooling + linear layer; model(**batch).logits\n"
        "```\n\n"
        "Without dropbench:\n\n"
        "```python\n"
        "import torch\n"
        "from safetensors.torch import load_file\n"
        "from transformers import AutoModel, AutoTokenizer\n\n"
        "tokenizer = AutoTokenizer.from_pretrained(folder)\n"
        "encoder = AutoModel.from_pretrained(folder)\n"
        "head = load_file(f\"{folder}/classifier_head.safetensors\")\n"
        "batch = tokenizer([\"a sentence\"], return_tensors=\"pt\", padding=True)\n"
        "hidden = encoder(**batch)[0]\n"
        "mask = batch[\"attention_mask\"].unsqueeze(-1).to(hidden.dtype)\n"
        "pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)\n"
        "logits = pooled @ head[\"weight\"].T + head[\"bias\"]\n"
        "```\n")


def body(cell: Cell, record: dict, train_log: dict, intervals: list[dict], note: str, identity: dict,
         commit: str, files: dict[str, str]) -> str:
    task, head = cell.task, record.get("head", "native")
    depth, dropped, kept = record["num_layers_pretrained"], _one_based(record["dropped_layers"]), _one_based(record["kept_layers"])
    base = identity.get("base_model") or f"the model entry `{cell.model}` of the dropbench config"
    lines = [f"# {card_name(cell)}", ""]
    what = (f"`{cell.model}` ({base}) with {len(dropped)} of its {depth} layers dropped by the strategy "
            f"`{cell.strategy}`" if dropped else f"`{cell.model}` ({base}) with all {depth} layers (no layer dropped)")
    lines += [f"{what}, fine-tuned on GLUE {GLUE_NAMES.get(task, task)} with seed {cell.seed} by "
              "dropbench (layer dropping after Sajjad et al., *On the Effect of Dropping Layers "
              "of Pre-trained Transformer Models*). Scores are on the task's official GLUE dev split(s); "
              "the GLUE test labels are not public.", ""]
    if note:
        lines += [f"**Base model:** {note}", ""]
    lines += ["## Layers", "",
              "| | |", "|---|---|",
              f"| strategy | `{cell.strategy}` |",
              f"| k (layers dropped{'; 0 = decided by the threshold' if cell.k == 0 and dropped else ''}) | {cell.k} |",
              f"| layers of the base model | {depth} |",
              f"| dropped (1-based, 1 = lowest) | {', '.join(map(str, dropped)) or 'none'} |",
              f"| kept (1-based, in order) | {', '.join(map(str, kept))} |",
              f"| layers in this model | {record['num_layers']} |",
              f"| parameters | {record['parameters']:,} |"]
    for key in ("threshold", "scored_on"):
        if key in record:
            lines.append(f"| {key.replace('_', ' ')} | {record[key]} |")
    lines += ["", "## Dev scores of this model", "",
              f"Status `{record['status']}`; task score (mean of the official metrics) "
              f"{'n/a' if record['task_score'] is None else format(record['task_score'], '.4f')}.", "",
              "| metric | value | chance level |", "|---|---|---|"]
    for metric, value in record["metrics"].items():
        shown = "undefined (constant predictions)" if value is None else f"{value:.4f}"
        lines.append(f"| {metric} | {shown} | {record['chance'].get(metric, '')} |")
    fit = record.get("fit")
    if fit:
        lines += ["", f"Training fit (last-epoch training loss / the trivial predictor's): {fit.get('train_fit')}"
                  f"{' (underfit: above 0.5)' if fit.get('underfit') else ''}."]
    lines += ["", "## The variant over seeds", "",
              f"`{cell.variant}` on {GLUE_NAMES.get(task, task)}, from `results/stats.csv` of the run "
              "that produced this model: mean and 95% Student-t interval over the seeds x 100 (no interval with one seed).", ""]
    if intervals:
        lines += ["| metric | seeds | mean | 95% interval |", "|---|---|---|---|"]
        for row in intervals:
            interval = f"[{_number(row['ci_low'])}, {_number(row['ci_high'])}]" if row["ci_low"] else "n/a (one seed)"
            lines.append(f"| {row['metric']} | {row['n_seeds']} | {_number(row['mean'])} | {interval} |")
    else:
        lines.append("Not in `results/stats.csv`.")
    config = train_log.get("config", {})
    lines += ["", "## Training", "",
              "| | |", "|---|---|",
              f"| seed | {cell.seed} |",
              f"| classifier head | `{head}` |"]
    for key in ("epochs", "learning_rate", "batch_size", "warmup_ratio", "weight_decay", "max_grad_norm",
                "group_by_length", "min_steps"):
        if key in config:
            lines.append(f"| {key} | {config[key]} |")
    lines += [f"| train rows used | {record['train_rows']:,} of {record['train_rows_available']:,} available |",
              f"| optimisation steps | {train_log.get('steps', '')} |",
              f"| device, precision | {train_log.get('device', record.get('train_device', ''))}, {train_log.get('precision', '')} |",
              f"| train seconds | {record['train_seconds']:.0f} |"]
    if record.get("tuning", {}).get("fixed"):  # config tuning's single candidate: nothing was chosen
        lines.append(f"| learning rate | fixed at {record['tuning']['chosen']} (a single `tuning` candidate, no selection) |")
    elif "tuning" in record:
        lines.append(f"| learning rate chosen on held-out train rows among | {record['tuning'].get('candidates')} |")
    lines += ["", "## How to load", "", "`folder` is this folder (or its hub repository id once uploaded).", "",
              _loading(head), "## Provenance", "",
              f"- dropbench stage versions: {json.dumps(record['stage_versions'], sort_keys=True)}",
              f"- dropbench commit that wrote this card: `{commit}` (the stage versions above identify the code "
              "that trained and evaluated the model)",
              *([f"- evaluated at commit `{record['environment']['commit']}` with "
                 + ", ".join(f"{name} {version}" for name, version in record["environment"]["versions"].items())]
                if "environment" in record else []),
              f"- cell: `{cell.dir}/`",
              f"- license: {identity.get('license') or 'not known to dropbench; see the base model'}", "",
              "Files of this folder (model files are hard links to the cell's `finetuned/` files where possible); "
              "publish them with `huggingface_hub.upload_folder(repo_id=..., folder_path=folder, "
              "ignore_patterns=\".snakemake_timestamp\")` (the empty file Snakemake marks the folder with):", ""]
    lines += [f"- `{name}`: {how}" for name, how in sorted(files.items())]
    return "\n".join(lines) + "\n"


def render(cell: Cell, record: dict, train_log: dict, intervals: list[dict], note: str, identity: dict,
           commit: str, files: dict[str, str]) -> str:
    meta = yaml.safe_dump(metadata(cell, record, identity), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n" + body(cell, record, train_log, intervals, note, identity, commit, files)


def _place(source: Path, target: Path) -> str:
    """A hard link to ``source`` at ``target``, or a copy where linking fails (e.g. another filesystem)."""
    try:
        os.link(source, target)
        return "hard link"
    except OSError:
        shutil.copy2(source, target)
        return "copy"


def write_publish_folder(out_dir, finetuned_dir, tokenizer_dir, metrics_json, train_log_json, stats_csv,
                         params: dict, commit: str | None = None) -> Path:
    """The publishable folder of one cell: fine-tuned files and tokenizer (hard links, else copies) and README.md.
    ``commit``: the workflow commit that writes the card (default: this checkout's). Not a param of the job, so a
    new commit rewrites no card; the stage versions in the card identify the code that made the cell."""
    out_dir, finetuned_dir, tokenizer_dir = Path(out_dir), Path(finetuned_dir), Path(tokenizer_dir)
    cell = Cell.of(params["cell"])
    record = json.loads(Path(metrics_json).read_text())
    # The fine-tuned files, train log and tokenizer are intermediates a user may delete under a valid result
    # (README, "Rerunning only what changed"): a card never makes the workflow re-train; it says what is gone.
    train_log = json.loads(Path(train_log_json).read_text()) if Path(train_log_json).is_file() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    # not the hidden files (Snakemake's .snakemake_timestamp of the directory output: linked, touching this
    # folder's would touch the fine-tune's and make it look newer than its evaluation)
    present = sorted(p for p in finetuned_dir.iterdir() if p.is_file()) if finetuned_dir.is_dir() else []
    if not any(p.name.endswith(".safetensors") for p in present):
        files["(no weights)"] = (f"the cell's finetuned/ weights were deleted after it was evaluated; delete its "
                                 f"metrics.json and run snakemake to train them again ({finetuned_dir})")
    for source in (p for p in present if not p.name.startswith(".")):
        files[source.name] = f"{_place(source, out_dir / source.name)} of finetuned/{source.name}"
    for name in TOKENIZER_FILES:
        source = tokenizer_dir / name
        if source.is_file() and name not in files:
            files[name] = f"{_place(source, out_dir / name)} of the tokenizer"
    files[CARD] = "this card"
    text = render(cell, record, train_log, seed_intervals(stats_csv, cell), params["note"], params["base"],
                  commit or workflow_commit(), files)
    (out_dir / CARD).write_text(text, encoding="utf-8")
    return out_dir / CARD
