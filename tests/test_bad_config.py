"""The bad-config corpus: YAML files a user may write wrong, read through `load_config`.

Each case is the text of an experiment YAML file and the message its `ConfigError` must hold.
Every message starts with the file's path and names the offending key by its full path
(`section.key`), with the expected and the actual value where there is one.

| case                    | what is wrong                                   |
|-------------------------|-------------------------------------------------|
| unknown_section         | a top-level key that is not a section           |
| unknown_key             | a misspelt key inside a section                 |
| wrong_type_float        | a string where a float goes                     |
| wrong_type_int          | a float where an integer goes                   |
| bool_is_not_int         | true where an integer goes                      |
| wrong_list_length       | image_size with three entries                   |
| wrong_list_entry        | image_size with a string entry                  |
| out_of_range            | a negative learning rate                        |
| wrong_choice            | on_bad_record: ignore                           |
| section_not_mapping     | a section given as a plain value                |
| missing_required        | no data.labeled_annotations                     |
| top_level_not_mapping   | a YAML list instead of a mapping                |
| empty_file              | nothing at all                                  |
| invalid_yaml            | unbalanced brackets                             |
| off_patch_grid          | image_size not a multiple of the 14-pixel patch |
| student_family_no_ckpt  | kind student_family without teacher.checkpoint  |
| hf_universal_no_model   | kind hf_universal without teacher.model         |
| ensemble_one_member     | kind ensemble with a single member              |
| member_without_key      | an ensemble member student_family, no checkpoint|
"""

from __future__ import annotations

import re

import pytest

from castseg.config import ConfigError, load_config

DATA = "data:\n  labeled_annotations: train.json\n"

CASES = {
    "unknown_section": (DATA + "trainer:\n  lr: 0.1\n", "unknown key 'trainer' (known: data, "),
    "unknown_key": (DATA + "student:\n  lrr: 0.1\n", "unknown key 'student.lrr' (known: size,"),
    "wrong_type_float": (
        DATA + "student:\n  lr_decoder: fast\n",
        "student.lr_decoder: expected float, got str 'fast'",
    ),
    "wrong_type_int": (
        DATA + "student:\n  batch_size: 8.5\n",
        "student.batch_size: expected int, got float 8.5",
    ),
    "bool_is_not_int": (
        DATA + "run:\n  seed: true\n",
        "run.seed: expected int, got bool True",
    ),
    "wrong_list_length": (
        DATA + "  image_size: [518, 1036, 3]\n",
        "data.image_size: expected a list of 2 int, got list [518, 1036, 3]",
    ),
    "wrong_list_entry": (
        DATA + "  image_size: [518, wide]\n",
        "data.image_size[1]: expected int, got str 'wide'",
    ),
    "out_of_range": (
        DATA + "teacher:\n  lr: -1.0e-4\n",
        "teacher.lr: expected a value > 0, got -0.0001",
    ),
    "wrong_choice": (
        DATA + "  on_bad_record: ignore\n",
        "data.on_bad_record: expected one of 'error', 'skip', got str 'ignore'",
    ),
    "section_not_mapping": (
        DATA + "loss: 0.5\n",
        "loss: expected a mapping with keys class_weight, ",
    ),
    "missing_required": ("data:\n  image_root: images\n", "missing key 'data.labeled_annotations'"),
    "top_level_not_mapping": ("- data\n- student\n", "expected a mapping with keys data, "),
    "empty_file": ("", "expected a mapping with keys data, teacher, "),
    "invalid_yaml": (DATA + "student: {lr_decoder: [1e-4\n", "invalid YAML"),
    "off_patch_grid": (
        DATA + "  image_size: [250, 250]\n",
        "data.image_size: [250, 250] is not a multiple of the student's patch size 14; nearest "
        "valid sizes: [238, 238] or [252, 252]",
    ),
    "student_family_no_ckpt": (
        DATA + "teacher:\n  kind: student_family\n",
        "teacher.checkpoint: kind 'student_family' needs the path of a castseg checkpoint",
    ),
    "hf_universal_no_model": (
        DATA + "teacher:\n  kind: hf_universal\n",
        "teacher.model: kind 'hf_universal' needs a hub id or local folder",
    ),
    "ensemble_one_member": (
        DATA + "teacher:\n  kind: ensemble\n  members: [{kind: grounded_sam2}]\n",
        "teacher.members: kind 'ensemble' needs at least two members",
    ),
    "member_without_key": (
        DATA + "teacher:\n  kind: ensemble\n  members: [{}, {kind: student_family}]\n",
        "teacher.members[1].checkpoint: kind 'student_family' needs",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_names_the_file_and_the_key(tmp_path, case):
    text, message = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_the_corpus_is_valid_once_the_mistake_is_removed(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(DATA + "  on_bad_record: skip\n  image_size: [518, 1036]\n")
    cfg = load_config(path)
    assert cfg.data.on_bad_record == "skip" and cfg.data.image_size == (518, 1036)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path / 'nope.yaml'}")):
        load_config(tmp_path / "nope.yaml")
