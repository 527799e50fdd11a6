"""SIT learning benchmark (not a unit test): evaluation return vs the dataset's behaviour return.

    python benchmarks/sit_learning.py --env smac:2s3z --quality low --episodes 1000 --seeds 0 1 2 \
        --ardnem-updates 20000 --agent-updates 15000        # the paper's lengths

Per seed: trains SIT through all three stages, evaluates the greedy actors for ``--eval-episodes``
episodes, and records the decomposed reward per agent (Figure 3a/d: with the composition of the
dataset, random agents should get lower r̂ than medium/expert ones) and the DPER effective sample
size per type. Prints a Markdown table and one JSON object (``--json`` writes it to a file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="smac:2s3z")
    p.add_argument("--quality", default="low")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--input", default=None, help="explicit dataset folder instead of env/quality/episodes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--ardnem-updates", type=int, default=2000)
    p.add_argument("--agent-updates", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--alpha", type=float, default=0.2)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription on 2 cores)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    import ray

    import rllib_sit
    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.data import read_dataset

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rllib_sit.register_all()
    rows = []
    for seed in args.seeds:
        cfg = SITConfig().environment(args.env).training(
            ardnem_updates=args.ardnem_updates, agent_updates=args.agent_updates, alpha=args.alpha,
            ardnem_updates_per_iteration=max(1, args.ardnem_updates // 10),
            agent_updates_per_iteration=max(1, args.agent_updates // 10),
            dataset={"quality": args.quality, "episodes": args.episodes, "seed": 0}
        ).evaluation(evaluation_duration=args.eval_episodes).debugging(seed=seed)
        if args.input:
            cfg.offline_data(input_=args.input)
        t0 = time.time()
        algo = cfg.build_algo()
        res = None
        while not algo.schedule.finished:
            res = algo.train()
            print(f"seed {seed} iter {res['training_iteration']} {res['phases']['current']} "
                  f"{time.time() - t0:.0f}s", flush=True)
        ev = algo.evaluate()["env_runners"]
        ds = read_dataset(algo.dataset_path, validate="none")
        behaviour = float(ds.to_numpy(["episode_return"])["episode_return"].mean())
        rows.append({"seed": seed, "eval_return_mean": ev["episode_return_mean"],
                     "eval_return_std": ev["episode_return_std"], "win_rate": ev.get("win_rate"),
                     "behaviour_return": behaviour, "r_hat_mean_per_agent": res["algorithm"]["r_hat_mean_per_agent"],
                     "dper_ess": {t: d["ess"] for t, d in res["algorithm"]["dper"].items()},
                     "seconds": round(time.time() - t0, 1), "dataset": algo.dataset_path})
        algo.stop()
    ev = np.array([r["eval_return_mean"] for r in rows])
    summary = {"env": args.env, "quality": args.quality, "episodes": args.episodes,
               "ardnem_updates": args.ardnem_updates, "agent_updates": args.agent_updates,
               "eval_return_mean_over_seeds": float(ev.mean()), "eval_return_std_over_seeds": float(ev.std()),
               "behaviour_return": rows[0]["behaviour_return"], "runs": rows}
    print("command: python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])))
    print("| seed | eval return | win rate | behaviour | r̂ per agent | DPER ESS |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rh = ", ".join(f"{a}={v:.3f}" for a, v in r["r_hat_mean_per_agent"].items())
        ess = ", ".join(f"{t}={v:.1f}" for t, v in r["dper_ess"].items())
        print(f"| {r['seed']} | {r['eval_return_mean']:.2f} ± {r['eval_return_std']:.2f} | {r['win_rate']} | "
              f"{r['behaviour_return']:.2f} | {rh} | {ess} |")
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
