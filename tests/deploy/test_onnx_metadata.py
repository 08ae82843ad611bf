"""ONNX metadata round-trips, and files that are not castseg exports are refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from castseg.data.coco import CategoryMap
from castseg.deploy.onnx_metadata import OnnxMetadata
from castseg.deploy.onnx_runtime import load_onnx_model, onnx_session

METADATA = OnnxMetadata(
    category_map=CategoryMap(ids=(2, 5), names=("person", "car")),
    image_size=(518, 1036),
    normalization={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    model_args={"size": "paper", "num_classes": 2},
)


def identity_model(props: dict[str, str]) -> onnx.ModelProto:
    """A valid ONNX model (images → Identity) carrying `props` as metadata."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["mask_logits"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, [1, 3, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    return model


def test_props_round_trip_as_json_strings() -> None:
    props = METADATA.to_props()
    assert json.loads(props["castseg.image_size"]) == [518, 1036]
    assert json.loads(props["castseg.categories"]) == [
        {"id": 2, "name": "person"},
        {"id": 5, "name": "car"},
    ]
    assert OnnxMetadata.from_props(props, "m.onnx") == METADATA


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"castseg.format": '"castseg-onnx-v9"'}, "not an ONNX model exported by `castseg export`"),
        ({"castseg.image_size": "[518]"}, r"castseg.image_size must be \[H, W\]"),
        ({"castseg.categories": '[{"name": "x"}]'}, "castseg.categories"),
        ({"castseg.normalization": "{not json"}, "castseg.normalization is not JSON"),
    ],
)
def test_bad_props_are_named(change: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OnnxMetadata.from_props({**METADATA.to_props(), **change}, "m.onnx")


def test_a_missing_key_is_named() -> None:
    props = METADATA.to_props()
    del props["castseg.model_args"]
    with pytest.raises(ValueError, match=r"m\.onnx: the ONNX metadata lacks castseg.model_args"):
        OnnxMetadata.from_props(props, "m.onnx")


def test_load_reads_the_metadata_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(identity_model(METADATA.to_props()), path)
    _, metadata = load_onnx_model(path)
    assert metadata == METADATA


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"definitely not protobuf", "is not an ONNX model"),
        (identity_model({}).SerializeToString(), "not an ONNX model exported by `castseg export`"),
    ],
    ids=["garbage", "foreign-onnx"],
)
def test_files_that_are_not_castseg_exports_are_named(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "foreign.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        load_onnx_model(path)
    assert "foreign.onnx" in str(err.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gone.onnx"):
        load_onnx_model(tmp_path / "gone.onnx")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA"
)
def test_cuda_without_the_provider_says_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(identity_model(METADATA.to_props()), path)
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        onnx_session(path, "cuda")
