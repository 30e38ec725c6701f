"""The ``export_cell`` step (config ``export``): one fine-tuned cell made into what a user deploys.

``exports/<model>/<variant>/<task>/`` gets the cell's publishable Hugging Face folder (``hf/``: weights,
tokenizer, model card; rule ``model_card``), ``model.onnx`` (fp32, dynamic batch and sequence axes) and
``model.int8.onnx`` (ONNX Runtime's dynamic int8 quantization of its weights), and ``export.json``: the
dev scores of each runtime with the task's official metrics (torch's from the cell's ``metrics.json``, the
two ONNX models' measured here on the same dev rows), their largest absolute logit difference from torch,
the share of dev rows where they predict the same class, and the size of each on disk. Their speed is
measured apart (``dropbench.export.export_latency``).

The exporter is torch's TorchScript one (``torch.onnx.export(dynamo=False)``): on the default model the
dynamo exporter's graph defeats ONNX Runtime's quantization pre-processing ("Incomplete symbolic shape
inference") and its int8 model ran 1.5x slower than the TorchScript one's (README "Exports").

onnx and onnxruntime are imported inside the functions: a config without ``export`` never imports them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dropbench.data import features, tasks
from dropbench.train import heads
from dropbench.evaluate import metrics
from dropbench.runtime.atomic import atomic_file, write_json
from dropbench.data.batching import sorted_batches
from dropbench.plan.cells import Cell
from dropbench.evaluate.evaluation import predict, task_score

OPSET = 17
# An fp32 ONNX model whose logits differ from torch's by more than this on a dev row is not the same model:
# the job fails (float32 reordering alone stays near 1e-6 on the default model).
MAX_FP32_LOGIT_DIFF = 1e-3
ONNX_FILES = {"onnx_fp32": "model.onnx", "onnx_int8": "model.int8.onnx"}


class LogitsOnly(nn.Module):
    """A classifier whose forward takes the features' tensors by position and returns only the logits:
    what the ONNX graph's inputs and output are."""

    def __init__(self, model, input_names: list[str]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *tensors):
        return self.model(**dict(zip(self.input_names, tensors))).logits


def input_names(split: features.Features) -> list[str]:
    return ["input_ids", "attention_mask", *(["token_type_ids"] if split.token_type_ids is not None else [])]


def padded_example(batch: dict) -> dict:
    """``batch`` with one more, padded position: a graph traced on an example without padding can keep a
    shortcut for an all-ones attention mask and then ignore the mask of every padded batch."""
    out = {name: torch.nn.functional.pad(tensor, (0, 1)) for name, tensor in batch.items()}
    return out


def export_onnx(model, example: dict, path: str | Path) -> None:
    """``model`` (a classifier) as ONNX at ``path``: inputs named as the features' tensors, batch and
    sequence axes dynamic, output ``logits``."""
    names = list(example)
    axes = {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        # the wrapper in eval mode too: the exporter restores the wrapper's mode on the whole tree afterwards
        torch.onnx.export(LogitsOnly(model, names).eval(), tuple(example[name] for name in names), str(path),
                          input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> None:
    """Dynamic quantization: int8 weights of the matrix products, activations quantized on the fly."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice: the pre-processing fails on these graphs
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


def session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session computing in ``threads`` threads (1: in the calling thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(run, split: features.Features, pad_id: int, batch_size: int) -> np.ndarray:
    """The logits of every row of ``split``, batched as evaluate batches them (``sorted_batches``)."""
    out = None
    for indices in sorted_batches(split.lengths(), batch_size):
        batch = {name: tensor.numpy() for name, tensor in split.batch(indices, pad_id).items() if name != "labels"}
        logits = run.run(["logits"], batch)[0]
        if out is None:
            out = np.zeros((len(split), logits.shape[1]), dtype=np.float32)
        out[indices] = logits
    return out


def outputs_of(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    return logits[:, 0] if is_regression else logits.argmax(-1)


def compare(task: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> dict:
    """One runtime's dev metrics on a split, its largest absolute logit difference from ``reference`` (torch)
    and, for classification, the share of rows where both predict the same class."""
    regression = tasks.get_task(task).is_regression
    predicted = outputs_of(logits, regression)
    return {
        "metrics": {name: float(value) for name, value in metrics.compute(task, predicted, labels).items()},
        "max_abs_logit_diff": float(np.abs(logits - reference).max()),
        "prediction_agreement": None if regression else float((predicted == outputs_of(reference, False)).mean()),
    }


def link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def size_on_disk(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def weight_files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def export_cell(publish_dir, metrics_json, features_dir, out: dict, eval_batch_size: int, params: dict) -> dict:
    """Write the export of one cell: ``out`` maps ``hf``, ``onnx``, ``int8`` and ``record`` to paths.
    ``params``: the job's (cell, seed, export version)."""
    record = json.loads(Path(metrics_json).read_text())
    cell, recorded = Cell.of(params["cell"]), Cell.of(record)
    if recorded != cell:
        raise ValueError(f"{metrics_json} is the record of {recorded.name}, not of {cell.name}")
    task = cell.task
    spec = tasks.get_task(task)
    if not weight_files(publish_dir):
        raise ValueError(f"{publish_dir} holds no weights (the cell's were deleted after it was evaluated): delete "
                         f"{metrics_json} and run snakemake to train the cell again before exporting it")
    hf_dir = Path(out["hf"])
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    # hard links where possible (the weights are not copied twice); not Snakemake's hidden timestamp file
    shutil.copytree(publish_dir, hf_dir, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".*"))
    torch.set_num_threads(1)
    model = heads.load_classifier(hf_dir).eval()
    pad_id = model.config.pad_token_id or 0
    splits = {name: features.load(features.split_path(features_dir, name)) for name in spec.dev_splits}
    first = next(iter(splits.values()))
    example = padded_example({name: tensor for name, tensor in first.batch([0, 1], pad_id).items()
                              if name in input_names(first)})
    with atomic_file(out["onnx"]) as tmp:
        export_onnx(model, example, tmp)
    with atomic_file(out["int8"]) as tmp:
        quantize_int8(out["onnx"], tmp)
    runtimes = {"torch": {"metrics": record["metrics"], "task_score": record["task_score"],
                          "bytes": size_on_disk(weight_files(hf_dir))}}
    # torch's logits once per dev split: the reference both ONNX models are compared against
    references = {split_name: predict(model, split, torch.device("cpu"), eval_batch_size, spec.is_regression,
                                      f"torch {task}/{split_name}", return_logits=True)[1]
                  for split_name, split in splits.items()}
    for runtime, path in (("onnx_fp32", out["onnx"]), ("onnx_int8", out["int8"])):
        run = session(path)
        scores, diffs, agreements = {}, [], []
        for split_name, split in splits.items():
            compared = compare(task, references[split_name], onnx_logits(run, split, pad_id, eval_batch_size),
                               split.labels)
            prefix = "" if len(splits) == 1 else f"{split_name}_"
            scores.update({f"{prefix}{name}": value for name, value in compared["metrics"].items()})
            diffs.append(compared["max_abs_logit_diff"])
            agreements.append(compared["prediction_agreement"])
        runtimes[runtime] = {
            "metrics": scores,
            "task_score": task_score(task, scores),
            "bytes": size_on_disk([path]),
            "max_abs_logit_diff": max(diffs),
            "prediction_agreement": None if None in agreements else min(agreements),
        }
    fp32_diff = runtimes["onnx_fp32"]["max_abs_logit_diff"]
    if not fp32_diff <= MAX_FP32_LOGIT_DIFF:
        raise ValueError(f"{out['onnx']}: its logits differ from torch's by {fp32_diff:.3g} on the dev rows "
                         f"(allowed: at most {MAX_FP32_LOGIT_DIFF}); the export is not the fine-tuned model")
    import onnx
    import onnxruntime

    result = {
        **params,
        "head": heads.saved_head(hf_dir),
        "dev_rows": {name: len(split) for name, split in splits.items()},
        "primary_metric": spec.primary_metric,
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "opset": OPSET, "dynamo": False, "quantization": "dynamic, int8 weights (QInt8)"},
        "runtimes": runtimes,
    }
    write_json(out["record"], result)
    return result


def input_names_of(run) -> list[str]:
    """The inputs an ONNX Runtime session takes (token types only for models that have them)."""
    return [node.name for node in run.get_inputs()]
