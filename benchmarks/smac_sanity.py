"""Sanity benchmark of the SMAC simulator: random vs heuristic policy on every map, and speed.

For each map: win rate, mean return (± std) and mean episode length over N episodes of the
uniform-random and the scripted heuristic policy, and env steps per second of the random policy
through the PettingZoo ``ParallelEnv.step`` API (one process). ``--skills`` adds the mean return
of ``heuristic_action(..., skill=s)`` on one map (the knob behaviour-policy pools use).

Usage:
    python benchmarks/smac_sanity.py                      # all maps, 100 episodes each
    python benchmarks/smac_sanity.py --maps 2s3z 8m --episodes 20
    python benchmarks/smac_sanity.py --maps 2s3z --skills 0 0.25 0.5 0.75 1
Episode e of a run uses ``reset(seed=e)``; the policies draw from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from rllib_sit.envs import make_env
from rllib_sit.envs.smac import MAPS
from rllib_sit.envs.smac.policies import heuristic_actions, random_actions


def run_episodes(env, policy, episodes: int, seed: int):
    """Returns (wins, returns, lengths) of ``episodes`` episodes of ``policy(env, rng)``."""
    rng = np.random.default_rng(seed)
    wins, rets, lens = 0, [], []
    for ep in range(episodes):
        env.reset(seed=ep)
        total, steps, done = 0.0, 0, False
        while not done:
            r, te, tr, info = env._step(policy(env, rng))
            total += r
            steps += 1
            done = te or tr
        wins += int(info["battle_won"])
        rets.append(total)
        lens.append(steps)
    return wins, np.array(rets), np.array(lens)


def steps_per_second(env, n_steps: int, seed: int):
    """Random-policy env steps/s through the ParallelEnv dict API (resets included), per second of
    wall-clock time and per second of this process's CPU time (less sensitive to other load)."""
    rng = np.random.default_rng(seed)
    agents = env.possible_agents
    env.reset(seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        a = random_actions(env, rng)
        _, _, term, trunc, _ = env.step(dict(zip(agents, a.tolist())))
        if term[agents[0]] or trunc[agents[0]]:
            env.reset()
    return n_steps / (time.perf_counter() - t0), n_steps / max(time.process_time() - c0, 1e-9)


def reference_op_us(n: int = 200_000) -> float:
    """Microseconds of one tiny NumPy op: a yardstick for how loaded this machine is (~0.3-0.5 us idle)."""
    a = np.ones(10)
    t0 = time.perf_counter()
    for _ in range(n):
        a + a
    return (time.perf_counter() - t0) / n * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--maps", nargs="+", default=list(MAPS), help="maps (default: all)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--speed-steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-only", action="store_true", help="only measure steps/s")
    p.add_argument("--skills", nargs="*", type=float, default=None,
                   help="also report mean heuristic return at these skill levels (first map)")
    args = p.parse_args(argv)
    for m in args.maps:
        if m not in MAPS:
            p.error(f"--maps: unknown map {m!r}; expected some of {list(MAPS)}")
    if args.episodes < 1:
        p.error("--episodes must be >= 1")
    print("command: python benchmarks/smac_sanity.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"host: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at start; "
          f"reference op (numpy add of two 10-float arrays): {reference_op_us():.2f} us")
    if args.speed_only:
        print("| map | steps/s wall | steps/s CPU |")
        print("|---|---|---|")
        for m in args.maps:
            sps, cps = steps_per_second(make_env(f"smac:{m}"), args.speed_steps, args.seed)
            print(f"| {m} | {sps:,.0f} | {cps:,.0f} |", flush=True)
        return 0
    header = ("| map | random win | random return | heuristic win | heuristic return | "
              "random len | heuristic len | steps/s wall (CPU) |")
    print(header)
    print("|" + "---|" * 8)
    for m in args.maps:
        env = make_env(f"smac:{m}")
        rw, rr, rl = run_episodes(env, random_actions, args.episodes, args.seed)
        hw, hr, hl = run_episodes(env, heuristic_actions, args.episodes, args.seed)
        sps, cps = steps_per_second(env, args.speed_steps, args.seed)
        n = args.episodes
        print(f"| {m} | {rw / n:.2f} | {rr.mean():.2f} ± {rr.std():.2f} | {hw / n:.2f} | "
              f"{hr.mean():.2f} ± {hr.std():.2f} | {rl.mean():.1f} | {hl.mean():.1f} | {sps:,.0f} ({cps:,.0f}) |", flush=True)
    if args.skills:
        m = args.maps[0]
        env = make_env(f"smac:{m}")
        print(f"\nheuristic skill -> return on {m} ({args.episodes} episodes each)")
        print("| skill | win rate | return |")
        print("|---|---|---|")
        for s in args.skills:
            w, r, _ = run_episodes(env, lambda e, g, s=s: heuristic_actions(e, g, skill=s), args.episodes, args.seed)
            print(f"| {s:g} | {w / args.episodes:.2f} | {r.mean():.2f} ± {r.std():.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
