"""Class names as a grounding text prompt: class index ↔ category name ↔ prompt text ↔ tokens.

MM-Grounding-DINO scores every query against every token of one text, "person. rider. car.".
The prompt is tokenised once; `token_classes[c, t]` marks the tokens of class c's phrase, so a
per-class score is read from the per-token logits without a tokenizer at run time:

    score[c] = mean over the tokens t of class c of sigmoid(logit[t])

(the mean, as MM-Grounding-DINO's own class-score conversion in mmdetection does, so a class
named by several word pieces is not favoured over a one-token class).

A prompt longer than the detector's text (256 tokens) is split into chunks of consecutive
classes, each a text of its own (`chunk_class_prompts`), as MM-Grounding-DINO runs LVIS's 1 203
classes; the teacher runs the detector once per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

# The detector splits the text into phrases at these characters (its special tokens "." and "?").
PHRASE_SEPARATORS = (".", "?")


def default_prompt(class_name: str) -> str:
    """The prompt of a class without an override: lower case, underscores as spaces."""
    return " ".join(class_name.replace("_", " ").split()).lower()


def prompt_text(prompts: Sequence[str]) -> str:
    """The detector's text for the class prompts, e.g. ["person", "car"] → "person. car."."""
    return ". ".join(prompts) + "."


@dataclass(frozen=True)
class ClassPrompts:
    """The tokenised prompt of a dataset's classes.

    Class c is `class_names[c]`, described to the detector by `prompts[c]`; its tokens are the
    positions t with `token_classes[c, t]` True.

    input_ids: [T] token ids of `prompt_text(prompts)` with the tokenizer's special tokens.
    attention_mask: [T], 1 for every token (one unpadded text).
    token_classes: [C, T] bool; separators and special tokens belong to no class.
    """

    class_names: tuple[str, ...]
    prompts: tuple[str, ...]
    input_ids: Tensor
    attention_mask: Tensor
    token_classes: Tensor

    @classmethod
    def empty(
        cls, class_names: Sequence[str], prompts: Sequence[str], num_tokens: int
    ) -> ClassPrompts:
        """Zero tensors of the right shapes, for a model whose state_dict will fill them."""
        return cls(
            class_names=tuple(class_names),
            prompts=tuple(prompts),
            input_ids=torch.zeros(num_tokens, dtype=torch.long),
            attention_mask=torch.zeros(num_tokens, dtype=torch.long),
            token_classes=torch.zeros(len(class_names), num_tokens, dtype=torch.bool),
        )

    @property
    def text(self) -> str:
        return prompt_text(self.prompts)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    def token_positions(self, class_index: int) -> list[int]:
        """Positions in `input_ids` of the tokens of class `class_index`."""
        return self.token_classes[class_index].nonzero().flatten().tolist()


def resolve_prompts(class_names: Sequence[str], prompts: Sequence[str] | None) -> tuple[str, ...]:
    """One prompt per class: `prompts` in class order, or `default_prompt` of each name.

    Prompts are lower-cased with single spaces, as the detector's own processor does.

    Raises ValueError when the counts differ, a prompt is empty or holds a phrase separator
    ("." or "?"), or two classes share a prompt (the detector could not tell them apart).
    """
    if not class_names:
        raise ValueError("the teacher needs at least one class name")
    if prompts is None:
        prompts = [default_prompt(name) for name in class_names]
    elif len(prompts) != len(class_names):
        raise ValueError(
            f"got {len(prompts)} prompts for {len(class_names)} classes {list(class_names)}; "
            "give one prompt per class, in class order"
        )
    resolved = tuple(" ".join(p.split()).lower() for p in prompts)
    for name, prompt in zip(class_names, resolved, strict=True):
        if not prompt:
            raise ValueError(f"the prompt of class {name!r} is empty")
        if any(sep in prompt for sep in PHRASE_SEPARATORS):
            raise ValueError(
                f"the prompt {prompt!r} of class {name!r} contains one of {PHRASE_SEPARATORS}, "
                "which separate the classes' phrases in the detector's text"
            )
    seen: dict[str, str] = {}
    for name, prompt in zip(class_names, resolved, strict=True):
        if prompt in seen:
            raise ValueError(
                f"classes {seen[prompt]!r} and {name!r} share the prompt {prompt!r}; "
                "give them different prompts"
            )
        seen[prompt] = name
    return resolved


def tokenize_class_prompts(
    tokenizer: PreTrainedTokenizerBase,
    class_names: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    max_tokens: int,
) -> ClassPrompts:
    """Tokenise the classes' prompt once and map every token to its class.

    Args:
        tokenizer: the detector's (fast) tokenizer; it must return offset mappings.
        class_names: category names in class-index order.
        prompts: per-class prompt overrides in the same order (e.g. "motorbike" for class
            "motorcycle"); None uses `default_prompt` of each name.
        max_tokens: the detector's maximum text length; a longer text raises ValueError.
    """
    resolved = resolve_prompts(class_names, prompts)
    text = prompt_text(resolved)
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    ids = list(encoded["input_ids"])
    if len(ids) > max_tokens:
        raise ValueError(
            f"the prompt of {len(class_names)} classes is {len(ids)} tokens long, more than the "
            f"detector's {max_tokens}; shorten the prompts"
        )
    spans, start = [], 0
    for prompt in resolved:
        spans.append((start, start + len(prompt)))
        start += len(prompt) + 2  # ". " between phrases
    token_classes = torch.zeros(len(resolved), len(ids), dtype=torch.bool)
    # [CLS] and [SEP] have empty offsets, separators lie between the phrases' spans.
    for position, (begin, end) in enumerate(encoded["offset_mapping"]):
        if end <= begin:
            continue
        for index, (first, last) in enumerate(spans):
            if first <= begin and end <= last:
                token_classes[index, position] = True
    empty = [resolved[c] for c in range(len(resolved)) if not token_classes[c].any()]
    if empty:
        raise ValueError(f"the tokenizer gives no token for the prompts {empty}")
    return ClassPrompts(
        class_names=tuple(class_names),
        prompts=resolved,
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.ones(len(ids), dtype=torch.long),
        token_classes=token_classes,
    )


def class_scores_from_token_logits(token_logits: Tensor, token_classes: Tensor) -> Tensor:
    """Per-class scores: the mean sigmoid of the logits of each class's tokens.

    Args:
        token_logits: [..., L] per-token logits, L ≥ T (the detector pads to its maximum text
            length with -inf).
        token_classes: [C, T] bool token → class map (`ClassPrompts.token_classes`).

    Returns:
        [..., C] scores in [0, 1].
    """
    num_tokens = token_classes.shape[1]
    probs = token_logits[..., :num_tokens].sigmoid()
    weights = token_classes.to(probs.dtype)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1)
    return probs @ weights.T


def chunk_class_prompts(
    tokenizer: PreTrainedTokenizerBase,
    class_names: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    max_tokens: int,
) -> list[ClassPrompts]:
    """The classes in order, split into as few consecutive chunks as fit `max_tokens` each.

    One chunk (the whole prompt, `tokenize_class_prompts`) when it fits. Raises ValueError
    naming a class whose prompt alone is longer than `max_tokens`, and as `resolve_prompts`.
    """
    resolved = resolve_prompts(class_names, prompts)

    def length(indices: list[int]) -> int:
        text = prompt_text([resolved[i] for i in indices])
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    chunks: list[list[int]] = [[]]
    for index in range(len(resolved)):
        if chunks[-1] and length([*chunks[-1], index]) > max_tokens:
            chunks.append([])
        if length([index]) > max_tokens:
            raise ValueError(
                f"the prompt {resolved[index]!r} of class {class_names[index]!r} alone is "
                f"{length([index])} tokens long, more than the detector's {max_tokens}"
            )
        chunks[-1].append(index)
    return [
        tokenize_class_prompts(
            tokenizer,
            [class_names[i] for i in chunk],
            [resolved[i] for i in chunk],
            max_tokens=max_tokens,
        )
        for chunk in chunks
    ]
