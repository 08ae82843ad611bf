"""`castseg eval --results FILE`: a malformed results file is a one-line error naming it.
(Checkpoints and ONNX files are scored in test_export.py, a config's teacher in
test_eval_teacher.py.)"""

from __future__ import annotations

import json

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
