"""Instances of whole images from a model: resize, predict in one batch, map back, select."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from castseg.data.views import ResizeView
from castseg.evaluation.instance_inference import instances_from_predictions
from castseg.runtime.compute import inference_autocast, uses_cuda
from castseg.structures import Predictions


def inference_device(accelerator: str = "auto") -> torch.device:
    """The device models predict on outside training: this rank's GPU when the accelerator
    allows one and CUDA is there, else the CPU (Lightning moves models back to the CPU after
    each stage)."""
    if uses_cuda(accelerator):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def predict_images(
    model: nn.Module,
    images: Sequence[Tensor],
    view: ResizeView,
    *,
    top_k: int = 100,
    score_threshold: float = 0.0,
    per_query: bool = False,
    precision: str = "32-true",
) -> list[dict[str, Tensor]]:
    """Predict the instances of each image at its original size.

    Args:
        model: returns `Predictions` for images [B, 3, H, W] in [0, 1] (H, W = `view.size`).
            It runs in eval mode without gradients; its training mode is restored afterwards.
        images: [3, H_i, W_i] float RGB in [0, 1], sizes may differ.
        view: resizes every image into the same padded [H, W] so they form one batch.
        top_k, score_threshold, per_query: as in `instances_from_predictions`.
        precision: a resolved `run.precision`; the mixed ones run the forward under autocast.

    Returns:
        Per image, on CPU: masks [N, H_i, W_i] bool, labels [N] long in [0, C), scores [N] and
        class_probs [N, C+1], sorted by descending score.
    """
    if not images:
        return []
    device = model_device(model)
    batch = torch.stack([view(image)[0] for image in images]).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            with inference_autocast(precision, device):
                pred: Predictions = model(batch)
            outputs = []
            for i, image in enumerate(images):
                size = (int(image.shape[1]), int(image.shape[2]))
                # Resized here at the original size, so instances_from_predictions resizes nothing.
                logits = view.unresize(pred.mask_logits[i].float(), size)  # [K, H_i, W_i]
                found = instances_from_predictions(
                    logits,
                    pred.class_logits[i].float(),
                    size,
                    top_k=top_k,
                    score_threshold=score_threshold,
                    per_query=per_query,
                )
                outputs.append({key: value.cpu() for key, value in found.items()})
    finally:
        model.train(was_training)
    return outputs
