"""Class index ↔ category name ↔ prompt text ↔ tokens, checked against the tokenizer itself."""

import pytest
import torch
from transformers import AutoTokenizer

from castseg.models.teachers.prompts import (
    chunk_class_prompts,
    class_scores_from_token_logits,
    default_prompt,
    prompt_text,
    tokenize_class_prompts,
)

CLASSES = ["person", "motorcycle", "traffic_light"]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_default_prompts_come_from_the_class_names(tokenizer):
    prompts = tokenize_class_prompts(tokenizer, CLASSES, max_tokens=32)
    assert prompts.class_names == tuple(CLASSES)
    assert prompts.prompts == ("person", "motorcycle", "traffic light")
    assert prompts.text == "person. motorcycle. traffic light."
    assert default_prompt("  Traffic_Light ") == "traffic light"


@pytest.mark.parametrize(
    "overrides", [None, ["person", "Motorbike", "traffic  light"]], ids=["names", "override"]
)
def test_each_class_owns_exactly_the_tokens_of_its_prompt(tokenizer, overrides):
    prompts = tokenize_class_prompts(tokenizer, CLASSES, overrides, max_tokens=32)
    ids = prompts.input_ids.tolist()
    assert ids == tokenizer(prompt_text(prompts.prompts))["input_ids"]
    assert prompts.attention_mask.tolist() == [1] * len(ids)

    # Walk the text phrase by phrase: [CLS] phrase . phrase . phrase . [SEP]
    position = 1
    for index, prompt in enumerate(prompts.prompts):
        pieces = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        expected = list(range(position, position + len(pieces)))
        assert prompts.token_positions(index) == expected
        assert [ids[p] for p in expected] == pieces
        position += len(pieces) + 1
    assert position == len(ids) - 1
    unmapped = [ids[t] for t in range(len(ids)) if not prompts.token_classes[:, t].any()]
    period, cls, sep = tokenizer.convert_tokens_to_ids([".", "[CLS]", "[SEP]"])
    assert sorted(unmapped) == sorted([cls, sep] + [period] * len(CLASSES))


def test_multi_token_names_and_an_override(tokenizer):
    names = tokenize_class_prompts(tokenizer, CLASSES, max_tokens=32)
    override = tokenize_class_prompts(
        tokenizer, CLASSES, ["person", "motorbike", "traffic light"], max_tokens=32
    )
    motorcycle = [names.input_ids[p].item() for p in names.token_positions(1)]
    motorbike = [override.input_ids[p].item() for p in override.token_positions(1)]
    assert tokenizer.convert_ids_to_tokens(motorcycle) == ["motor", "##cycle"]
    assert tokenizer.convert_ids_to_tokens(motorbike) == ["motor", "##bike"]
    assert len(names.token_positions(2)) == 2  # "traffic light"


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (["person", "motorcycle"], "2 prompts for 3 classes"),
        (["person", "motor. cycle", "light"], "contains one of"),
        (["person", "Light", "light"], "share the prompt 'light'"),
        (["person", " ", "light"], "prompt of class 'motorcycle' is empty"),
    ],
)
def test_invalid_prompts_are_rejected(tokenizer, prompts, message):
    with pytest.raises(ValueError, match=message):
        tokenize_class_prompts(tokenizer, CLASSES, prompts, max_tokens=32)


def test_a_prompt_longer_than_the_detector_text_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="10 tokens long, more than the detector's 8"):
        tokenize_class_prompts(tokenizer, CLASSES, max_tokens=8)


def test_class_scores_are_the_mean_token_probability(tokenizer):
    prompts = tokenize_class_prompts(tokenizer, CLASSES, max_tokens=32)
    num_tokens = prompts.num_tokens
    logits = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    logits[..., num_tokens:] = float("-inf")  # the detector pads to its maximum text length
    scores = class_scores_from_token_logits(logits, prompts.token_classes)
    assert scores.shape == (2, 5, 3)
    for c in range(3):
        positions = prompts.token_positions(c)
        expected = torch.stack([logits[..., t].sigmoid() for t in positions]).mean(dim=0)
        torch.testing.assert_close(scores[..., c], expected)


# 14 prompts in the tiny vocabulary: "[CLS] … [SEP]" of all of them is 36 tokens, more than the
# tiny detector's 32.
MANY = ["person", "rider", "car", "motor", "bi", "traffic", "light", "bus"] + [
    "person rider",
    "car bus",
    "traffic light",
    "motor bi",
    "rider car",
    "bus light",
]


def test_a_long_prompt_is_split_into_chunks_of_consecutive_classes(tokenizer):
    names = [p.replace(" ", "_") for p in MANY]
    assert len(tokenizer(prompt_text(MANY))["input_ids"]) == 36
    chunks = chunk_class_prompts(tokenizer, names, max_tokens=32)
    assert len(chunks) == 2
    assert [n for chunk in chunks for n in chunk.class_names] == names
    for chunk in chunks:
        assert chunk.input_ids.tolist() == tokenizer(chunk.text)["input_ids"]
        assert chunk.num_tokens <= 32
    assert chunk_class_prompts(tokenizer, CLASSES, max_tokens=32)[0].text == prompt_text(
        ["person", "motorcycle", "traffic light"]
    )
    with pytest.raises(ValueError, match="'motorcycle' of class 'motorcycle' alone is 5"):
        chunk_class_prompts(tokenizer, CLASSES, max_tokens=4)
