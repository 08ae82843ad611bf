"""The run-state key and the stage-store key of fixed configs, pinned to the values the code
computed before issue 21 derived the fingerprints from the schema: run folders and stage-store
entries made before keep their keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from castseg.config import config_from_dict
from castseg.training.run_state import RunState, run_fingerprint
from castseg.training.stage_store import store_key, teacher_stage_fingerprint

BASE = {"data": {"labeled_annotations": "train.json", "image_size": [56, 56]}}
FULL = {
    "data": {
        "labeled_annotations": "train.json",
        "labeled_ids": "ids.txt",
        "image_size": [56, 112],
        "num_workers": 0,
        "split_seed": 3,
    },
    "teacher": {
        "kind": "hf_universal",
        "model": "some/model",
        "label_map": ["a=b"],
        "finetune_iters": 3,
        "contrastive": {"mode": "uniform"},
    },
    "student": {"size": "tiny", "lr_decoder": 1e-3, "distill_iters": 7},
    "loss": {"lambda_semi": 0.5, "lambda_pxl": 0.1},
    "contrastive": {"memory_bank": 64},
    "run": {
        "out_dir": "runs/x",
        "seed": 2,
        "threads": 1,
        "log_every": 3,
        "matmul_precision": "high",
        "stage_store": None,
        "allow_weak_pseudo_labels": True,
    },
}


@pytest.fixture
def data_files(tmp_path, monkeypatch):
    """The data files the configs name, with fixed contents, under relative paths."""
    monkeypatch.chdir(tmp_path)
    Path("train.json").write_text('{"images": [], "annotations": [], "categories": []}\n')
    Path("ids.txt").write_text("1\n2\n")


@pytest.mark.parametrize(
    ("raw", "run_key", "stage_store_key"),
    [
        (BASE, "d02db0ce49ff68ec", "c0382b4bcc8bb516577110bc"),
        (FULL, "2658d3e97367ded2", "fb2d205773f0e75f35c51dce"),
    ],
    ids=["defaults", "every-section-set"],
)
def test_keys_are_those_of_earlier_runs(data_files, raw, run_key, stage_store_key):
    cfg = config_from_dict(raw)
    assert RunState(Path("run"), run_fingerprint(cfg, "w0"), []).key == run_key
    fingerprint = teacher_stage_fingerprint(cfg, "w0")
    fingerprint["castseg"] = "pinned"  # the version changes with every release
    assert store_key(fingerprint) == stage_store_key
