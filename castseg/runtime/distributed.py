"""Ranks of a run launched by torchrun or SLURM (one process per device), for work outside fit.

Lightning's DDP strategy trains; pseudo-labelling and evaluation run between fits, so they shard
their images across ranks and exchange results themselves. `init_distributed` starts the process
group from the launcher's environment before the first fit; Lightning then finds it initialised
and uses it. Without an initialised process group every helper acts as rank 0 of a world of one.
castseg never lets Lightning start processes itself: `resolve_devices` turns `run.devices: auto`
into one device without a launcher and refuses more than one.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)

from castseg.config import RunConfig
from castseg.runtime.compute import uses_cuda

T = TypeVar("T")
LAUNCH_HELP = "launch one process per device with torchrun or srun (see docs/distributed.md)"


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_rank() -> int:
    """Rank of this process among all processes of all nodes; 0 outside a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes; 1 outside a process group."""
    return dist.get_world_size() if is_distributed() else 1


def is_rank_zero() -> bool:
    """Whether this process writes shared outputs (merged caches, checkpoints, reports)."""
    return global_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here; nothing outside a process group."""
    if is_distributed():
        dist.barrier()


def shard_indices(count: int) -> list[int]:
    """This rank's share of the indices 0..count-1: every world_size-th, from its rank on."""
    return list(range(global_rank(), count, world_size()))


def all_gather_results(function: Callable[[], T]) -> list[T]:
    """Run `function` on every rank and give every rank the list of results, in rank order.

    If any rank raises, every rank raises the exception of the lowest failing rank (with a note
    naming it), so a failure stops the whole run instead of leaving the others waiting.
    """
    if not is_distributed():
        return [function()]
    error: Exception | None = None
    try:
        outcome: tuple[bool, Any] = (True, function())
    except Exception as err:
        error, outcome = err, (False, _transportable(err))
    outcomes: list[Any] = [None] * world_size()
    dist.all_gather_object(outcomes, outcome)
    return [_unwrap(outcome, rank, error) for rank, outcome in enumerate(outcomes)]


def on_rank_zero(function: Callable[[], T]) -> T:
    """Run `function` on rank 0 only and give every rank its result (or raise its exception)."""
    if not is_distributed():
        return function()
    box: list[Any] = [None]
    error: Exception | None = None
    if global_rank() == 0:
        try:
            box[0] = (True, function())
        except Exception as err:
            error, box[0] = err, (False, _transportable(err))
    dist.broadcast_object_list(box, src=0)
    return _unwrap(box[0], 0, error)


def launch_environment() -> ClusterEnvironment | None:
    """The launcher that started this process (torchrun first, as Lightning checks), or None."""
    for environment in (TorchElasticEnvironment, SLURMEnvironment):
        if environment.detect():
            return environment()
    return None


def resolve_devices(run: RunConfig, config: str = "CONFIG") -> tuple[RunConfig, str | None]:
    """`run` with run.devices as the count this launch uses on each node, and a line to show
    when `run.devices: auto` leaves devices idle.

    castseg never lets Lightning start processes in the middle of the pipeline: several devices
    or nodes need a launcher (torchrun, srun) and run.strategy "ddp". Without one, "auto" is one
    device; a count above 1 (or several nodes) is a ValueError with the torchrun command for
    `config`, as is a launch that disagrees with the config (`init_distributed`'s checks).
    """
    _check_launch(run, config)
    if run.devices != "auto":
        return run, None
    found = _visible_devices(run.accelerator)
    note = None
    if found > 1:
        note = (
            f"run.devices: auto uses one of the {found} CUDA devices without a launcher; to use "
            f"all: {torchrun_command(found, config)}"
        )
    return replace(run, devices=1), note


def torchrun_command(devices: int, config: str = "CONFIG") -> str:
    """The torchrun command that runs `castseg run config` on `devices` devices of one node."""
    return (
        f"torchrun --standalone --nproc_per_node {devices} -m castseg.cli run {config} "
        f"--set run.strategy=ddp --set run.devices={devices}"
    )


def init_distributed(run: RunConfig) -> bool:
    """Start the process group of a torchrun or srun launch; True when there are several ranks.

    Call once per process, before the first fit. With run.strategy "ddp" the launcher must have
    started run.devices × run.num_nodes processes; "nccl" is used on CUDA devices, "gloo" on CPU.
    ValueError naming the keys when the launch and the config disagree (`resolve_devices`).
    """
    _check_launch(run)
    environment = launch_environment()
    if run.strategy != "ddp" or environment is None or environment.world_size() == 1:
        return False
    if dist.is_initialized():
        return True
    use_cuda = uses_cuda(run.accelerator)
    if use_cuda:
        torch.cuda.set_device(environment.local_rank())
    # The env:// rendezvous reads these; SLURM's address comes from the job's node list.
    os.environ["MASTER_ADDR"] = environment.main_address
    os.environ["MASTER_PORT"] = str(environment.main_port)
    dist.init_process_group(
        "nccl" if use_cuda else "gloo",
        rank=environment.global_rank(),
        world_size=environment.world_size(),
    )
    return True


def _check_launch(run: RunConfig, config: str = "CONFIG") -> None:
    """ValueError naming the keys when the launcher's processes, run.strategy, run.devices and
    run.num_nodes disagree, or when the run would need processes that no launcher started."""
    environment = launch_environment()
    launched = environment.world_size() if environment is not None else 1
    if run.strategy != "ddp":
        if launched > 1:
            raise ValueError(
                f"{launched} processes were launched but run.strategy is {run.strategy!r}: set "
                "run.strategy=ddp (and run.devices, run.num_nodes) for a multi-process run"
            )
        several = isinstance(run.devices, int) and run.devices > 1
        if several or run.num_nodes > 1:
            devices = run.devices if isinstance(run.devices, int) else 1
            raise ValueError(
                f"run.devices={run.devices} and run.num_nodes={run.num_nodes} need one process "
                f"per device and run.strategy=ddp; castseg does not start them itself: "
                f"{torchrun_command(devices, config)} (several nodes: docs/distributed.md)"
            )
        _visible_devices(run.accelerator)
        return
    if not isinstance(run.devices, int):
        raise ValueError(
            f"run.strategy=ddp needs run.devices set to the processes per node, got {run.devices!r}"
        )
    expected = run.devices * run.num_nodes
    if environment is None and expected > 1:
        raise ValueError(
            f"run.strategy=ddp with run.devices={run.devices} and run.num_nodes={run.num_nodes} "
            f"needs {expected} processes: {LAUNCH_HELP}, e.g. "
            f"{torchrun_command(run.devices, config)}"
        )
    if launched != expected:
        raise ValueError(
            f"the launcher started {launched} processes but run.devices × run.num_nodes = "
            f"{run.devices} × {run.num_nodes} = {expected}: make them agree ({LAUNCH_HELP})"
        )


def _visible_devices(accelerator: str) -> int:
    """How many devices of `accelerator` this process sees (as Lightning would pick them);
    ValueError when an explicitly chosen GPU accelerator finds none."""
    if uses_cuda(accelerator):
        return torch.cuda.device_count()
    mps = torch.backends.mps.is_available()
    if accelerator == "cuda" or (accelerator in ("gpu", "mps") and not mps):
        raise ValueError(
            f"run.accelerator is {accelerator!r} but torch finds no such device here: set "
            "run.accelerator=cpu (or auto)"
        )
    return 1


@contextmanager
def distributed_session(run: RunConfig) -> Iterator[bool]:
    """`init_distributed(run)` for the duration of a block; the process group it started is
    destroyed at the end. Yields whether there are several ranks."""
    started = not dist.is_initialized() and init_distributed(run)
    try:
        yield is_distributed()
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def _transportable(err: Exception) -> Exception:
    """`err` if it survives pickling (to cross to other ranks), else a RuntimeError with its
    text."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")
    return err


def _unwrap(outcome: tuple[bool, Any], rank: int, own_error: Exception | None) -> Any:
    """The value of a rank's (succeeded, value) outcome; raises a failed rank's exception (this
    rank's own, with its traceback, when the failure was here)."""
    succeeded, value = outcome
    if succeeded:
        return value
    if rank == global_rank() and own_error is not None:
        raise own_error
    value.add_note(f"(raised on rank {rank} of {world_size()})")
    raise value
