import pytest
import torch

from castseg.models.registry import ARCHITECTURES, build_model
from castseg.models.student import Student, build_student


def test_student_rebuilds_from_its_config_dict():
    torch.manual_seed(0)
    student = build_student("tiny", 3).eval()
    rebuilt = build_model(student.config_dict())
    assert isinstance(rebuilt, Student)
    rebuilt.load_state_dict(student.state_dict())
    images = torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        expected = student(images).class_logits
        torch.testing.assert_close(rebuilt.eval()(images).class_logits, expected)


def test_explicit_student_architecture_and_unknown_name():
    args = {**build_student("tiny", 2).config_dict(), "architecture": "student"}
    assert isinstance(build_model(args), Student)
    with pytest.raises(ValueError, match="unknown architecture 'nope'.*student"):
        build_model({"architecture": "nope"})
    assert set(ARCHITECTURES) >= {"student", "grounded_sam2", "hf_universal", "ensemble"}
