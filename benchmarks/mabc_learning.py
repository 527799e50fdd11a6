"""MABC learning benchmark (not a unit test): greedy evaluation return vs the dataset's behaviour return.

    python benchmarks/mabc_learning.py --datasets smac:2s3z:medium mpe:cn_3ls3l:low \
        --episodes 10000 --seeds 0 1 2 --updates 15000 --eval-episodes 32

Per (dataset, seed): trains MABC for ``--updates`` updates (the paper: 15,000, Table 11), evaluates
the greedy actors for ``--eval-episodes`` episodes (and as many with actions sampled from the cloned
policies) and appends one JSON row to ``--results``
(JSON lines). Rows already in the file (same dataset, episodes, updates, evaluation episodes and
seed) are skipped, so an interrupted run resumes where it stopped. Datasets are generated on first
use (``rllib_sit.data.generation.ensure_dataset``, dataset seed ``--dataset-seed``); the behaviour
return is their card's ``return_mean``. Prints a Markdown table of every dataset and the command.
Seeding: ``seed`` drives the learners' torch initialisation, the trajectory sampler and the
evaluation EnvRunner (RLlib's ``debugging(seed=...)``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import numpy as np



def parse_dataset(text: str):
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise SystemExit(f"--datasets: {text!r} is invalid; expected family:scenario:quality, e.g. smac:2s3z:medium")
    return f"{parts[0]}:{parts[1]}", parts[2]


def load_rows(path: str):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# Values of settings added after rows were written (those rows ran with them).
ROW_DEFAULTS = {"module_mapping": "agent_type"}


def same_run(row, key) -> bool:
    return all(row.get(k, ROW_DEFAULTS.get(k)) == v for k, v in key.items())


def run_one(env: str, path: str, seed: int, args):
    from rllib_sit.algorithms.mabc import MABCConfig

    cfg = (MABCConfig().environment(env).offline_data(input_=path)
           .training(agent_updates=args.updates, agent_updates_per_iteration=args.updates_per_iteration,
                     num_torch_threads=args.threads, module_mapping=args.module_mapping)
           .evaluation(evaluation_duration=args.eval_episodes).debugging(seed=seed))
    algo = cfg.build_algo()
    t0 = time.time()
    try:
        learners, curve = {}, []
        while not algo.schedule.finished:
            res = algo.train()
            learners = {m: v for m, v in res["learners"].items() if isinstance(v, dict) and "bc_loss" in v}
            curve.append(dict(updates=int(res["phases"]["bc_updates_done"]),
                              **{m: round(float(v["bc_loss"]), 4) for m, v in learners.items()}))
            stats = " ".join(f"{m} loss {v['bc_loss']:.3f}" + (f" acc {v['greedy_accuracy']:.2f}"
                                                              if "greedy_accuracy" in v else "")
                             for m, v in learners.items())
            print(f"  {env} seed {seed} iter {res['training_iteration']} "
                  f"updates {int(res['phases']['bc_updates_done'])}/{args.updates} {stats}", flush=True)
        ev = algo.evaluate()["env_runners"]  # greedy (syncs the learners' weights to the EnvRunner)
        sampled = sampled_returns(algo, args.eval_episodes)
    finally:
        algo.stop()
    return {"eval_return_mean": float(ev["episode_return_mean"]), "eval_return_std": float(ev["episode_return_std"]),
            "eval_episodes_done": int(ev["num_episodes"]), "win_rate": ev.get("win_rate"),
            "sampled_return_mean": float(np.mean(sampled)), "sampled_return_std": float(np.std(sampled)),
            "final_bc_loss": {m: float(v["bc_loss"]) for m, v in learners.items()},
            "final_greedy_accuracy": {m: float(v["greedy_accuracy"]) for m, v in learners.items()
                                      if "greedy_accuracy" in v},
            "bc_loss_curve": curve, "train_seconds": round(time.time() - t0, 1)}


def sampled_returns(algo, n: int):
    """Team returns of ``n`` episodes with actions *sampled* from the cloned policies (explore=True)
    on the evaluation EnvRunner: a faithful clone of a stochastic behaviour policy lands near the
    behaviour return this way, while the greedy policy may not."""
    from rllib_sit.algorithms.common.evaluation import team_return

    runner = algo.eval_env_runner_group.local_env_runner
    return [team_return(ep) for ep in runner.sample(num_episodes=n, explore=True)]


def table(rows, datasets, args) -> str:
    out = ["| dataset | episodes | behaviour return (card) | MABC greedy return, mean ± std over seeds | "
           "per seed | win rate | greedy − behaviour | MABC sampled-action return |", "|---|---|---|---|---|---|---|---|"]
    for env, quality in datasets:
        rs = sorted((r for r in rows if same_run(r, dict(env=env, quality=quality, episodes=args.episodes,
                                                           dataset_seed=args.dataset_seed, updates=args.updates,
                                                           eval_episodes=args.eval_episodes,
                                                           module_mapping=args.module_mapping))),
                    key=lambda r: r["seed"])
        if not rs:
            continue
        ev = np.array([r["eval_return_mean"] for r in rs])
        beh = rs[0]["behaviour_return_mean"]
        wins = [r["win_rate"] for r in rs if r.get("win_rate") is not None]
        win = f"{np.mean(wins):.2f}" if wins else "–"
        per_seed = ", ".join(f"{r['eval_return_mean']:.2f}" for r in rs)
        sm = np.array([r["sampled_return_mean"] for r in rs])
        mapping = "" if args.module_mapping == "agent_type" else f" ({args.module_mapping} modules)"
        out.append(f"| {env} {quality}{mapping} | {args.episodes} | {beh:.2f} ± {rs[0]['behaviour_return_std']:.2f} | "
                   f"{ev.mean():.2f} ± {ev.std():.2f} ({len(rs)} seeds) | {per_seed} | {win} | "
                   f"{ev.mean() - beh:+.2f} ({100 * (ev.mean() - beh) / abs(beh):+.1f} %) | {sm.mean():.2f} ± {sm.std():.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["smac:2s3z:medium", "mpe:cn_3ls3l:low"],
                   help="family:scenario:quality of each dataset")
    p.add_argument("--episodes", type=int, default=10000, help="episodes per dataset (paper: 10,000)")
    p.add_argument("--dataset-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--updates", type=int, default=15000, help="BC updates (Table 11: 15,000)")
    p.add_argument("--updates-per-iteration", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the learner")
    p.add_argument("--module-mapping", default="agent_type", choices=["agent_type", "agent_id"],
                   help="one actor per agent type (default) or per agent (Eq. 11's θ_i)")
    p.add_argument("--results", default=os.path.join("results", "mabc_learning.jsonl"))
    args = p.parse_args(argv)
    datasets = [parse_dataset(d) for d in args.datasets]

    import ray

    import rllib_sit
    from rllib_sit.data.card import read_card
    from rllib_sit.data.generation import ensure_dataset

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rllib_sit.register_all()
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    rows = load_rows(args.results)
    for env, quality in datasets:
        path = str(ensure_dataset(env, quality, n_episodes=args.episodes, seed=args.dataset_seed))
        card = read_card(path)
        for seed in args.seeds:
            key = dict(env=env, quality=quality, episodes=args.episodes, dataset_seed=args.dataset_seed,
                       updates=args.updates, eval_episodes=args.eval_episodes,
                       module_mapping=args.module_mapping, seed=seed)
            if any(same_run(r, key) for r in rows):
                print(f"{env} {quality} seed {seed}: done before, skipped ({args.results})", flush=True)
                continue
            row = dict(key, dataset=path, behaviour_return_mean=float(card["return_mean"]),
                       behaviour_return_std=float(card["return_std"]), **run_one(env, path, seed, args))
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{env} {quality} seed {seed}: return {row['eval_return_mean']:.2f} "
                  f"(behaviour {row['behaviour_return_mean']:.2f})", flush=True)
    ray.shutdown()
    argv_ = sys.argv[1:] if argv is None else list(argv)
    print("\ncommand: python benchmarks/mabc_learning.py " + " ".join(shlex.quote(a) for a in argv_))
    print(table(rows, datasets, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
