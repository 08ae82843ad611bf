"""Time and peak memory of the negative sampler + L_pxl against a naive full-score-matrix version.

Each variant runs in its own subprocess; peak memory is the growth of the process's peak RSS
over its RSS once the inputs exist. Prints a Markdown table.

    python benchmarks/bench_contrastive.py            # paper sizes: B=8, 37x74, D=128, K=100
    python benchmarks/bench_contrastive.py --batch 2  # smaller
    python benchmarks/bench_contrastive.py --logit-scale 10  # confident predictions
    python benchmarks/bench_contrastive.py --memory-bank 10000  # + in-batch vs. a 10k bank
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from castseg.losses.contrastive import (
    EmbeddingMemoryBank,
    fused_pseudo_probabilities,
    pixel_contrastive_loss,
    sample_negatives,
)


def naive_step(mask_logits, class_logits, z_weak, z_strong, size, negatives, temperature):
    """The direct reading of §3.2: full B·N × B·N score matrix, multinomial per row."""
    y = fused_pseudo_probabilities(mask_logits, class_logits, size).flatten(0, 1)
    scores = (1.0 - y @ y.T).clamp_(min=0.0)
    scores.fill_diagonal_(0.0)
    index = torch.multinomial(scores, negatives, replacement=True)
    del scores
    anchors = F.normalize(z_weak, dim=-1).flatten(0, 1)
    bank = F.normalize(z_strong, dim=-1).flatten(0, 1)
    pos = (anchors * bank).sum(-1, keepdim=True)
    neg = torch.einsum("nd,nrd->nr", anchors, bank[index])
    logits = torch.cat([pos, neg], dim=1) / temperature
    return (torch.logsumexp(logits, 1) - logits[:, 0]).mean()


def castseg_step(mask_logits, class_logits, z_weak, z_strong, size, negatives, temperature):
    y = fused_pseudo_probabilities(mask_logits, class_logits, size)
    index = sample_negatives(y, negatives)
    return pixel_contrastive_loss(z_weak, z_strong, index, temperature)


def bank_step(bank, mask_logits, class_logits, z_weak, z_strong, size, negatives, temperature):
    """castseg_step with the memory bank's rows as extra candidate negatives (as CastModule)."""
    y = fused_pseudo_probabilities(mask_logits, class_logits, size)
    anchors = y.shape[0] * y.shape[1]
    banked = bank.extend(z_weak, z_strong, y)
    index = sample_negatives(banked.y_tilde, negatives, num_anchors=anchors)
    return pixel_contrastive_loss(
        banked.z_weak, banked.z_strong, index, temperature, valid=banked.valid
    )


def filled_bank(rows: int, dim: int, width: int) -> EmbeddingMemoryBank:
    """A bank of `rows` random unit embeddings with random fused vectors of length `width`."""
    bank = EmbeddingMemoryBank(rows, dim)
    keys = torch.randn(1, rows, dim)
    probs = F.normalize(torch.rand(1, rows, width), dim=-1)
    bank.push(keys, probs)
    return bank


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    h, w = args.height, args.width
    scale = args.logit_scale
    mask_logits = scale * torch.randn(args.batch, args.queries, 4 * h, 4 * w)
    class_logits = scale * torch.randn(args.batch, args.queries, args.classes)
    z_weak = torch.randn(args.batch, h * w, args.dim, requires_grad=True)
    z_strong = torch.randn(args.batch, h * w, args.dim, requires_grad=True)
    step = naive_step if args.variant == "naive" else castseg_step
    if args.variant == "bank":
        bank = filled_bank(args.memory_bank, args.dim, args.queries + args.classes)

        def step(*inputs):
            return bank_step(bank, *inputs)

    baseline = peak_rss_mib()
    start = time.perf_counter()
    loss = step(mask_logits, class_logits, z_weak, z_strong, (h, w), args.negatives, 0.2)
    forward = time.perf_counter() - start
    loss.backward()
    total = time.perf_counter() - start
    return {"forward_s": forward, "total_s": total, "peak_mib": peak_rss_mib() - baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=37)
    parser.add_argument("--width", type=int, default=74)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--classes", type=int, default=9, help="C+1")
    parser.add_argument("--negatives", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--logit-scale",
        type=float,
        default=1.0,
        help="scale of the random logits: 1 is an untrained model (flat P_m, the sampler's exact "
        "path), 10 a confident one (peaked P_m, the rejection path)",
    )
    parser.add_argument(
        "--memory-bank",
        type=int,
        default=0,
        help="also time castseg with a memory bank of this many past embeddings (Table 13)",
    )
    parser.add_argument("--variant", choices=["naive", "castseg", "bank"])
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    rows = {}
    variants = ["naive", "castseg"] + (["bank"] if args.memory_bank else [])
    for variant in variants:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    pixels = args.batch * args.height * args.width
    print(
        f"B={args.batch}, map {args.height}x{args.width} (B·N = {pixels}), D={args.dim}, "
        f"K={args.queries}, C+1={args.classes}, R={args.negatives}, "
        f"logit scale {args.logit_scale:g}, {args.threads} CPU threads, torch {torch.__version__}\n"
    )
    print("| variant | forward (s) | forward+backward (s) | peak extra memory (MiB) |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        if name == "bank":
            name = f"castseg + {args.memory_bank}-row bank"
        print(f"| {name} | {r['forward_s']:.2f} | {r['total_s']:.2f} | {r['peak_mib']:.0f} |")
    n, c = rows["naive"], rows["castseg"]
    print(
        f"\ncastseg vs naive: {n['total_s'] / c['total_s']:.1f}x faster, "
        f"{n['peak_mib'] / max(c['peak_mib'], 1):.1f}x less peak memory"
    )


if __name__ == "__main__":
    main()
