"""Checkpoints round-trip a model with all it needs to predict; atomic writes leave no debris."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from castseg.data.coco import CategoryMap
from castseg.io import atomic_write, atomic_write_json
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import Student, build_student

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
    assert payload["format"] == "castseg-model-v2"
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


# DINOv2's attention weights as published on the hub (facebook/dinov2-small, the names of the
# live modules up to some transformers 5.x) and as later transformers names its live modules.
PUBLISHED_TO_RENAMED = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def renamed(state: dict[str, torch.Tensor], mapping: dict[str, str]) -> dict[str, torch.Tensor]:
    """`state` with every key part in `mapping` replaced (the keys of another naming)."""
    result = {}
    for key, value in state.items():
        for old, new in mapping.items():
            key = key.replace(old, new)
        result[key] = value
    return result


def live_naming_is_published(student: Student) -> bool:
    return any(".attention.attention.query." in key for key in student.state_dict())


def assert_same_predictions(a: Student, b: Student) -> None:
    images = torch.rand(2, 3, 56, 84, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = a.eval()(images), b.eval()(images)
    for name in ("mask_logits", "class_logits", "embeddings"):
        torch.testing.assert_close(getattr(actual, name), getattr(expected, name), rtol=0, atol=0)


def test_transformers_models_are_stored_in_their_published_layout(
    student: Student, tmp_path: Path
) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    payload = torch.load(path, weights_only=True)
    assert list(payload["hub_models"]) == ["encoder.backbone"]
    published = payload["hub_models"]["encoder.backbone"]
    # the names of facebook/dinov2-small's model.safetensors, whatever the live modules say
    assert "encoder.layer.0.attention.attention.query.weight" in published
    assert not any(".q_proj." in key for key in published)
    assert not any(key.startswith("encoder.backbone.") for key in payload["state_dict"])
    live = student.encoder.backbone.state_dict()
    if not live_naming_is_published(student):
        published = renamed(published, PUBLISHED_TO_RENAMED)
    assert published.keys() == live.keys()
    assert all(torch.equal(published[key], live[key]) for key in live)


def write_v1(path: Path, model: Student, state: dict[str, torch.Tensor]) -> Path:
    """A "castseg-model-v1" file, as castseg wrote before: every weight under live names."""
    torch.save(
        {
            "format": "castseg-model-v1",
            "model_args": model.config_dict(),
            "state_dict": state,
            "categories": [
                {"id": i, "name": n} for i, n in zip(CATEGORIES.ids, CATEGORIES.names, strict=True)
            ],
            "image_size": [56, 84],
            "normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "extra": {},
        },
        path,
    )
    return path


def test_v1_checkpoint_with_its_own_names_loads(student: Student, tmp_path: Path) -> None:
    path = write_v1(tmp_path / "v1.pt", student, student.state_dict())
    assert_same_predictions(student, load_checkpoint(path).model)


def test_v1_checkpoint_of_the_other_dinov2_naming_loads_identically(
    student: Student, tmp_path: Path
) -> None:
    # As on a machine whose transformers names DINOv2's attention otherwise than the one that
    # saved the file: the live names of this version are turned into the other naming.
    if live_naming_is_published(student):
        pytest.skip("this transformers predates the rename: it cannot know the later names")
    other = renamed(student.state_dict(), {v: k for k, v in PUBLISHED_TO_RENAMED.items()})
    assert set(other) != set(student.state_dict())
    path = write_v1(tmp_path / "other.pt", student, other)
    assert_same_predictions(student, load_checkpoint(path).model)


def test_v1_checkpoint_that_fits_no_naming_names_the_file_and_keys(
    student: Student, tmp_path: Path
) -> None:
    state = dict(student.state_dict())
    state["encoder.backbone.encoder.layer.0.attention.bogus.weight"] = state.pop(
        next(key for key in state if key.startswith("encoder.backbone.encoder.layer.0."))
    )
    path = write_v1(tmp_path / "broken.pt", student, state)
    with pytest.raises(ValueError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "broken.pt: weights do not fit the model: missing 1 key (encoder.backbone." in message
    assert "unexpected 1 key (encoder.backbone.encoder.layer.0.attention.bogus.weight)" in message


def test_v2_checkpoint_whose_dinov2_weights_miss_a_key_is_refused(
    student: Student, tmp_path: Path
) -> None:
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=CATEGORIES, image_size=(56, 56))
    payload = torch.load(path, weights_only=True)
    del payload["hub_models"]["encoder.backbone"]["layernorm.weight"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"m\.pt: encoder\.backbone: .*missing 1 key \(layernorm"):
        load_checkpoint(path)
