"""Dataset generation throughput (episodes/s) and the average returns of generated datasets.

    python benchmarks/data_generation.py --env smac:2s3z --quality low --episodes 1000 --workers 2
    python benchmarks/data_generation.py --all-low-medium --episodes 200   # every map x {low, medium}

Writes to a temporary folder (or ``--out-root``), prints one line per dataset: episodes, seconds,
episodes/s, the dataset card's average return, the paper's, and the pool returns it mixes (the
average must lie between the lowest and the highest pool level used, up to 2 standard errors of
the pool measurements).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def bench(env_id: str, quality: str, episodes: int, workers, seed: int, root: str) -> dict:
    from rllib_sit.data.composition import dataset_spec
    from rllib_sit.data.generation import generate_dataset
    from rllib_sit.data.pools import load_pool

    out = os.path.join(root, env_id.replace(":", "_"), f"{quality}_{episodes}_{seed}")
    t0 = time.time()
    path = generate_dataset(env_id, quality=quality, n_episodes=episodes, seed=seed, out=out,
                            num_workers=workers, progress=False, overwrite=True)
    dt = time.time() - t0
    with open(os.path.join(path, "card.json")) as f:
        card = json.load(f)
    spec = dataset_spec(env_id, quality)
    pool = load_pool(env_id)
    words = {"r": "random", "m": "medium", "e": "expert"}
    measured = {words[l]: pool.members(l)[0].measured for l in spec.composition.levels_used()}
    pool_means = {k: m["mean"] for k, m in measured.items()}
    # tolerance: 2 standard errors of the pool measurements (matters for a single-level dataset)
    tol = 2 * max(m["std"] / m["n"] ** 0.5 for m in measured.values())
    lo, hi = min(pool_means.values()) - tol, max(pool_means.values()) + tol
    return {"env": env_id, "quality": quality, "episodes": episodes, "seconds": round(dt, 1),
            "episodes_per_s": round(episodes / dt, 2), "return_mean": round(card["return_mean"], 2),
            "return_std": round(card["return_std"], 2), "paper_average_return": spec.paper_average_return,
            "pool_means": pool_means, "between_pools": bool(lo <= card["return_mean"] <= hi),
            "path": path}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--quality", action="append", default=[])
    p.add_argument("--all-low-medium", action="store_true", help="every map of the specs x {low, medium}")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-root", default=None)
    args = p.parse_args()
    from rllib_sit.data.composition import load_specs
    from rllib_sit.data.pools import load_pool

    if args.all_low_medium:
        jobs = []
        for env_id, spec in load_specs().items():
            try:
                load_pool(env_id)
            except FileNotFoundError:
                continue
            jobs += [(env_id, q) for q in ("low", "medium") if q in spec.datasets]  # SIT's maps only
    else:
        jobs = [(e, q) for e in args.env for q in (args.quality or ["low"])]
    root = args.out_root or tempfile.mkdtemp(prefix="rllib_sit_bench_")
    for env_id, q in jobs:
        try:
            print(json.dumps(bench(env_id, q, args.episodes, args.workers, args.seed, root)), flush=True)
        except ValueError as e:  # e.g. a pool level is missing for this map
            print(json.dumps({"env": env_id, "quality": q, "error": str(e)}), flush=True)


if __name__ == "__main__":
    main()
