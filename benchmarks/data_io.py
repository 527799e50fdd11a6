"""Micro-benchmark of the data layer: write and read throughput on a 2s3z-sized dataset.

    python benchmarks/data_io.py [--episodes 2000] [--out /tmp/rllib_sit_bench]

Episodes are synthetic but 2s3z-sized (obs [121, 5, 80], state [121, 120], avail [121, 5, 11],
lengths uniform in [20, 120]); generating them is excluded from the write timing. Reads:
full validation on open, pyarrow streaming, Ray Data streaming, and ``to_numpy`` (all in memory).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

from rllib_sit.data import DatasetMeta, read_dataset, write_dataset
from rllib_sit.data.synthetic import SMAC_2S3Z_INFO, synthetic_rows


def folder_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**20


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=2000)
    p.add_argument("--out", default="/tmp/rllib_sit_bench")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    rows = list(synthetic_rows(SMAC_2S3Z_INFO, args.episodes, seed=0))
    raw_mb = sum(sum(np.asarray(v).nbytes for v in r.values()) for r in rows) / 2**20
    path = os.path.join(args.out, "2s3z_synthetic")
    shutil.rmtree(path, ignore_errors=True)

    results = []
    t = time.perf_counter()
    write_dataset(rows, path, DatasetMeta(env=SMAC_2S3Z_INFO), {"quality": "synthetic"})
    results.append(("write (validate + zstd Parquet)", time.perf_counter() - t))
    disk_mb = folder_mb(path)

    t = time.perf_counter()
    ds = read_dataset(path)
    results.append(("open + full validation", time.perf_counter() - t))

    t = time.perf_counter()
    n = sum(len(b["length"]) for b in ds.iter_batches(args.batch_size, backend="arrow"))
    results.append((f"stream batches of {args.batch_size} (pyarrow)", time.perf_counter() - t))
    assert n == args.episodes

    t = time.perf_counter()
    n = sum(len(b["length"]) for b in ds.iter_batches(args.batch_size, backend="ray"))
    results.append((f"stream batches of {args.batch_size} (Ray Data)", time.perf_counter() - t))
    assert n == args.episodes

    t = time.perf_counter()
    arrays = ds.to_numpy()
    results.append(("to_numpy (whole dataset in memory)", time.perf_counter() - t))
    assert arrays["obs"].shape[0] == args.episodes

    print(f"\n{args.episodes} 2s3z-sized episodes: {raw_mb:.0f} MB raw, {disk_mb:.0f} MB on disk "
          f"({len(ds.files)} shards), {os.cpu_count()} CPUs")
    print("| operation | seconds | episodes/s | MB/s (raw) |")
    print("|---|---:|---:|---:|")
    for name, sec in results:
        print(f"| {name} | {sec:.2f} | {args.episodes / sec:,.0f} | {raw_mb / sec:,.0f} |")
    print(f"\ncommand: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}".rstrip())
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
