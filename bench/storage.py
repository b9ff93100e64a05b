"""Storage benchmark: one run, the same images, the real data loaders, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/storage.py [--images 300] [--size 128] [--latency-ms 50]
                                                          [--repeats 15] [--write bench/RESULTS.md]

Loading-only rows (samples per second through CocoDataset + LoadImageFromFile + LoadAnnotations(bbox, mask) and a
new torch DataLoader with 2 fork workers per epoch: the read and the decode and little else, the worst case for
any per-read overhead):

* ``disk``: the images on local disk (mmcv's disk backend);
* ``s3 first epoch`` / ``gcs first epoch``: empty cache, prefetch on (the configuration we recommend);
* ``s3 first epoch, no prefetch``: empty cache, each worker fetches what it needs (reused client only);
* ``s3 cached epoch`` / ``gcs cached epoch``: later epochs, from the local cache;
* ``naive s3``: what the old integration did: a new boto3 client (and connection) per image, no cache.

Training-loader rows: disk, s3 cached and gcs cached passes through the loader ``MMDetTrial`` builds
(``model_hub_mmdet.mmdet2.data.build_train_loader``: group batching, seeded augmentation, mmcv collate, persistent
workers, the prefetcher) with the demo's whole training pipeline; one loader per data path, kept for the run.

Both servers run on 127.0.0.1 (moto, fake-gcs-server) behind a proxy process that adds ``--latency-ms`` before
each request, standing in for an object store's time to first byte (AWS quotes 100-200 ms for small S3 objects;
the default 50 ms favours the naive baseline). Note that moto is pure Python and shares the 2 cores with the
loader, so the S3 rows are also bounded by the server's CPU. Disk and cached passes are repeated and
interleaved (``--repeats``), and compared round by round, because the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
from model_hub_mmdet import generation  # noqa: E402,I001

generation.setup()  # the generation's fixes before mmcv/mmdet are used; registers s3/gcs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's server starters
from mmcv.fileio.file_client import BaseStorageBackend, FileClient  # noqa: E402
from servers import Server, make_bucket, start_fake_gcs, start_moto, start_proxy  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from model_hub_mmdet.storage import normalize_file_client_args  # noqa: E402
from model_hub_mmdet.storage.prefetch import with_prefetch  # noqa: E402
from model_hub_mmdet.tools.shapes import CLASSES, ShapesSpec, make_split  # noqa: E402


class NaiveS3Backend(BaseStorageBackend):
    """The baseline: one blocking request per sample on a brand-new client, no cache, no retries."""

    def __init__(self, bucket_name: str, endpoint_url: str) -> None:
        self.bucket_name, self.endpoint_url = bucket_name, endpoint_url

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def get(self, filepath) -> bytes:
        return self._client().get_object(Bucket=self.bucket_name, Key=str(filepath))["Body"].read()

    def get_text(self, filepath, encoding: str = "utf-8") -> str:
        return self.get(filepath).decode(encoding)

    @contextlib.contextmanager
    def get_local_path(self, filepath):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            f.write(self.get(filepath))
            f.flush()
            yield f.name


FileClient.register_backend("s3_naive", NaiveS3Backend, force=True)
NAIVE = "naive s3 (new client per image, no cache)"
TRAIN = "training loader, "


def build_dataset(root: str, file_client_args: dict, pipeline: str = "load"):
    """The shapes training set; ``pipeline="load"`` stops after loading (the worst case for a cache: nothing but
    the read and the decode), ``"train"`` is the demo's whole training pipeline (``examples/shapes``)."""
    from mmcv import Config
    from mmdet.datasets import build_dataset as build

    steps = [
        dict(type="LoadImageFromFile", file_client_args=file_client_args),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True, file_client_args=file_client_args),
    ]
    if pipeline == "train":
        demo = Config.fromfile(str(ROOT / "examples" / "shapes" / "mask_rcnn_shapes.py"))
        steps += [dict(step) for step in demo.train_pipeline[2:]]
    return build(dict(type="CocoDataset", classes=CLASSES, data_root=root, ann_file="annotations/train.json",
                      img_prefix="train/", pipeline=steps, file_client_args=file_client_args))


class TrialPass:
    """Passes over the training set through the loader ``MMDetTrial`` trains with (group-batched, seeded,
    mmcv-collated, persistent workers, the storage prefetcher when configured), kept across rounds as in training."""

    def __init__(self, dataset, file_client_args: dict, workers: int, batch_size: int) -> None:
        from model_hub_mmdet.mmdet2.data import build_train_loader

        self.loader = build_train_loader(dataset, batch_size, workers, seed=0, file_client_args=file_client_args)
        self.batches = iter(self.loader)
        self.per_pass = len(self.loader.resumable)
        self.samples = sum(len(b) for b in self.loader.resumable.groups.batches_for_pass(0))

    def _cpu(self) -> float:
        """CPU seconds of this process and of the loader's (persistent, so never reaped) workers."""
        me = resource.getrusage(resource.RUSAGE_SELF)
        workers = getattr(self.batches._it, "_workers", [])  # none before the first batch
        return me.ru_utime + me.ru_stime + sum(_proc_cpu(w.pid) for w in workers)

    def run(self) -> tuple[float, float]:
        cpu, start = self._cpu(), time.perf_counter()
        for _ in range(self.per_pass):
            next(self.batches)
        elapsed = time.perf_counter() - start
        return self.samples / elapsed, 1000 * (self._cpu() - cpu) / self.samples


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """CPU time of this process (prefetch threads included) and of its finished children (loader workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def epoch(dataset, file_client_args: dict, workers: int, batch_size: int) -> tuple[float, float]:
    """One pass over ``dataset`` through a fresh DataLoader (worker start included): samples per second, and
    CPU milliseconds per sample spent by the loader (main process and its workers; not the servers). The CPU
    figure hardly moves with other load on the machine, the wall-clock one does."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=list,
                        multiprocessing_context="fork")
    loader = with_prefetch(loader, file_client_args)
    cpu, start = _cpu_seconds(), time.perf_counter()
    n = sum(len(batch) for batch in loader)
    elapsed = time.perf_counter() - start
    del loader  # workers exit and are reaped, so their CPU time is counted
    cpu = _cpu_seconds() - cpu
    assert n == len(dataset)
    return n / elapsed, 1000 * cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    # AWS's S3 performance guidelines quote 100-200 ms first-byte latency for small objects; 50 ms is generous.
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--first-repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--prefetch-threads", type=int, default=16)
    parser.add_argument("--write", type=Path, help="update the 'storage' section of this RESULTS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    data = work / "shapes"
    make_split(data, "train", args.images, seed=0, spec=ShapesSpec(size=args.size))
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    servers: list[Server] = []
    try:
        moto, gcs = start_moto(), start_fake_gcs()
        servers += [moto, gcs]
        s3_proxy = start_proxy(moto, args.latency_ms / 1000)
        gcs_proxy = start_proxy(gcs, args.latency_ms / 1000)
        servers += [s3_proxy, gcs_proxy]
        make_bucket("s3", moto.endpoint, "bench")
        make_bucket("gcs", gcs.endpoint, "bench")
        common = dict(prefetch=args.prefetch, prefetch_threads=args.prefetch_threads)
        s3 = dict(backend="s3", bucket_name="bench", endpoint_url=s3_proxy.endpoint, cache_dir=str(work / "c-s3"),
                  **common)
        s3_noprefetch = dict(s3, cache_dir=str(work / "c-s3-np"), prefetch=0)
        gs = dict(backend="gcs", bucket_name="bench", emulator_host=gcs_proxy.endpoint, cache_dir=str(work / "c-gcs"),
                  **common)
        for fca in (s3, gs):  # stage the data directly (not through the proxy)
            direct = dict(fca, cache=False, **({"endpoint_url": moto.endpoint} if fca is s3 else
                                              {"emulator_host": gcs.endpoint}))
            FileClient(**normalize_file_client_args(direct)).client.upload_dir(data, "shapes")
        naive = dict(backend="s3_naive", bucket_name="bench", endpoint_url=s3_proxy.endpoint)

        cpu: dict[str, list[float]] = {}
        rows: dict[str, list[float]] = {}

        def record(row: str, rate: float, ms: float) -> None:
            print(f"{row:44s} {rate:8.1f} samples/s {ms:6.2f} CPU ms/sample", flush=True)
            rows.setdefault(row, []).append(rate)
            cpu.setdefault(row, []).append(ms)

        def run(row: str, root: str, fca: dict) -> None:
            fca = normalize_file_client_args(fca)
            record(row, *epoch(build_dataset(root, fca), fca, args.workers, args.batch_size))

        def fresh(fca: dict, tag: str, r: int) -> dict:
            """``fca`` with an empty cache of its own for first-epoch round ``r`` (round 0 fills the caches the
            cached rows read)."""
            return fca if r == 0 else dict(fca, cache_dir=str(work / f"c-{tag}-{r}"))

        for r in range(args.first_repeats):
            run(NAIVE, "shapes/", naive)
            run("s3 first epoch, no prefetch", "shapes/", fresh(s3_noprefetch, "s3-np", r))
            run("s3 first epoch", "shapes/", fresh(s3, "s3", r))
            run("gcs first epoch", "shapes/", fresh(gs, "gcs", r))
        steady = [("disk", str(data) + "/", {"backend": "disk"}), ("s3 cached epoch", "shapes/", s3),
                  ("gcs cached epoch", "shapes/", gs)]
        trial = {}
        for row, root, fca in steady:  # the trial's loader, kept for the whole run; its first pass is warm-up
            fca = normalize_file_client_args(fca)
            trial[row] = TrialPass(build_dataset(root, fca, "train"), fca, args.workers, args.batch_size)
            trial[row].run()
        for r in range(args.repeats):  # rotate the order so that no mode always runs first
            order = steady[r % 3:] + steady[: r % 3]
            for row, root, fca in order:
                run(row, root, fca)
            for row, _, _ in order:
                record(TRAIN + row, *trial[row].run())
        reads = read_costs(data, s3, gs)
    finally:
        for server in reversed(servers):
            server.stop()

    table = report(rows, args, reads, cpu)
    print(table)
    if args.write:
        write_section(args.write, table)


def read_costs(data: Path, s3: dict, gs: dict, rounds: int = 5) -> dict[str, float]:
    """Microseconds per image, in this process: reading the bytes from disk, from each warm cache, and decoding
    plus annotation loading (best of ``rounds`` passes, the least disturbed by other load on the machine)."""
    import mmcv

    files = sorted((data / "train").glob("*.png"))
    keys = [f"shapes/train/{f.name}" for f in files]
    backends = {n: FileClient(**normalize_file_client_args(a)).client for n, a in (("s3", s3), ("gcs", gs))}

    def best(fn) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(len(files)):
                fn(i)
            times.append((time.perf_counter() - start) / len(files) * 1e6)
        return min(times)

    return {
        "disk read": best(lambda i: files[i].read_bytes()),
        "s3 cache read": best(lambda i: backends["s3"].get(keys[i])),
        "gcs cache read": best(lambda i: backends["gcs"].get(keys[i])),
        "decode": best(lambda i: mmcv.imfrombytes(files[i].read_bytes())),
    }


def report(rows: dict[str, list[float]], args: argparse.Namespace, reads: dict[str, float],
           cpu: dict[str, list[float]]) -> str:
    med = {k: statistics.median(v) for k, v in rows.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}

    def paired(row: str, base: str, values: dict[str, list[float]]) -> float:
        """Median over rounds of row/base, each ratio taken within one round (the machine's speed drifts)."""
        return 100 * (statistics.median(a / b for a, b in zip(values[row], values[base])) - 1)

    naive = med[NAIVE]
    lines = [
        f"{args.images} images of {args.size} px, DataLoader with {args.workers} fork workers, batch"
        f" {args.batch_size}; servers on 127.0.0.1 behind a proxy adding {args.latency_ms:g} ms per request;"
        f" prefetch {args.prefetch} samples on {args.prefetch_threads} threads. Disk and cached rows: median of"
        f" {args.repeats} interleaved rounds; first epochs and naive: median of {args.first_repeats} rounds, each"
        " first epoch from an empty cache. 2-core machine; the servers and their"
        " proxies run on the same cores.",
        "",
        "| data path | samples/s | vs disk | vs naive | loader CPU ms/sample |",
        "|---|---:|---:|---:|---:|",
        "| *loading only: CocoDataset + LoadImageFromFile + LoadAnnotations(bbox, mask), a new loader per epoch* |"
        " | | | |",
    ]
    for row in ("disk", "s3 cached epoch", "gcs cached epoch", "s3 first epoch", "gcs first epoch",
                "s3 first epoch, no prefetch", NAIVE):
        lines.append(f"| {row} | {med[row]:.1f} | {med[row] / med['disk']:.2f}x | {med[row] / naive:.1f}x"
                     f" | {cpu_med[row]:.2f} |")
    lines.append("| *MMDetTrial's training loader: the demo's whole training pipeline, persistent workers* | | | | |")
    for row in ("disk", "s3 cached epoch", "gcs cached epoch"):
        r = TRAIN + row
        lines.append(f"| {row} | {med[r]:.1f} | {med[r] / med[TRAIN + 'disk']:.2f}x | | {cpu_med[r]:.2f} |")
    lines += [
        "",
        "Targets. Cached epoch within 5% of disk (median of per-round ratios):"
        f" training loader s3 {paired(TRAIN + 's3 cached epoch', TRAIN + 'disk', rows):+.1f}%,"
        f" gcs {paired(TRAIN + 'gcs cached epoch', TRAIN + 'disk', rows):+.1f}%;"
        f" loading only s3 {paired('s3 cached epoch', 'disk', rows):+.1f}%,"
        f" gcs {paired('gcs cached epoch', 'disk', rows):+.1f}%"
        f" (CPU per sample: training loader s3 {paired(TRAIN + 's3 cached epoch', TRAIN + 'disk', cpu):+.1f}%,"
        f" gcs {paired(TRAIN + 'gcs cached epoch', TRAIN + 'disk', cpu):+.1f}%; loading only"
        f" s3 {paired('s3 cached epoch', 'disk', cpu):+.1f}%, gcs {paired('gcs cached epoch', 'disk', cpu):+.1f}%)."
        f" First epoch at least 3x naive: s3 {med['s3 first epoch'] / naive:.1f}x,"
        f" gcs {med['gcs first epoch'] / naive:.1f}x.",
        "",
        "All runs (samples/s): " + "; ".join(f"{k}: {', '.join(f'{x:.0f}' for x in v)}" for k, v in rows.items()),
        "",
        "Per image, one process, best of 5 passes (what a cache hit adds): reading the bytes from disk"
        f" {reads['disk read']:.0f} us, from the S3 cache {reads['s3 cache read']:.0f} us, from the GCS cache"
        f" {reads['gcs cache read']:.0f} us (path resolution, hashing, crc32 check included); decoding the PNG"
        f" {reads['decode']:.0f} us.",
        "",
        f"Reproduce: `OMP_NUM_THREADS=1 .venv/bin/python bench/storage.py --images {args.images} --size {args.size}"
        f" --repeats {args.repeats} --first-repeats {args.first_repeats} --write bench/RESULTS.md`.",
    ]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the '## storage' section of a RESULTS.md, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    head, sep, rest = text.partition("\n## storage\n")
    tail = ""
    if sep:
        nxt = rest.find("\n## ")
        tail = rest[nxt:] if nxt >= 0 else ""
    path.write_text(head.rstrip("\n") + "\n\n## storage\n\n" + body.rstrip("\n") + "\n" + tail)


if __name__ == "__main__":
    main()
