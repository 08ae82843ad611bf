"""Checkpoints round-trip a model with all it needs to predict; atomic writes leave no debris."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from castseg.data.coco import CategoryMap
from castseg.io import atomic_write, atomic_write_json
from castseg.models.student import Student, build_student
from castseg.training.checkpoints import load_checkpoint, save_checkpoint

CATEGORIES = CategoryMap(ids=(3, 7, 9), names=("cat", "dog", "bird"))


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(0)
    return build_student("tiny", num_classes=3).eval()


def test_round_trip_gives_the_same_predictions(student: Student, tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "ckpt" / "model.pt",
        student,
        category_map=CATEGORIES,
        image_size=(56, 84),
        extra={"stage": "refine", "step": 12},
    )
    loaded = load_checkpoint(path)

    assert not loaded.model.training
    assert loaded.category_map == CATEGORIES
    assert loaded.image_size == (56, 84)
    assert loaded.extra == {"stage": "refine", "step": 12}
    images = torch.rand(2, 3, 56, 84, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = student(images), loaded.model(images)
    torch.testing.assert_close(actual.mask_logits, expected.mask_logits, rtol=0, atol=0)
    torch.testing.assert_close(actual.class_logits, expected.class_logits, rtol=0, atol=0)


def test_checkpoint_holds_plain_data_and_normalization(student: Student, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "castseg-model-v1"
    assert payload["categories"] == [
        {"id": 3, "name": "cat"},
        {"id": 7, "name": "dog"},
        {"id": 9, "name": "bird"},
    ]
    assert payload["normalization"] == {
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
    }
    assert payload["model_args"]["num_classes"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_checkpoint(tmp_path / "nowhere.pt")


@pytest.mark.parametrize(
    "write",
    [
        lambda p: torch.save({"weights": torch.zeros(3)}, p),
        lambda p: torch.save(torch.zeros(3), p),
        lambda p: p.write_bytes(b"definitely not a torch file"),
        lambda p: p.write_bytes(b""),
    ],
    ids=["other-dict", "tensor", "garbage", "empty"],
)
def test_foreign_file_is_a_value_error_naming_it(tmp_path: Path, write) -> None:
    path = tmp_path / "foreign.pt"
    write(path)
    with pytest.raises(ValueError, match="foreign.pt"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_are_a_value_error(student: Student, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    payload = torch.load(path, weights_only=True)
    payload["model_args"]["num_queries"] += 1
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"m\.pt.*weights do not fit"):
        load_checkpoint(path)


def test_category_count_must_match_the_model(student: Student, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3 classes"):
        save_checkpoint(
            tmp_path / "m.pt",
            student,
            category_map=CategoryMap(ids=(1, 2), names=("a", "b")),
            image_size=(56, 56),
        )
    assert not (tmp_path / "m.pt").exists()


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    atomic_write_json(path, {"ap": 1.0})
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        tmp.write_text('{"ap": ')
        raise RuntimeError("interrupted")
    assert path.read_text() == '{\n  "ap": 1.0\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_write_json_rejects_unserialisable_data_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_normalization_is_loaded_and_defaults_to_imagenet(student: Student, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert load_checkpoint(path).normalization == imagenet
    payload = torch.load(path, weights_only=True)
    del payload["normalization"]  # as a payload written before the key existed
    torch.save(payload, path)
    assert load_checkpoint(path).normalization == imagenet


def test_a_malformed_normalization_is_a_value_error_naming_the_file(
    student: Student, tmp_path: Path
) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    payload = torch.load(path, weights_only=True)
    payload["normalization"] = {"mean": [0.5, 0.5]}
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"m\.pt: normalization"):
        load_checkpoint(path)
