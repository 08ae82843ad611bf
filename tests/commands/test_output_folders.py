"""Every command that writes a folder refuses a path that is a file (or lies inside one) with a
one-line error and exit code 2, before it reads any data or builds any model."""

from __future__ import annotations

import pytest

from castseg.cli import main


@pytest.mark.parametrize("inside", [False, True], ids=["file", "inside a file"])
def test_a_file_where_a_folder_goes_is_refused_first(
    inside, tiny_experiment, synthetic_world, tmp_path, capsys
):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = a_file / "sub" if inside else a_file
    where = f"is inside {a_file}, which is" if inside else "is"
    config = str(tiny_experiment[0])
    vary = ["--vary", "student.lr_decoder=1e-4,2e-4", "--seeds", "0", "--no-progress"]
    cases = {
        "--out": [
            ["split", str(synthetic_world["target_train"]), "--labeled", "0.5", "--out", str(out)],
            # the check comes before the dataset root is read (it does not exist here)
            ["convert", "ade20k", str(tmp_path / "no_root"), "--out", str(out), "--no-progress"],
        ],
        "run.out_dir": [["ablate", config, *vary, "--set", f"run.out_dir={out}"]],
        "run.stage_store": [["ablate", config, *vary, "--set", f"run.stage_store={out}"]],
    }
    for what, commands in cases.items():
        for args in commands:
            assert main(args) == 2, args
            error = capsys.readouterr().err
            expected = f"castseg {args[0]}: error: {what} {out} {where} a file; expected a folder\n"
            assert error == expected, args
    assert not (tmp_path / "run").exists()  # the ablation's base folder was never made
