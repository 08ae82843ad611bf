"""`castseg eval`: a malformed results file or a model file of another program is a one-line
error naming it. (Checkpoints and ONNX files are scored in test_export.py, a config's teacher in
test_eval_teacher.py.)"""

from __future__ import annotations

import argparse
import json

import torch

from castseg.cli import main


def test_a_results_file_that_is_not_a_list_is_named(tmp_path, capsys) -> None:
    gt = tmp_path / "gt.json"
    image = {"id": 1, "file_name": "a.png", "height": 4, "width": 4}
    gt.write_text(
        json.dumps({"images": [image], "annotations": [], "categories": [{"id": 1, "name": "a"}]})
    )
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"annotations": []}))
    assert main(["eval", "--results", str(results), "--annotations", str(gt)]) == 2
    assert capsys.readouterr().err == (
        f"castseg eval: error: {results}: COCO results must be a JSON list of records\n"
    )


def test_a_torch_file_of_another_program_is_one_line(tmp_path, capsys) -> None:
    # A Lightning last.ckpt pickles Python objects, which torch.load(weights_only=True) refuses
    # with a page of advice; the user gets one line.
    other = tmp_path / "last.ckpt"
    torch.save({"hparams": argparse.Namespace(lr=0.1)}, other)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert main(["eval", str(other), "--annotations", str(gt)]) == 2
    assert capsys.readouterr().err == (
        f"castseg eval: error: {other} is not a castseg checkpoint: it holds Python objects "
        "besides tensors (a Lightning last.ckpt, or another program's file)\n"
    )
