"""Two CPU ranks (gloo) under torchrun: DDP training, sharded pseudo-labels, gathered evaluation.

The test launches this very file with `python -m torch.distributed.run --nproc_per_node 2`; each
rank runs `worker`, the way `castseg run` runs under torchrun, and writes what it saw to
rank<r>.json. The test then redoes pseudo-labelling and evaluation in one process with the
trained weights and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from castseg.config import RunConfig, load_config
from castseg.models.student import build_student
from castseg.pipeline.experiment_data import load_experiment_data
from castseg.pipeline.pseudo_labels import generate_pseudo_labels
from castseg.pipeline.stages import state_fingerprint
from castseg.runtime.distributed import (
    all_gather_results,
    barrier,
    distributed_session,
    global_rank,
    init_distributed,
    is_rank_zero,
    on_rank_zero,
    resolve_devices,
)
from castseg.runtime.evaluate import evaluate_model
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings
from castseg.training.trainer import train_stage

IMAGE_SIZE = (56, 56)
LABELED = 4  # of the world's 16 target_train images; the other 12 are D_u
TRAIN_STEPS = 2


def write_config(world: dict[str, Path], out: Path) -> Path:
    config = {
        "data": {
            "labeled_annotations": str(world["target_train"]),
            "split": LABELED,
            "val_annotations": str(world["target_val"]),
            "image_size": list(IMAGE_SIZE),
            "num_workers": 0,
        },
        "student": {"size": "tiny", "batch_size": 2},
        "loss": {"num_points": 64},
        "contrastive": {"num_negatives": 8, "max_anchors": 16},
        "run": {
            "out_dir": str(out),
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp",
            "log_every": 1,
            "eval_top_k": 5,
        },
    }
    path = out.parent / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pseudo_label(model: nn.Module, cfg, data, path: Path):
    """Every instance the model finds (threshold 0) becomes a pseudo-label: a non-trivial cache."""
    return generate_pseudo_labels(
        model,
        data.unlabeled,
        path,
        image_size=IMAGE_SIZE,
        threshold=0.0,
        top_k=cfg.run.eval_top_k,
        batch_size=1,
        fingerprint={"student": state_fingerprint(model)},
        progress=False,
    )


def evaluate(model: nn.Module, cfg, data):
    return evaluate_model(
        model,
        data.val,
        image_size=IMAGE_SIZE,
        top_k=cfg.run.eval_top_k,
        batch_size=1,
        progress=False,
    )


def count_images(model: nn.Module) -> list[int]:
    """A one-item list that counts the images `model` is run on from now on."""
    seen = [0]
    model.register_forward_pre_hook(
        lambda _module, args: seen.__setitem__(0, seen[0] + len(args[0]))
    )
    return seen


def failure_reports() -> dict[str, Any]:
    """What each rank sees when rank 1 fails inside all_gather_results and rank 0 in
    on_rank_zero: both must raise everywhere."""
    seen: dict[str, Any] = {}
    try:
        all_gather_results(lambda: 1 // (global_rank() - 1))
    except ZeroDivisionError as err:
        seen["gather"] = ["ZeroDivisionError", *getattr(err, "__notes__", [])]
    try:
        on_rank_zero(lambda: int("rank zero"))
    except ValueError as err:
        seen["rank_zero"] = ["ValueError", *getattr(err, "__notes__", [])]
    return seen


def worker(config_path: Path) -> None:
    """One rank: train, pseudo-label, evaluate, and report to <out_dir>/rank<r>.json."""
    cfg = load_config(config_path)
    out = Path(cfg.run.out_dir)
    with distributed_session(cfg.run) as several:
        data = load_experiment_data(cfg.data)
        torch.manual_seed(global_rank())  # DDP must still start every rank from rank 0's weights
        student = build_student("tiny", len(data.categories))
        train_stage(
            "train",
            student,
            cfg,
            num_classes=len(data.categories),
            labeled=data.labeled,
            pseudo_labeled=None,
            weights=StageWeights(0.0, cfg.loss.lambda_pxl),
            steps=TRAIN_STEPS,
            optim=OptimSettings.for_student(cfg.student),
            contrastive=cfg.contrastive,
            batch_size=cfg.student.batch_size,
            out_dir=out,
            progress=False,
        )
        if is_rank_zero():
            torch.save(student.state_dict(), out / "student_weights.pt")
        barrier()
        weights_visible = (out / "student_weights.pt").is_file()
        seen = count_images(student)
        cache = pseudo_label(student, cfg, data, out / "pseudo_labels.jsonl")
        labelled_here = seen[0]
        result = evaluate(student, cfg, data)
        report = {
            "several": several,
            "weights_visible": weights_visible,
            "weights": state_fingerprint(student),
            "cache_ids": cache.image_ids,
            "labelled_here": labelled_here,
            "evaluated_here": seen[0] - labelled_here,
            "metrics": json.dumps(asdict(result.metrics)),
            "results": json.dumps(result.results),
            "failures": failure_reports(),
        }
        (out / f"rank{global_rank()}.json").write_text(json.dumps(report))


def test_two_cpu_ranks_train_pseudo_label_and_evaluate_like_one_process(
    synthetic_world: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    config = write_config(synthetic_world, out)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    launched = subprocess.run(
        [*command, __file__, str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert launched.returncode == 0, launched.stdout[-4000:] + launched.stderr[-4000:]
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]

    cfg = load_config(config)
    data = load_experiment_data(cfg.data)
    assert data.unlabeled is not None and data.val is not None
    assert all(r["several"] and r["weights_visible"] for r in reports)
    assert reports[0]["weights"] == reports[1]["weights"], "DDP replicas diverged"
    student = build_student("tiny", len(data.categories))
    student.load_state_dict(torch.load(out / "student_weights.pt"))
    assert state_fingerprint(student) == reports[0]["weights"]
    # Each rank ran the model on its half of D_u and of the validation set only.
    assert [r["labelled_here"] for r in reports] == [6, 6]
    assert [r["evaluated_here"] for r in reports] == [4, 4]

    merged = out / "pseudo_labels.jsonl"
    ids = [json.loads(line)["image_id"] for line in merged.read_text().splitlines()[1:]]
    assert ids == list(data.unlabeled.image_ids)  # each image once, in dataset order
    assert sorted(p.name for p in out.glob("pseudo_labels.jsonl*")) == ["pseudo_labels.jsonl"]
    assert all(r["cache_ids"] == ids for r in reports)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran, so the arithmetic is the same
    try:
        single_cache = pseudo_label(student, cfg, data, tmp_path / "single.jsonl")
        single = evaluate(student, cfg, data)
    finally:
        torch.set_num_threads(threads)
    assert merged.read_bytes() == single_cache.path.read_bytes()
    assert single_cache.summary()["instances"] > 0
    for report in reports:
        assert report["metrics"] == json.dumps(asdict(single.metrics))
        assert report["results"] == json.dumps(single.results)

    gather, rank_zero = reports[0]["failures"]["gather"], reports[0]["failures"]["rank_zero"]
    assert gather == ["ZeroDivisionError", "(raised on rank 1 of 2)"]
    assert rank_zero == ["ValueError"]
    assert reports[1]["failures"] == {
        "gather": ["ZeroDivisionError"],
        "rank_zero": ["ValueError", "(raised on rank 0 of 2)"],
    }


def test_init_distributed_outside_a_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert not init_distributed(RunConfig())
    assert not init_distributed(RunConfig(strategy="ddp", devices=1))
    with pytest.raises(ValueError, match=r"run.devices=2 and run.num_nodes=1 needs 2 processes"):
        init_distributed(RunConfig(strategy="ddp", devices=2))
    with pytest.raises(ValueError, match="needs run.devices set"):
        init_distributed(RunConfig(strategy="ddp", devices="auto"))
    # Lightning would start the second process itself, in the middle of the pipeline.
    with pytest.raises(ValueError, match="castseg does not start them itself: torchrun "):
        init_distributed(RunConfig(accelerator="cpu", devices=2))


def test_without_a_launcher_auto_is_one_device_and_says_how_to_use_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_devices(RunConfig(accelerator="cpu")) == (
        RunConfig(accelerator="cpu", devices=1),
        None,
    )
    with pytest.raises(
        ValueError,
        match="torchrun --standalone --nproc_per_node 2 -m castseg.cli run c.yaml --set "
        "run.strategy=ddp --set run.devices=2",
    ):
        resolve_devices(RunConfig(accelerator="cpu", devices=2), "c.yaml")
    with pytest.raises(ValueError, match="run.num_nodes=2 need one process per device"):
        resolve_devices(RunConfig(accelerator="cpu", devices=1, num_nodes=2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    run, note = resolve_devices(RunConfig(), "c.yaml")
    assert run.devices == 1
    assert note == (
        "run.devices: auto uses one of the 4 CUDA devices without a launcher; to use all: "
        "torchrun --standalone --nproc_per_node 4 -m castseg.cli run c.yaml --set "
        "run.strategy=ddp --set run.devices=4"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="run.accelerator is 'gpu' but torch finds no such device"):
        resolve_devices(RunConfig(accelerator="gpu"))


@pytest.mark.parametrize(
    "launcher",
    [
        {"TORCHELASTIC_RUN_ID": "test", "WORLD_SIZE": "4"},
        {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_NAME": "train"},
    ],
    ids=["torchrun", "srun"],
)
def test_init_distributed_checks_the_launch_against_the_config(
    monkeypatch: pytest.MonkeyPatch, launcher: dict[str, str]
) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=r"4 processes were launched but run.strategy is 'auto'"):
        init_distributed(RunConfig())
    with pytest.raises(ValueError, match=r"started 4 processes but .* = 2 × 1 = 2"):
        init_distributed(RunConfig(strategy="ddp", devices=2))
    with pytest.raises(ValueError, match=r"started 4 processes but .* = 2 × 3 = 6"):
        init_distributed(RunConfig(strategy="ddp", devices=2, num_nodes=3))


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
