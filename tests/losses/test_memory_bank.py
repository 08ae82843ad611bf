"""The embedding memory bank: FIFO contents, and L_pxl over batch ∪ bank against brute force."""

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from castseg.losses.contrastive import pixel_contrastive_loss, sample_negatives, sampling_monitors
from castseg.losses.contrastive.memory_bank import EmbeddingMemoryBank


def rows(start: int, count: int, dim: int = 3) -> torch.Tensor:
    """[1, count, dim] embeddings whose first entry identifies them (start, start+1, ...)."""
    z = torch.zeros(1, count, dim)
    z[0, :, 0] = torch.arange(start, start + count, dtype=torch.float32)
    z[0, :, 1] = 1.0
    return z


def first_entries(bank: EmbeddingMemoryBank) -> list[int]:
    """The identifying entry of each stored key, oldest first (keys are normalised)."""
    keys = bank.keys
    return torch.round(keys[:, 0] / keys[:, 1]).long().tolist()


def test_push_keeps_the_last_rows_first_in_first_out() -> None:
    bank = EmbeddingMemoryBank(5, 3)
    assert len(bank) == 0 and bank.keys.shape == (0, 3)
    gen = torch.Generator().manual_seed(0)
    bank.push(rows(0, 3), torch.ones(1, 3, 4), generator=gen)
    assert len(bank) == 3 and sorted(first_entries(bank)) == [0, 1, 2]
    bank.push(rows(3, 4), torch.ones(1, 4, 4), generator=gen)
    entries = first_entries(bank)
    assert len(bank) == 5
    # Rows 0-2 went in first; two of them were overwritten by the last of rows 3-6.
    assert sorted(entries[-4:]) == [3, 4, 5, 6]
    assert entries[0] in (0, 1, 2)
    bank.push(rows(7, 5), torch.ones(1, 5, 4), generator=gen)
    assert sorted(first_entries(bank)) == [7, 8, 9, 10, 11]
    torch.testing.assert_close(bank.keys.norm(dim=1), torch.ones(5))
    assert bank.probs.shape == (5, 4)


def test_push_stores_only_valid_rows_with_their_probabilities() -> None:
    bank = EmbeddingMemoryBank(10, 3)
    z = rows(0, 6).reshape(2, 3, 3)
    y = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    valid = torch.tensor([[True, False, True], [False, False, True]])
    bank.push(z, y, valid)
    entries = first_entries(bank)
    assert sorted(entries) == [0, 2, 5]
    for entry, probs in zip(entries, bank.probs, strict=True):
        assert probs.tolist() == [2.0 * entry, 2.0 * entry + 1]


def test_more_rows_than_the_bank_keep_a_random_subset_and_per_step_caps_a_push() -> None:
    bank = EmbeddingMemoryBank(4, 3)
    bank.push(rows(0, 20), torch.ones(1, 20, 2), generator=torch.Generator().manual_seed(0))
    kept = first_entries(bank)
    assert len(set(kept)) == 4 and kept != [16, 17, 18, 19]
    capped = EmbeddingMemoryBank(10, 3, per_step=2)
    capped.push(rows(0, 6), torch.ones(1, 6, 2))
    capped.push(rows(6, 6), torch.ones(1, 6, 2))
    entries = first_entries(capped)
    assert len(entries) == 4
    assert all(e < 6 for e in entries[:2]) and all(e >= 6 for e in entries[2:])


def test_push_detaches_and_the_bank_rejects_other_shapes() -> None:
    bank = EmbeddingMemoryBank(4, 3)
    z = torch.randn(1, 2, 3, requires_grad=True)
    bank.push(z, torch.ones(1, 2, 5))
    assert not bank.keys.requires_grad
    with pytest.raises(ValueError, match="E = 5: one bank serves one model"):
        bank.push(z, torch.ones(1, 2, 6))
    with pytest.raises(ValueError, match=r"D = 3 \(the bank's dim\)"):
        bank.push(torch.randn(1, 2, 4), torch.ones(1, 2, 5))
    with pytest.raises(ValueError, match="size must be >= 1"):
        EmbeddingMemoryBank(0, 3)


def test_push_leaves_out_non_finite_rows() -> None:
    bank = EmbeddingMemoryBank(10, 3)
    z = rows(0, 4)
    z[0, 1, 2] = float("nan")
    y = torch.ones(1, 4, 2)
    y[0, 3, 0] = float("inf")
    bank.push(z, y)
    assert sorted(first_entries(bank)) == [0, 2]


def test_state_dict_restores_the_contents_and_the_fifo_order() -> None:
    bank = EmbeddingMemoryBank(4, 3, per_step=3)
    gen = torch.Generator().manual_seed(0)
    for start in (0, 3, 6):
        bank.push(rows(start, 3), torch.rand(1, 3, 2, generator=gen), generator=gen)
    restored = EmbeddingMemoryBank.from_state_dict(bank.state_dict())
    assert torch.equal(restored.keys, bank.keys) and torch.equal(restored.probs, bank.probs)
    assert restored.per_step == 3
    for each in (bank, restored):
        each.push(rows(9, 2), torch.ones(1, 2, 2), generator=torch.Generator().manual_seed(1))
    assert first_entries(restored) == first_entries(bank)
    assert sorted(first_entries(bank)[-2:]) == [9, 10]
    empty = EmbeddingMemoryBank.from_state_dict(EmbeddingMemoryBank(4, 3).state_dict())
    assert len(empty) == 0


def make_batch(seed: int = 0, batch: int = 2, pixels: int = 5, dim: int = 4, dims: int = 6):
    g = torch.Generator().manual_seed(seed)
    z_weak = torch.randn(batch, pixels, dim, generator=g, dtype=torch.float64)
    z_strong = torch.randn(batch, pixels, dim, generator=g, dtype=torch.float64)
    y = F.normalize(torch.rand(batch, pixels, dims, generator=g) ** 3, dim=-1)
    valid = torch.rand(batch, pixels, generator=g) > 0.3
    return z_weak, z_strong, y, valid


def filled_bank(seed: int, count: int, dim: int = 4, dims: int = 6) -> EmbeddingMemoryBank:
    g = torch.Generator().manual_seed(seed)
    bank = EmbeddingMemoryBank(count, dim)
    z = torch.randn(1, count, dim, generator=g)
    y = F.normalize(torch.rand(1, count, dims, generator=g) ** 3, dim=-1)
    bank.push(z, y)
    return bank


def brute_force_loss(z_weak, z_strong, bank, negatives, temperature, valid) -> float:
    """Mean over valid anchors of −log e^{s⁺} / (e^{s⁺} + Σ_r e^{s⁻_r}), keys = batch ∪ bank."""
    batch, pixels, dim = z_weak.shape
    keys = [z_strong[b, p] / z_strong[b, p].norm() for b in range(batch) for p in range(pixels)]
    keys += [row.double() for row in bank.keys]
    losses = []
    for b in range(batch):
        for p in range(pixels):
            if not valid[b, p]:
                continue
            anchor = z_weak[b, p] / z_weak[b, p].norm()
            s_pos = float(anchor @ keys[b * pixels + p]) / temperature
            s_neg = [float(anchor @ keys[q]) / temperature for q in negatives[b * pixels + p]]
            denom = math.exp(s_pos) + sum(math.exp(s) for s in s_neg)
            losses.append(-math.log(math.exp(s_pos) / denom))
    return sum(losses) / len(losses)


def test_loss_over_batch_and_bank_equals_brute_force() -> None:
    z_weak, z_strong, y, valid = make_batch()
    z_weak.requires_grad_(True)
    bank = filled_bank(1, 7)
    banked = bank.extend(z_weak, z_strong, y, valid)
    assert banked.z_strong.shape == (1, 10 + 7, 4) and banked.bank_rows == 7
    assert not banked.valid[0, 10:].any()
    negatives = sample_negatives(banked.y_tilde, 8, generator=torch.Generator().manual_seed(2))
    assert int(negatives.max()) < 17
    assert (negatives[0, :10] >= 10).any(), "no negative came from the bank"
    loss = pixel_contrastive_loss(
        banked.z_weak, banked.z_strong, negatives, 0.3, valid=banked.valid
    )
    expected = brute_force_loss(z_weak.detach(), z_strong, bank, negatives[0], 0.3, valid)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert z_weak.grad is not None and z_weak.grad[valid].abs().sum() > 0


def test_negatives_are_drawn_over_batch_and_bank_by_the_debiased_score() -> None:
    _, _, y, _ = make_batch(seed=3, pixels=4)
    bank = filled_bank(4, 6)
    banked = bank.extend(*make_batch(seed=3, pixels=4)[:2], y)
    draws = sample_negatives(banked.y_tilde, 20_000, generator=torch.Generator().manual_seed(5))
    candidates = torch.cat([y.reshape(8, -1).double(), bank.probs.double()])  # [8 + 6, E]
    for anchor in (0, 6):
        scores = (1.0 - candidates @ candidates[anchor]).clamp(0.0, 1.0)
        scores[anchor] = 0.0
        counts = torch.bincount(draws[0, anchor], minlength=14).double()
        assert counts[anchor] == 0
        support = scores > 0
        expected = scores[support] / scores.sum() * counts.sum()
        assert chisquare(counts[support].numpy(), expected.numpy()).pvalue > 1e-3
        assert counts[8:].sum() > 0


def test_an_empty_bank_leaves_the_batch_as_it_is() -> None:
    z_weak, z_strong, y, valid = make_batch()
    banked = EmbeddingMemoryBank(5, 4).extend(z_weak, z_strong, y, valid)
    assert banked.bank_rows == 0
    assert torch.equal(banked.z_strong[0], z_strong.reshape(10, 4))
    assert torch.equal(banked.valid[0], valid.reshape(-1))


def test_monitors_count_bank_negatives_as_true_negatives() -> None:
    z_weak, z_strong, y, _ = make_batch(seed=6)
    bank = filled_bank(7, 5)
    banked = bank.extend(z_weak, z_strong, y)
    # Two images with the same per-image instance ids: only same-image regions may collide.
    per_image = torch.tensor([[0, 1, 1, 2, -1], [0, 1, 1, 2, 2]])
    ids = banked.instance_ids(per_image)
    assert ids.shape == (1, 15) and (ids[0, 10:] == -1).all()
    # R ≤ B·N + S: gathered_dot needs no more negatives per anchor than there are keys.
    negatives = sample_negatives(banked.y_tilde, 12, generator=torch.Generator().manual_seed(8))
    monitors = sampling_monitors(ids, negatives, banked.z_weak, banked.z_strong, banked.valid)
    same = total = 0
    for anchor in range(10):
        b, p = divmod(anchor, 5)
        if per_image[b, p] < 0:
            continue
        for q in negatives[0, anchor].tolist():
            total += 1
            if q < 10 and q // 5 == b and per_image[b, q % 5] == per_image[b, p]:
                same += 1
    assert monitors["fnr"] == pytest.approx(same / total)
