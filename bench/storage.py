"""Storage benchmark: one run, the same images, the real mmdet data loader, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python bench/storage.py [--images 300] [--size 128] [--latency-ms 20]
                                                          [--repeats 3] [--write bench/RESULTS.md]

Rows (samples per second through CocoDataset + LoadImageFromFile + LoadAnnotations(bbox, mask) and a torch
DataLoader with 2 fork workers, so decoding is included):

* ``disk``: the images on local disk (mmcv's disk backend);
* ``s3 first epoch`` / ``gcs first epoch``: empty cache, prefetch on (the configuration we recommend);
* ``s3 first epoch, no prefetch``: empty cache, each worker fetches what it needs (reused client only);
* ``s3 cached epoch`` / ``gcs cached epoch``: the next epoch, from the local cache;
* ``naive s3``: what the old integration did: a new boto3 client (and connection) per image, no cache.

Both servers run on 127.0.0.1 (moto, fake-gcs-server) behind a proxy process that adds ``--latency-ms`` before
each request, standing in for an object store's time to first byte (AWS quotes 100-200 ms for small S3 objects;
the default 50 ms favours the naive baseline). Note that moto is pure Python and shares the 2 cores with the
loader, so the S3 rows are also bounded by the server's CPU. Disk and cached epochs are repeated and
interleaved (``--repeats``) and the medians reported, because the machine is shared.
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
import model_hub_mmdet  # noqa: E402,F401,I001  (compat fixes before mmcv; registers s3/gcs)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's server starters
from mmcv.fileio.file_client import BaseStorageBackend, FileClient  # noqa: E402
from servers import Server, make_bucket, start_fake_gcs, start_moto, start_proxy  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from model_hub_mmdet.backends import normalize_file_client_args  # noqa: E402
from model_hub_mmdet.backends.prefetch import with_prefetch  # noqa: E402
from model_hub_mmdet.datasets.shapes import CLASSES, ShapesSpec, make_split  # noqa: E402


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


def build_dataset(root: str, file_client_args: dict):
    from mmdet.datasets import build_dataset as build

    pipeline = [
        dict(type="LoadImageFromFile", file_client_args=file_client_args),
        dict(type="LoadAnnotations", with_bbox=True, with_mask=True, file_client_args=file_client_args),
    ]
    return build(dict(type="CocoDataset", classes=CLASSES, data_root=root, ann_file="annotations/train.json",
                      img_prefix="train/", pipeline=pipeline, file_client_args=file_client_args))


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
    parser.add_argument("--repeats", type=int, default=5)
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

        def run(name: str, root: str, fca: dict) -> float:
            fca = normalize_file_client_args(fca)
            rate, ms = epoch(build_dataset(root, fca), fca, args.workers, args.batch_size)
            print(f"{name:32s} {rate:8.1f} samples/s {ms:6.2f} CPU ms/sample", flush=True)
            cpu.setdefault(name, []).append(ms)
            return rate

        rows: dict[str, list[float]] = {}
        rows["naive s3 (new client per image, no cache)"] = [run("naive s3", "shapes/", naive)]
        rows["s3 first epoch, no prefetch"] = [run("s3 first, no prefetch", "shapes/", s3_noprefetch)]
        rows["s3 first epoch"] = [run("s3 first", "shapes/", s3)]
        rows["gcs first epoch"] = [run("gcs first", "shapes/", gs)]
        steady = [("disk", "disk", str(data) + "/", {"backend": "disk"}),
                  ("s3 cached epoch", "s3 cached", "shapes/", s3), ("gcs cached epoch", "gcs cached", "shapes/", gs)]
        for r in range(args.repeats):  # rotate the order so that no mode always runs first after a first epoch
            for row, name, root, fca in steady[r % 3:] + steady[: r % 3]:
                rows.setdefault(row, []).append(run(name, root, fca))
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
    short = {"disk": "disk", "s3 cached epoch": "s3 cached", "gcs cached epoch": "gcs cached",
             "s3 first epoch": "s3 first", "gcs first epoch": "gcs first",
             "s3 first epoch, no prefetch": "s3 first, no prefetch", "naive s3 (new client per image, no cache)":
             "naive s3"}
    paired = {k: statistics.median(c / d for c, d in zip(rows[k], rows["disk"]))
              for k in ("s3 cached epoch", "gcs cached epoch")}
    disk, naive = med["disk"], med["naive s3 (new client per image, no cache)"]
    order = ["disk", "s3 cached epoch", "gcs cached epoch", "s3 first epoch", "gcs first epoch",
             "s3 first epoch, no prefetch", "naive s3 (new client per image, no cache)"]
    lines = [
        f"{args.images} images of {args.size} px, CocoDataset + LoadImageFromFile + LoadAnnotations(bbox, mask),"
        f" DataLoader with {args.workers} fork workers, batch {args.batch_size}; servers on 127.0.0.1 behind a proxy"
        f" adding {args.latency_ms:g} ms per request; prefetch {args.prefetch} samples on {args.prefetch_threads}"
        " threads."
        f" Median of {args.repeats} interleaved runs for disk and cached epochs, one run otherwise."
        " 2-core machine; the servers and their proxies run on the same cores.",
        "",
        "| data path | samples/s | vs disk | vs naive | loader CPU ms/sample |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in order:
        lines.append(f"| {name} | {med[name]:.1f} | {med[name] / disk:.2f}x | {med[name] / naive:.1f}x"
                     f" | {cpu_med[short[name]]:.2f} |")
    lines += [
        "",
        f"Targets: cached epoch within 5% of disk (median of the per-round ratios to the disk run of the same round):"
        f" s3 {100 * (paired['s3 cached epoch'] - 1):+.1f}%, gcs {100 * (paired['gcs cached epoch'] - 1):+.1f}%;"
        f" CPU per sample vs disk: s3 {100 * (cpu_med['s3 cached'] / cpu_med['disk'] - 1):+.1f}%,"
        f" gcs {100 * (cpu_med['gcs cached'] / cpu_med['disk'] - 1):+.1f}%; first epoch >= 3x naive:"
        f" s3 {med['s3 first epoch'] / naive:.1f}x, gcs {med['gcs first epoch'] / naive:.1f}x.",
        "All runs (samples/s): " + "; ".join(f"{k}: {', '.join(f'{x:.0f}' for x in v)}" for k, v in rows.items()),
        "",
        "Per image, one process, best of 5 passes (what a cache hit adds): reading the bytes from disk"
        f" {reads['disk read']:.0f} us, from the S3 cache {reads['s3 cache read']:.0f} us, from the GCS cache"
        f" {reads['gcs cache read']:.0f} us (path resolution, hashing, crc32 check included); decoding the PNG"
        f" {reads['decode']:.0f} us.",
        "",
        f"Reproduce: `OMP_NUM_THREADS=1 .venv/bin/python bench/storage.py --images {args.images} --size {args.size}"
        " --write bench/RESULTS.md`.",
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
