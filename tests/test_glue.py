import csv
import dataclasses
import gzip
import hashlib
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # test this checkout's code, installed or not

from dropbench.data import glue, tasks  # noqa: E402
from dropbench.data.glue import GlueDataError, load_split  # noqa: E402

RESOURCES = ROOT / "resources" / "glue"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

SHIPPED = {  # task: (train rows, official dev rows, label values)
    "sst2": (67349, 872, {0, 1}),
    "mrpc": (3668, 408, {0, 1}),
    "stsb": (5749, 1500, None),
    "cola": (8551, 1043, {0, 1}),
    "rte": (2490, 277, {0, 1}),
}


def local(path) -> dict:
    return {"kind": "local", "path": str(path)}


def write_rte(directory: Path, train_rows: list[str], header: str = "index\tsentence1\tsentence2\tlabel") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "train.tsv").write_text("\n".join([header, *train_rows]) + "\n", encoding="utf-8")
    return directory


# ------------------------------------------------------------ registry


def test_registry_covers_glue_with_official_metrics():
    assert set(tasks.TASKS) >= {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
    expected = {
        "cola": ("matthews_correlation",), "sst2": ("accuracy",), "qnli": ("accuracy",),
        "rte": ("accuracy",), "wnli": ("accuracy",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
        "stsb": ("pearson", "spearmanr"), "mnli": ("accuracy",),
    }
    for name, metrics in expected.items():
        assert tasks.TASKS[name].metrics == metrics
    assert tasks.TASKS["mnli"].dev_splits == ("validation_matched", "validation_mismatched")
    assert tasks.TASKS["mnli"].labels == ("entailment", "neutral", "contradiction")
    assert tasks.TASKS["rte"].labels == ("entailment", "not_entailment")
    stsb = tasks.TASKS["stsb"]
    assert (stsb.labels, stsb.num_labels, stsb.is_regression) == (None, 1, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stsb.name = "x"


def test_unknown_task_and_split_are_rejected():
    with pytest.raises(ValueError, match="unknown task 'qnli2'.*known tasks"):
        tasks.get_task("qnli2")
    with pytest.raises(ValueError, match="unknown split 'test'.*train, validation"):
        load_split("rte", local(FIXTURES / "rte_tsv"), "test")


# ------------------------------------------------------------ shipped data


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_shipped_task_loads_with_official_counts(task):
    spec = tasks.TASKS[task]
    n_train, n_dev, label_values = SHIPPED[task]
    for split, expected in (("train", n_train), ("validation", n_dev)):
        df = load_split(task, local(RESOURCES / spec.glue_dir), split)
        assert list(df.columns) == ["text_a", "text_b", "label"]
        assert len(df) == expected
        assert df["text_b"].isna().all() != spec.is_pair
        if label_values is None:
            assert df["label"].dtype == "float64" and df["label"].between(0, 5).all()
        else:
            assert df["label"].dtype == "int64" and set(df["label"]) == label_values


def test_shipped_files_match_manifest():
    with open(RESOURCES / "MANIFEST.tsv", encoding="utf-8") as f:
        entries = list(csv.DictReader(f, delimiter="\t"))
    assert len(entries) == 10
    for entry in entries:
        content = gzip.decompress((RESOURCES / entry["file"]).read_bytes())
        assert hashlib.sha256(content).hexdigest() == entry["content_sha256"], entry["file"]
        if entry["kept"] == "all":
            assert entry["content_sha256"] == entry["source_sha256"]


def test_shipped_sst2_train_is_complete_and_subsamples_as_before():
    df = load_split("sst2", local(RESOURCES / "SST-2"), "train")
    assert len(df) == 67349 and df["label"].value_counts().to_dict() == {1: 37569, 0: 29780}
    # subsample(n=8000, seed=0) gives the rows the repository shipped before the full set.
    kept = glue.subsample(df, 8000, 0)
    assert kept["text_a"].iloc[0] == "the greatest musicians "
    assert kept["label"].tolist()[:3] == [1, 1, 0]


def test_mrpc_bom_is_stripped():
    df = load_split("mrpc", local(RESOURCES / "MRPC"), "validation")
    assert df["label"].iloc[0] == 1 and df["text_a"].iloc[0].startswith("He said the foodservice")


def test_quotes_are_literal(tmp_path):
    write_rte(tmp_path, ['0\t"Hi," she said.\t"Hi\tentailment'])
    df = load_split("rte", local(tmp_path), "train")
    assert (df["text_a"].iloc[0], df["text_b"].iloc[0]) == ('"Hi," she said.', '"Hi')


# ------------------------------------------------------------ TSV vs parquet


@pytest.mark.parametrize("split", ["train", "validation"])
def test_tsv_and_parquet_readers_agree_on_rte(split):
    from_tsv = load_split("rte", local(FIXTURES / "rte_tsv"), split)
    from_parquet = load_split("rte", local(FIXTURES / "rte_parquet"), split)
    pd.testing.assert_frame_equal(from_tsv, from_parquet)
    assert len(from_tsv) == {"train": 12, "validation": 6}[split]


def test_gzip_and_plain_tsv_agree(tmp_path):
    with open(FIXTURES / "rte_tsv" / "train.tsv", "rb") as src, gzip.open(tmp_path / "train.tsv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    pd.testing.assert_frame_equal(load_split("rte", local(tmp_path), "train"),
                                  load_split("rte", local(FIXTURES / "rte_tsv"), "train"))


# ------------------------------------------------------------ errors name file and line


def test_malformed_row_names_file_and_line(tmp_path):
    write_rte(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb"])
    with pytest.raises(GlueDataError, match=r"train\.tsv:3: expected 4 tab-separated fields, found 3"):
        load_split("rte", local(tmp_path), "train")


def test_a_non_utf8_byte_names_file_and_line(tmp_path):
    write_rte(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\tentailment", "2\tcaf\xe9\tb\tentailment"])
    path = tmp_path / "train.tsv"
    path.write_bytes(path.read_bytes().replace("caf\xe9".encode(), b"caf\xe9"))  # latin-1, not UTF-8
    with pytest.raises(GlueDataError, match=r"train\.tsv:4: not UTF-8 text \(invalid continuation byte: b'\\xe9'\)"):
        load_split("rte", local(tmp_path), "train")


def test_bad_label_names_file_line_and_allowed_values(tmp_path):
    write_rte(tmp_path, ["0\ta\tb\tentailment", "1\ta\tb\tneutral"])
    with pytest.raises(GlueDataError, match=r"train\.tsv:3: label 'neutral' not allowed.*not_entailment"):
        load_split("rte", local(tmp_path), "train")


def test_stsb_score_out_of_range(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    write_rte(tmp_path, ["0\tg\tf\ty\t0\ts\ts\ta\tb\t5.5"], header=header)
    with pytest.raises(GlueDataError, match=r"train\.tsv:2: label 5\.5 outside \[0\.0, 5\.0\]"):
        load_split("stsb", local(tmp_path), "train")


def test_missing_column_names_file_and_header_line(tmp_path):
    write_rte(tmp_path, ["0\ta\tb\tentailment"], header="index\tsentence1\tsentence_2\tlabel")
    with pytest.raises(GlueDataError, match=r"train\.tsv:1: header lacks column\(s\) \['sentence2'\]"):
        load_split("rte", local(tmp_path), "train")


def test_missing_parquet_column(tmp_path):
    pd.DataFrame({"sentence1": ["a"], "label": [0]}).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(GlueDataError, match=r"train\.parquet: lacks column\(s\) \['sentence2'\]"):
        load_split("rte", local(tmp_path), "train")


def test_parquet_bad_label_names_row(tmp_path):
    pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, -1]}).to_parquet(
        tmp_path / "validation.parquet")
    with pytest.raises(GlueDataError, match=r"validation\.parquet: row 1 \(0-based\): label -1 not allowed"):
        load_split("rte", local(tmp_path), "validation")


def test_empty_split_and_empty_text(tmp_path):
    write_rte(tmp_path / "empty", [])
    with pytest.raises(GlueDataError, match=r"train\.tsv: split has no examples"):
        load_split("rte", local(tmp_path / "empty"), "train")
    write_rte(tmp_path / "blank", ["0\ta\tb\tentailment", "1\t \tb\tentailment"])
    with pytest.raises(GlueDataError, match=r"train\.tsv:3: empty or missing text in column 'sentence1'"):
        load_split("rte", local(tmp_path / "blank"), "train")


def test_missing_train_split_is_reported_not_substituted(tmp_path):
    (tmp_path / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\tq?\ts.\tentailment\n")
    with pytest.raises(GlueDataError, match=r"task qnli: split 'train' missing in .*train\.tsv, train\.tsv\.gz, "
                                            r"train\.parquet; splits present: validation \(dev\.tsv\)"):
        load_split("qnli", local(tmp_path), "train")


def test_two_files_for_one_split_is_ambiguous(tmp_path):
    shutil.copy(FIXTURES / "rte_tsv" / "dev.tsv", tmp_path / "dev.tsv")
    shutil.copy(FIXTURES / "rte_parquet" / "validation.parquet", tmp_path / "validation.parquet")
    with pytest.raises(GlueDataError, match="ambiguous.*dev.tsv, validation.parquet"):
        load_split("rte", local(tmp_path), "validation")


def test_bad_source_description():
    with pytest.raises(ValueError, match="'kind' must be one of"):
        load_split("rte", {"kind": "s3", "path": "x"}, "train")
    with pytest.raises(ValueError, match=r"missing \['revision'\]"):
        load_split("rte", {"kind": "hub", "dataset": "nyu-mll/glue"}, "train")


# ------------------------------------------------------------ hub source


def test_hub_source_calls_load_dataset_pinned(monkeypatch):
    calls = []
    table = pd.read_parquet(FIXTURES / "rte_parquet" / "validation.parquet")

    def fake_load_dataset(dataset, config, split, revision):
        calls.append((dataset, config, split, revision))
        return types.SimpleNamespace(to_pandas=lambda: table)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    source = {"kind": "hub", "dataset": "nyu-mll/glue", "revision": "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"}
    df = load_split("rte", source, "validation")
    assert calls == [("nyu-mll/glue", "rte", "validation", source["revision"])]
    pd.testing.assert_frame_equal(df, load_split("rte", local(FIXTURES / "rte_tsv"), "validation"))


# ------------------------------------------------------------ subsample


def test_subsample_is_deterministic_ordered_and_nested():
    df = pd.DataFrame({"text_a": [f"s{i}" for i in range(200)], "text_b": None, "label": 0})
    a, b = glue.subsample(df, 50, seed=3), glue.subsample(df, 50, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 50 and list(a.index) == sorted(a.index)
    assert not glue.subsample(df, 50, seed=4).index.equals(a.index)
    assert set(glue.subsample(df, 20, seed=3).index) <= set(a.index)
    assert glue.subsample(df, None, seed=0) is df and glue.subsample(df, 500, seed=0) is df
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="positive int or None"):
            glue.subsample(df, bad, seed=0)
