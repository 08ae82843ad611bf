"""Run an exported model in ONNX Runtime behind the same interface as the PyTorch model."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from google.protobuf.message import DecodeError
from torch import Tensor, nn

from castseg.deploy.onnx_metadata import INPUT_NAME, OUTPUT_NAMES, OnnxMetadata
from castseg.structures import Predictions

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def onnx_session(model: str | Path | bytes, device: str = "cpu") -> ort.InferenceSession:
    """An ONNX Runtime session on `device` ("cpu" or "cuda") for a model file or its bytes.

    Raises ValueError when the onnxruntime build has no provider for the device.
    """
    if device not in _PROVIDERS:
        raise ValueError(f"device must be one of {sorted(_PROVIDERS)}, got {device!r}")
    provider = _PROVIDERS[device]
    if provider not in ort.get_available_providers():
        raise ValueError(
            f"onnxruntime {ort.__version__} has no {provider} (it has "
            f"{ort.get_available_providers()}); for --device cuda install onnxruntime-gpu"
        )
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, providers=[provider])


class OnnxSegmenter(nn.Module):
    """An ONNX Runtime session that returns `Predictions` like the model it was exported from.

    It has no parameters: `train()` / `eval()` change nothing, and inputs and outputs live on
    the CPU (ONNX Runtime copies to its device itself).
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, images: Tensor) -> Predictions:
        """images [B, 3, H, W] float RGB in [0, 1], H and W those of the export."""
        feed = {INPUT_NAME: images.detach().float().cpu().contiguous().numpy()}
        mask_logits, class_logits = self.session.run(list(OUTPUT_NAMES), feed)
        return Predictions(torch.from_numpy(mask_logits), torch.from_numpy(class_logits))


def load_onnx_model(path: str | Path, device: str = "cpu") -> tuple[OnnxSegmenter, OnnxMetadata]:
    """The segmenter of a `castseg export` file and the metadata it carries.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    not an ONNX model or lacks castseg's metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    try:
        proto = onnx.load_model(path, load_external_data=False)
    except (DecodeError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not an ONNX model (cannot parse it: {err})") from err
    props = {entry.key: entry.value for entry in proto.metadata_props}
    metadata = OnnxMetadata.from_props(props, path)
    return OnnxSegmenter(onnx_session(path, device)), metadata
