"""Memory and speed of castseg's training loader over a generated Cityscapes-size COCO set.

    python benchmarks/bench_data_loading.py [--images 2975] [--height 1024] [--width 2048]
        [--instances 20] [--size 518 1036] [--workers 2] [--batch 8] [--small 200] [--out DIR]

Generates `--images` JPEG images (quality 90; a smooth random background with `--instances`
filled star-shaped objects of 16-48 vertices, 20-245 px across at 2048 wide, in 8 classes)
and a COCO json whose annotations alternate between polygons and compressed RLE, plus a json of
the first `--small` images. At the defaults the set takes about 0.5 GB on disk; it goes into a
temporary folder that is deleted afterwards unless `--out` names a folder to keep it in.

Then, for the small and the full json, a fresh process builds a `CocoInstanceDataset` (every
image header and annotation checked) and draws one epoch of training batches through
`castseg.training.batches.step_loader` with the weak view at `--size` (⌊images / batch⌋ steps
of `--batch` images drawn with replacement, `--workers` loader processes). The table gives the
time to build the dataset and to run the epoch, the size of the packed records, and memory:
the main process's peak RSS (getrusage; includes parsing the json), the largest loader worker's
peak RSS (getrusage of the children), and peaks over the epoch sampled every 0.2 s from /proc of
the main process's RSS and, for all processes together, of the summed RSS (shared pages counted
once per process) and summed PSS (shared pages split between the processes sharing them).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def scene(seed: int, height: int, width: int, instances: int) -> tuple[Image.Image, list[dict]]:
    """One image and its annotations (no ids yet)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 12, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    annotations = []
    for k in range(instances):
        vertices = int(rng.integers(16, 49))
        angles = np.sort(rng.uniform(0, 2 * math.pi, vertices))
        radii = rng.uniform(0.01, 0.12) * width * rng.uniform(0.6, 1.0, vertices)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        xs = np.clip(cx + radii * np.cos(angles), 0, width).round(2)
        ys = np.clip(cy + radii * np.sin(angles), 0, height).round(2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour)
        polygon = np.stack([xs, ys], 1).reshape(-1).tolist()
        rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
        if k % 2:
            segmentation: list | dict = [polygon]
        else:
            segmentation = {"size": [height, width], "counts": rle["counts"].decode()}
        annotations.append(
            {
                "category_id": int(rng.integers(1, len(CLASSES) + 1)),
                "segmentation": segmentation,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": 0,
            }
        )
    return image, annotations


def _write_image(job: tuple[int, Path, int, int, int]) -> list[dict]:
    index, folder, height, width, instances = job
    image, annotations = scene(index, height, width, instances)
    image.save(folder / f"{index:05d}.jpg", quality=90)
    return annotations


def generate(out: Path, count: int, height: int, width: int, instances: int, small: int) -> None:
    """Write out/images/*.jpg, out/instances.json and out/instances_small.json."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(i, out / "images", height, width, instances) for i in range(count)]
    images, annotations = [], []
    with mp.get_context("fork").Pool() as pool:
        for index, anns in enumerate(pool.imap(_write_image, jobs, chunksize=8)):
            images.append(
                {"id": index + 1, "file_name": f"{index:05d}.jpg", "height": height, "width": width}
            )
            for ann in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **ann})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (out / "instances.json").write_text(json.dumps(coco))
    first = {"images": images[:small], "categories": categories}
    first["annotations"] = [a for a in annotations if a["image_id"] <= small]
    (out / "instances_small.json").write_text(json.dumps(first))


class MemorySampler(threading.Thread):
    """Peaks of this process's RSS and of RSS and PSS summed over it and its children (Linux)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peaks = {"main_rss": 0, "total_rss": 0, "total_pss": 0}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = ["self", *_children()]
            rss = [_proc_kib(pid, "status", "VmRSS:") for pid in pids]
            pss = [_proc_kib(pid, "smaps_rollup", "Pss:") for pid in pids]
            for key, value in (
                ("main_rss", rss[0]),
                ("total_rss", sum(rss)),
                ("total_pss", sum(pss)),
            ):
                self.peaks[key] = max(self.peaks[key], value)
            self._done.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peaks


def _children() -> list[str]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    return pids


def _proc_kib(pid: str, name: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(annotation_file: Path, size: tuple[int, int], workers: int, batch: int) -> dict:
    """Build the dataset and draw one epoch of batches; runs in a fresh process."""
    from tqdm import tqdm

    from castseg.data.coco import CocoInstanceDataset
    from castseg.data.views import WeakView
    from castseg.training.batches import StepSamples, step_loader

    start = time.perf_counter()
    dataset = CocoInstanceDataset(annotation_file, progress=True)
    built = time.perf_counter() - start
    steps = len(dataset) // batch
    samples = StepSamples(dataset, WeakView(size), seed=0, stream="labeled", rank=0)
    loader = step_loader(samples, start=0, steps=steps, batch_size=batch, num_workers=workers)
    sampler = MemorySampler()
    sampler.start()
    start = time.perf_counter()
    for views in tqdm(loader, desc=f"epoch of {len(dataset)} images", unit="batch"):
        assert views.images.shape == (batch, 3, *size)
    epoch = time.perf_counter() - start
    del loader  # shuts the persistent workers down, so getrusage counts them
    peaks = sampler.stop()
    return {
        "images": len(dataset),
        "steps": steps,
        "build_s": built,
        "epoch_s": epoch,
        "records_mib": dataset.records.nbytes / 2**20,
        "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        **{f"epoch_{k}_mib": v / 1024 for k, v in peaks.items()},
    }


def _measure_in(queue: mp.Queue, *args: object) -> None:
    queue.put(measure(*args))  # type: ignore[arg-type]


def run_fresh(*args: object) -> dict:
    """`measure` in a new process, so earlier runs and the generation do not count."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure_in, args=(queue, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2975)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(518, 1036), metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--out", type=Path, help="keep the generated set in this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        start = time.perf_counter()
        generate(out, args.images, args.height, args.width, args.instances, args.small)
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        print(
            f"generated {args.images} images in {time.perf_counter() - start:.0f} s, {disk:.0f} MiB"
        )
        size = tuple(args.size)
        rows = [
            run_fresh(out / name, size, args.workers, args.batch)
            for name in ("instances_small.json", "instances.json")
        ]
    header = (
        "| images | image size | workers | batch | build s | epoch s | img/s | records MiB "
        "| main peak RSS MiB | worker peak RSS MiB | epoch: main RSS | Σ RSS | Σ PSS (MiB) |"
    )
    print(header)
    print("|" + "---|" * 13)
    for r in rows:
        print(
            f"| {r['images']} | {args.height}×{args.width} | {args.workers} | {args.batch} "
            f"| {r['build_s']:.1f} | {r['epoch_s']:.0f} "
            f"| {r['steps'] * args.batch / r['epoch_s']:.1f} "
            f"| {r['records_mib']:.1f} | {r['main_peak_mib']:.0f} | {r['worker_peak_mib']:.0f} "
            f"| {r['epoch_main_rss_mib']:.0f} | {r['epoch_total_rss_mib']:.0f} "
            f"| {r['epoch_total_pss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
