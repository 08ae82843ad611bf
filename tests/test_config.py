"""The typed experiment config: paper defaults, error messages, overrides, shipped YAML files."""

from __future__ import annotations

import dataclasses
import re

import pytest

from castseg.config import (
    BUILTIN_CONFIG_DIR,
    ConfigError,
    ContrastiveConfig,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    StudentConfig,
    TeacherConfig,
    apply_overrides,
    builtin_config,
    builtin_config_names,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)


def minimal() -> ExperimentConfig:
    return config_from_dict({"data": {"labeled_annotations": "train.json"}})


def write(tmp_path, text: str):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_papers():
    teacher, student, loss = TeacherConfig(), StudentConfig(), LossConfig()
    # Table 8, teacher column, and appendix D
    assert (teacher.lr, teacher.weight_decay, teacher.batch_size) == (5e-5, 0.01, 4)
    assert teacher.milestones == (0.9, 0.95) and teacher.betas == (0.9, 0.999)
    assert (teacher.finetune_iters, teacher.selftrain_iters) == (1000, 5000)
    # Table 8, student column, and appendix D
    assert (student.lr_encoder, student.lr_decoder) == (5e-6, 5e-5)
    assert (student.poly_power, student.batch_size, student.weight_decay) == (0.9, 8, 0.05)
    assert (student.dropout, student.grad_clip, student.betas) == (0.1, 0.1, (0.9, 0.999))
    assert (student.distill_iters, student.refine_iters) == (90000, 2000)
    # Table 8 loss rows and Table 4 (lambda_pxl, T, negatives)
    assert (loss.mask_weight, loss.class_weight, loss.lambda_pxl) == (5.0, 2.0, 0.2)
    assert (loss.pseudo_label_threshold, loss.lambda_semi) == (0.3, 1.0)
    contrastive = ContrastiveConfig()
    assert (contrastive.temperature, contrastive.num_negatives) == (0.2, 256)
    assert minimal().data.image_size == (518, 1036)


def test_yaml_values_are_typed(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            "data: {labeled_annotations: a.json, split: 10, image_size: [70, 98]}\n"
            "student: {lr_encoder: 1e-4, distill_iters: 50}\n"
            "teacher: {lr: 1, milestones: [0.5]}\n"
            "run: {devices: 2}\n",
        )
    )
    assert cfg.student.lr_encoder == 1e-4  # plain PyYAML would read 1e-4 as a string
    assert cfg.teacher.lr == 1.0 and isinstance(cfg.teacher.lr, float)
    assert cfg.data.split == 10 and isinstance(cfg.data.split, int)
    assert cfg.data.image_size == (70, 98) and cfg.teacher.milestones == (0.5,)
    assert cfg.run.devices == 2 and cfg.student.distill_iters == 50
    assert cfg.student.lr_decoder == 5e-5  # untouched keys keep defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.student.lr_encoder = 1.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"student": {"lrr": 1}}, r"unknown key 'student\.lrr' \(known: size, encoder, "),
        ({"studnet": {}}, r"unknown key 'studnet' \(known: data, teacher, "),
        ({"student": {"lr_encoder": "abc"}}, r"student\.lr_encoder: expected float, got str 'abc'"),
        ({"student": {"batch_size": 2.5}}, r"student\.batch_size: expected int, got float 2\.5"),
        ({"student": {"batch_size": True}}, r"student\.batch_size: expected int, got bool"),
        ({"contrastive": {"mode": "fused"}}, r"contrastive\.mode: expected one of 'fusion', "),
        ({"run": {"devices": "all"}}, r"run\.devices: expected int or 'auto', got str 'all'"),
        ({"data": {"image_size": [1, 2, 3]}}, r"data\.image_size: expected a list of 2 int"),
        (
            {"teacher": {"milestones": [0.95, 0.9]}},
            r"teacher\.milestones: expected increasing entries",
        ),
        ({"loss": {"lambda_pxl": -0.1}}, r"loss\.lambda_pxl: expected a value >= 0, got -0\.1"),
        ({"data": {"split": 1.5}}, r"data\.split: expected a fraction in \(0, 1\)"),
        # the splitter's range: a fraction of 1.0 would leave no unlabeled image
        ({"data": {"split": 1.0}}, r"data\.split: expected a fraction in \(0, 1\) or a count"),
        ({"student": [1, 2]}, r"student: expected a mapping with keys size, "),
    ],
)
def test_errors_name_the_key_path(raw, message):
    data = {"labeled_annotations": "a.json", **raw.pop("data", {})}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": data, **raw})


def test_missing_required_key_and_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing key 'data\.labeled_annotations'"):
        config_from_dict({"data": {}})
    bad = write(tmp_path, "data: {labeled_annotations: a.json}\nstudent: {lrr: 1}\n")
    with pytest.raises(ConfigError, match=r"experiment\.yaml: unknown key 'student\.lrr'"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"experiment\.yaml: invalid YAML"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_overrides():
    cfg = apply_overrides(
        minimal(),
        [
            "student.lr_decoder=1e-4",
            "contrastive.margin=0.2",
            "run.devices=auto",
            "data.image_size=[32, 48]",
            "student.encoder=facebook/dinov2-small",
            "loss={lambda_pxl: 0.5}",
        ],
    )
    assert cfg.student.lr_decoder == 1e-4 and cfg.contrastive.margin == 0.2
    assert cfg.data.image_size == (32, 48) and cfg.student.encoder == "facebook/dinov2-small"
    assert cfg.loss.lambda_pxl == 0.5 and cfg.loss.mask_weight == 5.0  # sections merge
    assert apply_overrides(cfg, ["contrastive.margin=null"]).contrastive.margin is None
    with pytest.raises(ConfigError, match=r"student\.lr_decoder: expected float, got str 'x'"):
        apply_overrides(cfg, ["student.lr_decoder=x"])
    with pytest.raises(ConfigError, match=r"unknown key 'student\.lrr'"):
        apply_overrides(cfg, ["student.lrr=1"])
    with pytest.raises(ConfigError, match=r"'student\.lr_decoder' is a value, not a section"):
        apply_overrides(cfg, ["student.lr_decoder.x=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(cfg, ["student.lr_decoder"])


def test_overrides_mend_what_the_file_gets_wrong_and_errors_name_their_source(tmp_path):
    path = write(
        tmp_path,
        "data: {labeled_annotations: a.json, image_size: [120, 120]}\n"
        "student: {lr_decoder: fast}\n",
    )
    mended = ["data.image_size=[112,112]", "student.lr_decoder=1e-4"]
    cfg = load_config(path, mended)  # the file alone is refused on both keys
    assert cfg.data.image_size == (112, 112) and cfg.student.lr_decoder == 1e-4
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: data\.image_size: \[120, "):
        load_config(path, mended[1:])  # the file's value, named by the file
    bad = "data.image_size=[126,130]"
    with pytest.raises(ConfigError, match=rf"^--set {re.escape(bad)}: data\.image_size: \[126, "):
        load_config(path, [*mended, bad])  # the last --set of the key introduced it
    kind = "teacher.kind=student_family"
    with pytest.raises(ConfigError, match=rf"^--set {kind}: teacher\.checkpoint: kind "):
        load_config(path, [*mended, kind])  # the --set that made the checkpoint necessary
    with pytest.raises(ConfigError, match=r"^--set loss={lambda_pxl: -1}: loss\.lambda_pxl: "):
        load_config(path, [*mended, "loss={lambda_pxl: -1}"])  # a section set whole


def test_teacher_contrastive_takes_the_keys_it_leaves_out_from_the_top_level_section(tmp_path):
    cfg = apply_overrides(minimal(), ["contrastive.num_negatives=64", "contrastive.mode=uniform"])
    assert cfg.teacher.contrastive is None and cfg.teacher_contrastive is cfg.contrastive
    own = apply_overrides(cfg, ["teacher.contrastive.mode=mask_only"])  # a null section is set
    assert own.teacher_contrastive == ContrastiveConfig(num_negatives=64, mode="mask_only")
    assert own.contrastive == ContrastiveConfig(num_negatives=64, mode="uniform")
    # {} pins stage 1 to the current settings; the top-level section then varies alone.
    pinned = apply_overrides(cfg, ["teacher.contrastive={}"])
    assert pinned.teacher_contrastive == cfg.contrastive
    varied = apply_overrides(pinned, ["contrastive.mode=fusion", "contrastive.score=sqrt"])
    assert varied.teacher_contrastive == cfg.contrastive
    assert (varied.contrastive.mode, varied.contrastive.score) == ("fusion", "sqrt")
    written = load_config(
        write(
            tmp_path,
            "data: {labeled_annotations: a.json}\n"
            "contrastive: {temperature: 0.1, memory_bank: 32}\n"
            "teacher: {contrastive: {memory_bank: 0}}\n",
        )
    )
    assert written.teacher_contrastive == ContrastiveConfig(temperature=0.1, memory_bank=0)
    save_config(written, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == written
    with pytest.raises(ConfigError, match=r"unknown key 'teacher\.contrastive\.modes'"):
        apply_overrides(cfg, ["teacher.contrastive.modes=uniform"])
    with pytest.raises(ConfigError, match=r"teacher\.contrastive\.mode: expected one of "):
        apply_overrides(cfg, ["teacher.contrastive={mode: fused}"])


def test_save_load_round_trip(tmp_path):
    cfg = apply_overrides(minimal(), ["data.split=0.1", "run.seed=3", "student.size=tiny"])
    path = tmp_path / "out" / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert config_to_dict(cfg)["data"]["image_size"] == [518, 1036]
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", builtin_config_names())
def test_shipped_configs_load(name):
    cfg = load_config(builtin_config(name))
    assert isinstance(cfg.data, DataConfig)


def test_builtin_configs():
    assert {"demo", "custom_coco"} <= set(builtin_config_names())
    assert builtin_config("demo.yaml") == builtin_config("demo")
    demo = load_config(builtin_config("demo"))
    assert demo.data.image_size == (112, 112) and demo.teacher.kind == "student_family"
    paper = load_config(builtin_config("custom_coco"))
    assert paper.student == StudentConfig()
    assert paper.teacher == TeacherConfig()
    with pytest.raises(ConfigError, match=r"no built-in config 'nope' \(available: "):
        builtin_config("nope")


@pytest.mark.parametrize(
    ("name", "distill_iters"),
    [
        ("cityscapes_5pct", 90000),
        ("cityscapes_10pct", 90000),
        ("cityscapes_30pct", 90000),
        ("ade20k", 80000),
    ],
)
def test_paper_configs_hold_the_papers_settings(name, distill_iters):
    cfg = load_config(builtin_config(name))
    assert cfg.teacher.kind == "grounded_sam2"
    assert (cfg.teacher.finetune_iters, cfg.teacher.selftrain_iters) == (1000, 5000)
    assert (cfg.teacher.lr, cfg.teacher.batch_size, cfg.teacher.weight_decay) == (5e-5, 4, 0.01)
    assert cfg.student.size == "paper" and cfg.student.batch_size == 8
    assert (cfg.student.distill_iters, cfg.student.refine_iters) == (distill_iters, 2000)
    assert (cfg.student.lr_encoder, cfg.student.lr_decoder) == (5e-6, 5e-5)
    assert (cfg.loss.lambda_pxl, cfg.contrastive.temperature, cfg.contrastive.num_negatives) == (
        0.2,
        0.2,
        256,
    )
    assert all(v % 14 == 0 for v in cfg.data.image_size)
    if name.startswith("cityscapes"):
        percent = name.removeprefix("cityscapes_").removesuffix("pct")
        assert f"cityscapes_{percent}pct_seed0" in cfg.data.labeled_ids
    overridden = load_config(builtin_config(name), ["student.lr_decoder=1e-4"])
    assert overridden.student.lr_decoder == 1e-4


def test_configs_readme_lists_every_shipped_config():
    readme = (BUILTIN_CONFIG_DIR / "README.md").read_text()
    for name in builtin_config_names():
        assert f"`{name}.yaml`" in readme
