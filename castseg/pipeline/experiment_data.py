"""The datasets of an experiment, resolved from the config: D_l, D_u and the validation set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castseg.config import DataConfig
from castseg.data.coco import CategoryMap, CocoInstanceDataset, UnlabeledImageDataset
from castseg.data.splits import read_id_list, split_labeled


@dataclass
class ExperimentData:
    """labeled: D_l; unlabeled: D_u (None when there is none); val: the evaluation set."""

    labeled: CocoInstanceDataset
    unlabeled: UnlabeledImageDataset | None
    val: CocoInstanceDataset | None

    @property
    def categories(self) -> CategoryMap:
        return self.labeled.categories

    @property
    def skipped_records(self) -> list[str]:
        """Every record the datasets dropped (see `castseg.data.validation`), one line each.

        Read it after training: images that failed to decode while loading are added as they
        are met, in any DataLoader worker.
        """
        datasets = (self.labeled, self.unlabeled, self.val)
        return [reason for d in datasets if d is not None for reason in d.skipped]

    def skipped_report(self) -> list[str]:
        """`skipped_records` under a heading line, as the console and the report list them;
        nothing when no record was skipped."""
        skipped = self.skipped_records
        if not skipped:
            return []
        heading = f"{len(skipped)} data records skipped (data.on_bad_record: skip):"
        return [heading, *(f"skipped: {reason}" for reason in skipped)]


def load_experiment_data(cfg: DataConfig, *, progress: bool = True) -> ExperimentData:
    """Build D_l, D_u and the validation set, checking every image and annotation they use.

    With `split`, the labeled annotations are divided into D_l and D_u (seeded by `split_seed`);
    otherwise `labeled_ids` may restrict D_l and `unlabeled` names D_u (a COCO json or an image
    folder, restricted by `unlabeled_ids`). `on_bad_record` says whether a broken record stops
    here with an error or is dropped with a warning; progress: progress bars for the checks.
    """

    def checks(role: str) -> dict[str, Any]:
        """Keyword arguments of each dataset: the policy, and a progress bar naming the set."""
        return {"on_bad_record": cfg.on_bad_record, "progress": role if progress else False}

    labeled_json = Path(cfg.labeled_annotations)
    unlabeled_ids = None
    if cfg.split is not None:
        if cfg.unlabeled is not None or cfg.labeled_ids is not None:
            raise ValueError(
                "data.split divides data.labeled_annotations itself: leave data.unlabeled and "
                "data.labeled_ids empty, or drop data.split"
            )
        labeled_ids, unlabeled_ids = split_labeled(labeled_json, cfg.split, seed=cfg.split_seed)
    elif cfg.labeled_ids is not None:
        labeled_ids = read_id_list(cfg.labeled_ids, labeled_json)
    else:
        labeled_ids = None
    labeled = CocoInstanceDataset(labeled_json, cfg.image_root, labeled_ids, **checks("labeled"))

    unlabeled = None
    if unlabeled_ids is not None:
        if unlabeled_ids:
            unlabeled = UnlabeledImageDataset(
                labeled_json, unlabeled_ids, cfg.image_root, **checks("unlabeled")
            )
    elif cfg.unlabeled is not None:
        source = Path(cfg.unlabeled)
        ids = None
        if cfg.unlabeled_ids is not None:
            ids = read_id_list(cfg.unlabeled_ids, source if source.suffix == ".json" else None)
        root = cfg.unlabeled_image_root if source.suffix == ".json" else None
        unlabeled = UnlabeledImageDataset(source, ids, root, **checks("unlabeled"))

    val = None
    if cfg.val_annotations is not None:
        val = CocoInstanceDataset(cfg.val_annotations, cfg.val_image_root, **checks("val"))
        if val.categories.names != labeled.categories.names:
            raise ValueError(
                f"{cfg.val_annotations} has categories {list(val.categories.names)} but "
                f"{labeled_json} has {list(labeled.categories.names)}"
            )
    return ExperimentData(labeled, unlabeled, val)
