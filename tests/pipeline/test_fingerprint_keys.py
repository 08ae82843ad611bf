"""The run-state key and the stage-store key of fixed configs, pinned to the values the code
computed before issue 21 derived the fingerprints from the schema: run folders and stage-store
entries made before keep their keys. The run-state keys were re-pinned once since, when
`student.refine_lr_scale` joined the config (a new key that changes results changes the run key;
the stage-store keys, of the teacher stages, stayed). Every config key declares what it
affects."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

from castseg.config import ExperimentConfig, config_from_dict, config_to_dict
from castseg.config.schema import Affects
from castseg.pipeline.fingerprints import run_fingerprint, store_key, teacher_stage_fingerprint
from castseg.pipeline.run_state import RunState

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
        (BASE, "8d58517dba224df9", "c0382b4bcc8bb516577110bc"),
        (FULL, "bc80be8656abf408", "fb2d205773f0e75f35c51dce"),
    ],
    ids=["defaults", "every-section-set"],
)
def test_keys_are_those_of_earlier_runs(data_files, raw, run_key, stage_store_key):
    cfg = config_from_dict(raw)
    assert RunState(Path("run"), run_fingerprint(cfg, "w0"), []).key == run_key
    fingerprint = teacher_stage_fingerprint(cfg, "w0")
    fingerprint["castseg"] = "pinned"  # the version changes with every release
    assert store_key(fingerprint) == stage_store_key


def sections(cls=ExperimentConfig, seen=None) -> list[type]:
    """Every dataclass of the config schema, from ExperimentConfig down."""
    seen = [] if seen is None else seen
    if cls not in seen:
        seen.append(cls)
        for tp in get_type_hints(cls).values():
            for arm in (tp, *get_args(tp), *(a for t in get_args(tp) for a in get_args(t))):
                if dataclasses.is_dataclass(arm):
                    sections(arm, seen)
    return seen


def test_every_config_key_declares_what_it_affects():
    found = {cls.__name__ for cls in sections()}
    assert found >= {"DataConfig", "TeacherConfig", "TeacherSource", "StudentConfig"}
    assert found >= {"LossConfig", "ContrastiveConfig", "RunConfig", "ExperimentConfig"}
    for cls in sections():
        for key in dataclasses.fields(cls):
            assert key.metadata.get("affects") in get_args(Affects), f"{cls.__name__}.{key.name}"


def test_the_fingerprints_leave_out_what_they_did_before(data_files):
    cfg = config_from_dict(BASE)
    run = run_fingerprint(cfg, "w0")["config"]
    everything = config_to_dict(cfg)
    left_out = {f"{s}.{k}" for s in everything for k in everything[s] if k not in run[s]}
    assert left_out == {
        "run.out_dir",
        "run.log_every",
        "run.checkpoint_every",
        "run.max_nonfinite_steps",
        "run.allow_weak_pseudo_labels",
        "data.num_workers",
        "run.stage_store",
        "run.threads",
    }
    stored = teacher_stage_fingerprint(cfg, "w0")
    assert list(stored["run"]) == [
        "seed",
        "accelerator",
        "devices",
        "num_nodes",
        "strategy",
        "precision",
        "matmul_precision",
        "eval_top_k",
    ]
    assert "student" not in stored and "lambda_semi" not in stored["loss"]
    assert "num_workers" not in stored["data"] and "contrastive" not in stored["teacher"]
    assert stored["contrastive"] == dataclasses.asdict(cfg.teacher_contrastive)
