"""The shared stage store: what its key depends on, intact entries reused, corrupt or partial
ones recomputed, concurrent publishers, and two runs that differ only in student settings
sharing teacher adaptation and its pseudo-labels."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from castseg.cli import main
from castseg.config import apply_overrides, load_config
from castseg.models.checkpoints import load_checkpoint
from castseg.pipeline.fingerprints import store_key, teacher_stage_fingerprint
from castseg.pipeline.stage_store import StageStore, StageStoreWarning


def key_of(config, *overrides):
    return store_key(teacher_stage_fingerprint(apply_overrides(config, overrides), "w0"))


def test_the_key_follows_stage_one_inputs_only(tiny_experiment, tmp_path):
    cfg = load_config(tiny_experiment[0])
    base = key_of(cfg)
    for student_only in (
        "student.lr_decoder=1e-3",
        "student.distill_iters=7",
        "loss.lambda_semi=0.5",
        "run.out_dir=elsewhere",
        "run.log_every=3",
        "run.threads=1",
        "data.num_workers=1",
    ):
        assert key_of(cfg, student_only) == base, student_only
    for stage_one in (
        "loss.lambda_pxl=0.0",
        "contrastive.mode=uniform",
        "run.seed=1",
        "run.matmul_precision=high",  # TF32 changes a GPU's results
        "teacher.finetune_iters=3",
        "data.split=4",
    ):
        assert key_of(cfg, stage_one) != base, stage_one
    assert store_key(teacher_stage_fingerprint(cfg, "w1")) != base  # other teacher weights
    # Stage 1's L_pxl settings count however they are written: pinned in teacher.contrastive,
    # the top-level section is the student's alone.
    pinned = apply_overrides(cfg, ["teacher.contrastive={}"])
    assert key_of(pinned) == base
    assert key_of(pinned, "contrastive.mode=uniform", "contrastive.memory_bank=64") == base
    assert key_of(pinned, "teacher.contrastive.mode=uniform") == key_of(
        cfg, "contrastive.mode=uniform"
    )
    # The annotation file's content, not only its path: the same path edited in place.
    copy = tmp_path / "copy.json"
    copy.write_bytes(Path(cfg.data.labeled_annotations).read_bytes())
    moved = replace(cfg, data=replace(cfg.data, labeled_annotations=str(copy)))
    before = key_of(moved)
    copy.write_text(copy.read_text().replace('"disc"', '"disk"'))
    assert key_of(moved) != before


def publish_one(store, tmp_path, text="weights"):
    source = tmp_path / "a.pt"
    source.write_text(text)
    return store.publish("k", "part", {"sub/a.pt": source}, data={"n": 1}, fingerprint={"f": 1})


def test_an_intact_entry_is_fetched_and_a_second_publisher_keeps_the_first(tmp_path):
    store = StageStore(tmp_path / "store")
    entry = publish_one(store, tmp_path)
    publish_one(store, tmp_path, text="other weights")  # as a concurrent run would
    folder, data = store.fetch("k", "part")
    assert folder == entry and data == {"n": 1}
    assert (folder / "sub" / "a.pt").read_text() == "weights"
    assert json.loads((tmp_path / "store" / "k" / "fingerprint.json").read_text()) == {"f": 1}
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["k"]  # no temporary left


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "sub" / "a.pt").write_text("weight"),  # truncated
        lambda folder: (folder / "sub" / "a.pt").write_text("WEIGHTS"),  # altered
        lambda folder: (folder / "sub" / "a.pt").unlink(),  # missing
        lambda folder: (folder / "manifest.json").unlink(),  # partial: no manifest
        lambda folder: (folder / "manifest.json").write_text("{"),  # unreadable
    ],
)
def test_a_corrupt_or_partial_entry_is_removed_and_never_trusted(tmp_path, damage):
    store = StageStore(tmp_path / "store")
    damage(publish_one(store, tmp_path))
    with pytest.warns(StageStoreWarning, match="corrupt or partial"):
        assert store.fetch("k", "part") is None
    assert not store.entry("k", "part").exists()
    publish_one(store, tmp_path)  # recomputed and stored again
    assert store.fetch("k", "part") is not None


def same_weights(a, b):
    wa, wb = load_checkpoint(a).model.state_dict(), load_checkpoint(b).model.state_dict()
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_runs_that_differ_in_student_settings_share_teacher_adaptation(
    tiny_experiment, fast_args, capsys
):
    config, out, store = tiny_experiment
    first, second, third = (out.parent / name for name in ("first", "second", "third"))

    def run(folder, *extra):
        args = ["run", str(config), "--no-progress", *fast_args, f"--set=run.out_dir={folder}"]
        assert main([*args, *extra]) == 0
        return capsys.readouterr().out

    printed = run(first)
    assert "reused" not in printed and "Teacher adaptation stored" in printed
    printed = run(second, "--set=student.lr_decoder=1e-3", "--set=loss.lambda_semi=0.5")
    [entry] = list(store.iterdir())
    for stage in ("teacher_zero_shot", "teacher_finetune", "teacher_selftrain"):
        assert f"Stage {stage} reused from the stage store ({entry / 'teacher_adaptation'})" in (
            printed
        )
    assert f"Pseudo-labels of the adapted teacher reused from {entry / 'pseudo_labels'}" in printed
    assert same_weights(first / "teacher_adapted.pt", second / "teacher_adapted.pt")
    assert not (second / "pseudo_labels_teacher_finetune.jsonl").exists()  # stage 1 not rerun
    cache = "pseudo_labels_teacher_adapted.jsonl"
    assert (second / cache).read_bytes() == (first / cache).read_bytes()
    rows = [json.loads((f / "results.json").read_text())["rows"] for f in (first, second)]
    assert rows[0][:2] == rows[1][:2]  # the teacher rows, wall times included
    assert (second / "teacher_finetune" / "metrics.csv").is_file()  # the report's curves

    # A truncated checkpoint in the store: the next run warns, recomputes and stores it again.
    stored = entry / "teacher_adaptation" / "teacher_adapted.pt"
    stored.write_bytes(stored.read_bytes()[:100])
    with pytest.warns(StageStoreWarning, match="teacher_adapted.pt differs from its manifest"):
        printed = run(third)
    assert "Stage teacher_selftrain reused" not in printed
    assert same_weights(third / "teacher_adapted.pt", first / "teacher_adapted.pt")
    assert same_weights(stored, first / "teacher_adapted.pt")
