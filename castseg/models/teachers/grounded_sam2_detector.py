"""The detector half of the GroundedSAM2 teacher: MM-Grounding-DINO's top queries as class
scores and boxes, and the class logits those scores become.

The class prompts are kept as token buffers, one text per prompt chunk (`prompt_tokens`); the
detector runs once per chunk and its queries score only the chunk's classes. A query's class
scores s_c = mean over class c's tokens of sigmoid(token logit) (see `prompts`) become a
distribution over the C classes plus no-object (`class_logits_from_scores`):

    p(no object) = 1 − max_c s_c            p(c) = max_c s_c · s_c / Σ_j s_j

so 1 − p(no object) is the detector's own box score and a query whose class scores are all near
0 is almost surely no object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from transformers import MMGroundingDinoForObjectDetection

from castseg.models.teachers.prompts import ClassPrompts, class_scores_from_token_logits

_PROBABILITY_FLOOR = 1e-6  # keeps log-probabilities finite


class PromptTokens(NamedTuple):
    """The prompt chunks as one padded batch of texts.

    input_ids, attention_mask: [chunks, T], padded to the longest chunk (attention mask 0, as
    the processor pads). token_classes: [C, T] bool, class c's tokens in its chunk's text.
    class_chunk: [C], the chunk of each class.
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_classes: Tensor
    class_chunk: Tensor


def prompt_tokens(chunks: Sequence[ClassPrompts]) -> PromptTokens:
    """The token buffers of prompt chunks given in class order."""
    longest = max(chunk.num_tokens for chunk in chunks)
    num_classes = sum(len(chunk.class_names) for chunk in chunks)
    input_ids = torch.zeros(len(chunks), longest, dtype=torch.long)
    attention_mask = torch.zeros(len(chunks), longest, dtype=torch.long)
    token_classes = torch.zeros(num_classes, longest, dtype=torch.bool)
    class_chunk, first = [], 0
    for index, chunk in enumerate(chunks):
        input_ids[index, : chunk.num_tokens] = chunk.input_ids
        attention_mask[index, : chunk.num_tokens] = chunk.attention_mask
        size = len(chunk.class_names)
        token_classes[first : first + size, : chunk.num_tokens] = chunk.token_classes
        class_chunk += [index] * size
        first += size
    return PromptTokens(input_ids, attention_mask, token_classes, torch.tensor(class_chunk))


def check_detector_settings(
    detector: MMGroundingDinoForObjectDetection,
    chunks: Sequence[ClassPrompts],
    num_boxes: int,
    detector_size: Sequence[int],
) -> None:
    """ValueError unless `num_boxes`, `detector_size` and the prompts fit the detector."""
    num_queries = detector.config.num_queries
    if not 1 <= num_boxes <= num_queries:
        raise ValueError(
            f"num_boxes must be between 1 and the detector's {num_queries} queries, got {num_boxes}"
        )
    if len(detector_size) != 2 or not 0 < detector_size[0] <= detector_size[1]:
        raise ValueError(
            "detector_size must be (shortest edge, longest edge) with 0 < shortest <= "
            f"longest, got {tuple(detector_size)}"
        )
    longest = max(chunk.num_tokens for chunk in chunks)
    if longest > detector.config.max_text_len:
        raise ValueError(
            f"a prompt has {longest} tokens, more than the detector's "
            f"{detector.config.max_text_len}"
        )


def top_detections(
    detector: MMGroundingDinoForObjectDetection,
    pixels: Tensor,
    tokens: PromptTokens,
    num_boxes: int,
) -> tuple[Tensor, Tensor]:
    """Class scores [B, K, C] and boxes [B, K, 4] (normalised cx, cy, w, h) of the K =
    `num_boxes` queries with the highest max class score, over all prompt chunks.

    pixels: [B, 3, h, w], the detector's input (resized and normalised).
    """
    batch = pixels.shape[0]
    scores, boxes = [], []
    for index in range(tokens.input_ids.shape[0]):
        detected = detector(
            pixel_values=pixels,
            input_ids=tokens.input_ids[index : index + 1].expand(batch, -1),
            attention_mask=tokens.attention_mask[index : index + 1].expand(batch, -1),
        )
        in_chunk = tokens.token_classes & (tokens.class_chunk == index).unsqueeze(1)
        scores.append(class_scores_from_token_logits(detected.logits, in_chunk))
        boxes.append(detected.pred_boxes)
    scores, boxes = torch.cat(scores, dim=1), torch.cat(boxes, dim=1)  # [B, chunks · Q, ·]
    top = scores.detach().max(dim=-1).values.topk(num_boxes, dim=1).indices  # [B, K]
    scores = scores.gather(1, top.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
    boxes = boxes.gather(1, top.unsqueeze(-1).expand(-1, -1, 4))
    return scores, boxes


def class_logits_from_scores(scores: Tensor) -> Tensor:
    """Class logits [..., C+1] (no-object last) from independent per-class scores [..., C].

    softmax(logits) = (f · s_1/Σs, …, f · s_C/Σs, 1 − f) with f = max_c s_c: the detector's box
    score is the probability of an object, split over the classes in proportion to their scores.
    """
    scores = scores.clamp(_PROBABILITY_FLOOR, 1.0)
    foreground = scores.max(dim=-1, keepdim=True).values
    log_classes = foreground.log() + scores.log() - scores.sum(dim=-1, keepdim=True).log()
    log_background = (1.0 - foreground).clamp(min=_PROBABILITY_FLOOR).log()
    return torch.cat([log_classes, log_background], dim=-1)
