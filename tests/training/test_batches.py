"""Step-indexed training batches: the batch of a step does not depend on where the stage started
or on the loader's workers, and every rank and stream draws its own samples."""

import torch
from torch.utils.data import Dataset

from castseg.data.samples import Sample
from castseg.data.views import WeakView
from castseg.structures import Instances
from castseg.training.batches import StepSamples, step_loader, step_seed

NUM_IMAGES = 4


class Flat(Dataset[Sample]):
    """Image i is the constant (i + 1) / 10 with one square instance of class i."""

    def __len__(self) -> int:
        return NUM_IMAGES

    def __getitem__(self, i: int) -> Sample:
        masks = torch.zeros(1, 40, 48, dtype=torch.bool)
        masks[0, 5 + i : 25 + i, 10:30] = True
        image = torch.full((3, 40, 48), (i + 1) / 10)
        return Sample(image, Instances(masks, torch.tensor([i])), image_id=i, file_name=f"{i}.png")


def batches(start: int, steps: int, *, rank: int = 0, stream: str = "labeled", workers: int = 0):
    samples = StepSamples(Flat(), WeakView((32, 32)), seed=0, stream=stream, rank=rank)
    loader = step_loader(samples, start=start, steps=steps, batch_size=3, num_workers=workers)
    return loader, list(loader)


def drawn_images(batch_list) -> list[int]:
    """Which image each sample is: its largest pixel value (padding is 0)."""
    return [round(float(img.max()) * 10) - 1 for b in batch_list for img in b.images]


def same(a, b) -> bool:
    return torch.equal(a.images, b.images) and all(
        torch.equal(x.masks, y.masks) and torch.equal(x.labels, y.labels)
        for x, y in zip(a.targets, b.targets, strict=True)
    )


def test_a_stage_resumed_at_a_step_draws_what_an_uninterrupted_one_draws():
    _, full = batches(0, 6)
    loader, resumed = batches(4, 6)
    assert len(full) == 6 and len(resumed) == 2
    assert len(loader) == 6  # Lightning counts a resumed stage's batches from its start
    assert all(same(a, b) for a, b in zip(full[4:], resumed, strict=True))
    # The weak views really are random: not every sample of an image looks the same.
    assert not all(same(full[0], b) for b in full[1:])


def test_loader_workers_do_not_change_the_batches():
    _, alone = batches(0, 3)
    _, with_workers = batches(0, 3, workers=2)
    assert all(same(a, b) for a, b in zip(alone, with_workers, strict=True))


def test_ranks_and_streams_draw_their_own_samples():
    _, rank0 = batches(0, 4)
    _, rank1 = batches(0, 4, rank=1)
    _, other_stream = batches(0, 4, stream="unlabeled")
    assert not any(same(a, b) for a, b in zip(rank0, rank1, strict=True))
    assert not any(same(a, b) for a, b in zip(rank0, other_stream, strict=True))


def test_images_are_drawn_uniformly_with_replacement():
    _, drawn = batches(0, 80)
    counts = torch.bincount(torch.tensor(drawn_images(drawn)), minlength=NUM_IMAGES)
    # 240 draws, 60 expected per image; a binomial's 5 standard deviations are ±34.
    assert counts.sum() == 240 and all(26 <= int(c) <= 94 for c in counts), counts
    # Each view carries its own image's instance (class i for image i) unless cropped away.
    targets = [t for b in drawn for t in b.targets]
    kept = [
        (int(t.labels[0]), i) for t, i in zip(targets, drawn_images(drawn), strict=True) if len(t)
    ]
    assert len(kept) > 120 and all(label == image for label, image in kept)


def test_step_seed_is_stable_and_separates_its_parts():
    seed = step_seed(0, "labeled", 0, 5)
    assert seed == step_seed(0, "labeled", 0, 5)
    assert 0 <= seed < 2**63
    others = {
        step_seed(1, "labeled", 0, 5),
        step_seed(0, "unlabeled", 0, 5),
        step_seed(0, "labeled", 1, 5),
        step_seed(0, "labeled", 0, 6),
    }
    assert seed not in others and len(others) == 4
    assert len({step_seed(0, "module", 0, n) for n in range(10_000)}) == 10_000
