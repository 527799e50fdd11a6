"""Sanity benchmark of the non-SMAC environments: env steps/s and episode returns of reference policies.

For every env: steps/s of ``env.step`` alone (policy time excluded) under uniformly random
actions, and mean +- std episode return of the random policy and of the scripted heuristic
(skill 1) over ``--episodes`` episodes (reset seeds ``seed .. seed + episodes - 1``; the policy RNG
is ``numpy.random.default_rng(seed)``). For CN_3ls3l, CN_4ls4l and PP_3p1p (and the two MAMuJoCo
SIT maps) also the returns at ``--skills`` (probability ``1 - skill`` of a random action per agent
and step). The SIT paper's random-pool range (Tables 5/6) is printed next to each SIT map.

    python benchmarks/envs_sanity.py                    # all envs, 100 episodes (a few minutes)
    python benchmarks/envs_sanity.py --episodes 10 --envs mpe:cn_3ls3l matrix:vdtn
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from rllib_sit.envs import make_env, uniform_random_actions
from rllib_sit.envs.base import CoopEnv, actions_to_dict

DEFAULT_ENVS = ["mpe:cn_3ls3l", "mpe:cn_4ls4l", "mpe:pp_3p1p", "mpe:dg", "matrix:vdtn",
                "mamujoco:halfcheetah_2l", "mamujoco:walker_2l", "mamujoco:hopper_3x1", "mamujoco:ant_2x4"]
SKILL_ENVS = {"mpe:cn_3ls3l", "mpe:cn_4ls4l", "mpe:pp_3p1p", "mamujoco:halfcheetah_2l", "mamujoco:walker_2l"}
# SIT paper Tables 5/6: (random pool, medium pool, expert pool) return ranges
SIT_POOLS = {
    "mpe:cn_3ls3l": ((-174.41, -133.28), (-133.28, -78.44), (-78.44, -37.32)),
    "mpe:cn_4ls4l": ((-288.89, -214.47), (-214.47, -115.24), (-115.24, -40.81)),
    "mpe:pp_3p1p": ((-306.57, -231.08), (-231.08, -130.44), (-130.44, -54.96)),
    "mamujoco:halfcheetah_2l": ((-203.47, -69.42), (-69.42, 64.63), (64.63, 198.70)),
    "mamujoco:walker_2l": ((-74.51, 27.35), (27.35, 129.21), (129.21, 231.09)),
}

Policy = Callable[[CoopEnv, np.random.Generator], np.ndarray]


def heuristic_policy(env_id: str, skill: float) -> Optional[Policy]:
    """The family's scripted policy at ``skill`` (None where the env has none)."""
    family, scenario = env_id.split(":")
    if family == "mpe":
        from rllib_sit.envs.mpe_policies import heuristic_actions
        return lambda env, rng: heuristic_actions(env, rng, skill)
    if family == "mamujoco":
        from rllib_sit.envs.mamujoco import GAITS, heuristic_actions
        return (lambda env, rng: heuristic_actions(env, rng, skill)) if scenario in GAITS else None
    if family == "matrix":
        from rllib_sit.envs.games import OPTIMAL_ACTIONS
        return lambda env, rng: OPTIMAL_ACTIONS.copy()
    return None


def extra_policies(env_id: str) -> Dict[str, Policy]:
    """Named extra policies worth a row (the matrix game's behaviour policies)."""
    if env_id.startswith("matrix:"):
        from rllib_sit.envs.games import behaviour_actions
        return {"behaviour [0.8,0.2]x[0.4,0.6]": lambda env, rng: behaviour_actions(rng)}
    return {}


def run_policy(env: CoopEnv, policy: Policy, episodes: int, seed: int) -> Tuple[np.ndarray, float, int]:
    """Returns (episode returns, seconds spent in env.step, steps)."""
    rng = np.random.default_rng(seed)
    returns, step_time, steps = np.zeros(episodes), 0.0, 0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            acts = actions_to_dict(env, policy(env, rng))
            t0 = time.perf_counter()
            _, rew, term, trunc, _ = env.step(acts)
            step_time += time.perf_counter() - t0
            steps += 1
            total += rew[env.possible_agents[0]]
            done = any(term.values()) or any(trunc.values())
        returns[ep] = total
    return returns, step_time, steps


def fmt(r: np.ndarray) -> str:
    return f"{r.mean():.2f} ± {r.std():.2f}"


def where_in_pools(env_id: str, value: float) -> str:
    if env_id not in SIT_POOLS:
        return ""
    for name, (lo, hi) in zip(("random", "medium", "expert"), SIT_POOLS[env_id]):
        if lo <= value <= hi:
            return name
    return "below random" if value < SIT_POOLS[env_id][0][0] else "above expert"


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=DEFAULT_ENVS)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--skills", nargs="*", type=float, default=[0.25, 0.5, 0.75])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.episodes < 1:
        raise SystemExit(f"--episodes must be >= 1, got {args.episodes}")

    print(f"command: python benchmarks/envs_sanity.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"episodes per row {args.episodes}, seed {args.seed}\n")
    print("| env | steps/s | ep. length (random) | random return | heuristic return | SIT random pool | heuristic lands in |")
    print("|---|---|---|---|---|---|---|")
    skill_rows = []
    for env_id in args.envs:
        env = make_env(env_id)
        rand, secs, steps = run_policy(env, uniform_random_actions, args.episodes, args.seed)
        heur = heuristic_policy(env_id, 1.0)
        heur_r = run_policy(env, heur, args.episodes, args.seed)[0] if heur else None
        pool = SIT_POOLS.get(env_id, (None,))[0]
        print(f"| {env_id} | {steps / secs:,.0f} | {steps / args.episodes:.1f} | {fmt(rand)} | "
              f"{fmt(heur_r) if heur_r is not None else '—'} | {f'{pool[0]} to {pool[1]}' if pool else '—'} | "
              f"{where_in_pools(env_id, heur_r.mean()) if heur_r is not None else ''} |", flush=True)
        for name, pol in extra_policies(env_id).items():
            print(f"| {env_id} ({name}) | | | {fmt(run_policy(env, pol, args.episodes, args.seed)[0])} | | | |")
        if env_id in SKILL_ENVS and heur is not None:
            row = [env_id, fmt(rand)]
            for s in args.skills:
                r = run_policy(env, heuristic_policy(env_id, s), args.episodes, args.seed)[0]
                row.append(f"{fmt(r)} ({where_in_pools(env_id, r.mean())})")
            row.append(fmt(heur_r))
            skill_rows.append(row)
        env.close()
    if skill_rows:
        print("\nReturns by heuristic skill (prob. of the heuristic action; else uniform random), "
              "with the SIT pool the mean falls in:\n")
        print("| env | skill 0 (random) | " + " | ".join(f"skill {s}" for s in args.skills) + " | skill 1 |")
        print("|---|---|" + "---|" * len(args.skills) + "---|")
        for row in skill_rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
