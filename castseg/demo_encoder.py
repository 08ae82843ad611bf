"""The demo student's stand-in for DINOv2 pretraining: a tiny encoder trained on the source domain.

The paper's student starts from DINOv2, pretrained on images whose target-domain labels it never
saw. The demo's stand-in is the encoder of a `tiny` castseg model trained with L_sup on the
synthetic *source* domain only (never on a target image), saved as a transformers DINOv2 folder
(`save_pretrained` layout: config.json with model_type "dinov2", a `Dinov2Model`'s weights and a
`BitImageProcessor` preprocessor_config.json, as in the hub's facebook/dinov2-small), so
`student.encoder: PATH` loads it by the code path that loads `facebook/dinov2-small`. The CAST
student and the supervised-only baseline both start from it. A copy made by
`scripts/make_demo_encoder.py` ships in castseg/assets/demo_encoder/; when the recipe or the
world differ from the shipped one, the demo pretrains it on first use and caches it in its run
folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

from castseg.config import ExperimentConfig
from castseg.data.synthetic import WorldSpec
from castseg.demo_teacher import TeacherRecipe, pretrain_stand_in
from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.student import Student
from castseg.training.trainer import discard_resume_files

ENCODER_STAGE = "encoder_source_pretrain"
ENCODER_FOLDER = "demo_encoder"
FINGERPRINT_FILE = "castseg_fingerprint.json"
SHIPPED_ENCODER = Path(__file__).parent / "assets" / ENCODER_FOLDER

# Keys `DinoEncoder` adds to turn a Dinov2Config into a Dinov2Backbone's; not in a hub config.
_BACKBONE_KEYS = ("out_features", "out_indices", "stage_names", "reshape_hidden_states")


def encoder_recipe() -> TeacherRecipe:
    """The stand-in encoder's pretraining: a `tiny` model, 1200 steps of batch 8, seed 0."""
    return TeacherRecipe(size="tiny", steps=1200, batch_size=8, seed=0)


def save_dinov2_folder(
    student: Student, folder: Path, image_size: int, fingerprint: dict | None = None
) -> Path:
    """Write `student`'s encoder as a transformers DINOv2 folder (see module doc), atomically.

    image_size: the side of the square images the encoder was trained on (the processor's
    resize and crop). fingerprint: written to castseg_fingerprint.json beside the weights.
    """
    settings = student.encoder.backbone.config.to_dict()
    for key in _BACKBONE_KEYS:
        settings.pop(key, None)
    settings["architectures"] = ["Dinov2Model"]
    model = Dinov2Model(Dinov2Config.from_dict(settings))
    model.load_state_dict(student.encoder.backbone.state_dict())
    processor = BitImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        resample=3,
    )
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if fingerprint is not None:
            (tmp / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def folder_fingerprint(folder: Path) -> dict | None:
    """The fingerprint saved in a DINOv2 folder by `save_dinov2_folder`; None without one."""
    try:
        return json.loads((Path(folder) / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None


def stand_in_encoder(
    recipe: TeacherRecipe,
    world_spec: WorldSpec,
    world: dict[str, Path],
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    progress: bool = True,
) -> Path:
    """The run folder's cached encoder folder, else the shipped one, else a freshly pretrained
    one (cached in out_dir/demo_encoder)."""
    fingerprint = recipe.fingerprint(world_spec)
    cache = out_dir / ENCODER_FOLDER
    for path, where in ((cache, "cached in"), (SHIPPED_ENCODER, "shipped as")):
        if folder_fingerprint(path) == fingerprint:
            print(f"Using the pretrained stand-in encoder {where} {path}")
            return path
    print(
        f"Pretraining the stand-in encoder on {recipe.split} ({recipe.steps} steps); "
        f"it is cached in {cache} for the next run"
    )
    return pretrain_encoder(recipe, world_spec, world, cfg, out_dir, progress=progress)


def pretrain_encoder(
    recipe: TeacherRecipe,
    world_spec: WorldSpec,
    world: dict[str, Path],
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    progress: bool = True,
) -> Path:
    """Pretrain the encoder by `recipe` on the source domain into out_dir/demo_encoder."""
    model = pretrain_stand_in(
        recipe, world[recipe.split], cfg, out_dir, stage=ENCODER_STAGE, progress=progress
    )
    folder = save_dinov2_folder(
        model, out_dir / ENCODER_FOLDER, world_spec.image_size[0], recipe.fingerprint(world_spec)
    )
    discard_resume_files(out_dir, ENCODER_STAGE)  # the saved folder supersedes them
    return folder
