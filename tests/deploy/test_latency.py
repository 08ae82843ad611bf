"""Parameter counts against hand counts; the timing loop against a scripted clock."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from castseg.deploy.latency import count_parameters, time_calls, torch_latency


def test_count_parameters_matches_a_hand_count_and_counts_shared_weights_once() -> None:
    assert (
        count_parameters(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))) == 3 * 4 + 4 + 4 * 2 + 2
    )
    shared = nn.Linear(2, 2)
    frozen = nn.Linear(2, 1).requires_grad_(False)
    assert count_parameters(nn.Sequential(shared, shared, frozen)) == 6 + 3


def test_time_calls_reports_the_median_of_the_timed_runs_only() -> None:
    # Each timed run reads the clock twice; durations 5, 1, 3 (seconds) -> median 3.
    ticks = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])
    events: list[str] = []
    latency = time_calls(
        lambda: events.append("call"),
        warmup=2,
        repeats=3,
        synchronize=lambda: events.append("sync"),
        clock=lambda: next(ticks),
    )
    assert (latency.median_s, latency.min_s, latency.max_s, latency.repeats) == (3.0, 1.0, 5.0, 3)
    assert events == ["call", "call", *(["sync", "call", "sync"] * 3)]


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 3), (0, 0)])
def test_time_calls_rejects_bad_counts(warmup: int, repeats: int) -> None:
    with pytest.raises(ValueError, match="repeats"):
        time_calls(lambda: None, warmup=warmup, repeats=repeats)


class Recorder(nn.Module):
    """Records, per call, whether it ran in eval mode under inference mode."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, images: Tensor) -> Tensor:
        self.calls.append((self.training, torch.is_inference_mode_enabled()))
        return images.sum()


def test_torch_latency_runs_in_eval_and_inference_mode_and_restores_training() -> None:
    model = Recorder().train()
    latency = torch_latency(model, torch.zeros(1, 3, 4, 4), warmup=1, repeats=4)
    assert latency.repeats == 4 and latency.min_s <= latency.median_s <= latency.max_s
    assert model.calls == [(False, True)] * 5
    assert model.training


def test_time_calls_takes_the_middle_value_for_even_repeats() -> None:
    durations = [4.0, 1.0, 2.0, 8.0]
    ticks = iter(itertools.chain.from_iterable((0.0, d) for d in durations))
    assert time_calls(lambda: None, warmup=0, repeats=4, clock=lambda: next(ticks)).median_s == 3.0
