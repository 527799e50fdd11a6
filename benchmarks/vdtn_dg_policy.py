"""Where do a trained DG policy's agents go? (a probe for ``benchmarks/vdtn_dg_learning.py``; not a test)

    python benchmarks/vdtn_dg_policy.py results/vdtn_dg/tune/*/*/checkpoint_000000

For each checkpoint of ``VDTN_TD3BC`` (or any algorithm with per-agent modules ``a1``/``a2`` on
``mpe:dg`` / ``mpe:dg_partial``): ``--episodes`` greedy episodes from uniform starts in [-1, 1]²
(seeded), run vectorised with the env's own dynamics and reward (``x <- clip(x + a, -1, 1)``,
``dg_reward``), and printed: the mean return, the share of episodes that end at the global optimum
(l < 0.2), on the outer ring (l > 0.6) and in a corner (both |x| > 0.9), and agent ``a1``'s speed
(in units of the limit 0.1) on a 9 × 9 grid of (x1, x2) (one column under partial observation).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from rllib_sit.envs.mpe.differential import SPEED_LIMIT, dg_reward


def greedy(module, obs: np.ndarray) -> np.ndarray:
    """The module's greedy action in [-1, 1] for observations ``obs`` [B, obs_dim] (its own normalisation)."""
    with torch.no_grad():
        o = module.norm(torch.as_tensor(np.ascontiguousarray(obs), dtype=torch.float32))
        return module.act(o, None, False).numpy()


def probe(modules, partial: bool, episodes: int, steps: int, seed: int):
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (episodes, 2))
    ret = np.zeros(episodes)
    for _ in range(steps):
        o1, o2 = (x[:, :1], x[:, 1:]) if partial else (x, x[:, ::-1])
        a = np.concatenate([greedy(modules["a1"], o1), greedy(modules["a2"], o2)], 1)
        x = np.clip(x + np.clip(a, -1.0, 1.0) * SPEED_LIMIT, -1.0, 1.0)
        ret += dg_reward(x[:, 0], x[:, 1])
    l = np.sqrt((x ** 2).sum(1))
    grid = np.linspace(-1.0, 1.0, 9)
    x1, x2 = (g.ravel() for g in np.meshgrid(grid, grid, indexing="ij"))
    obs = x1[:, None] if partial else np.stack([x1, x2], 1)
    field = greedy(modules["a1"], obs).reshape(9, 9)[:, :1 if partial else 9]
    return ret.mean(), (l < 0.2).mean(), (l > 0.6).mean(), (np.abs(x).min(1) > 0.9).mean(), field


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--steps", type=int, default=25, help="episode length (mpe:dg's default 25)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import ray

    import rllib_sit
    from ray.rllib.algorithms.algorithm import Algorithm

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    rllib_sit.register_all()
    print(f"$ python benchmarks/vdtn_dg_policy.py --episodes {args.episodes} --steps {args.steps} --seed {args.seed} ...")
    for ck in args.checkpoints:
        algo = Algorithm.from_checkpoint(os.path.abspath(ck))
        try:
            modules = {m: algo.learner_group._learner.module[m].unwrapped() for m in ("a1", "a2")}
            partial = algo.config.env == "mpe:dg_partial"
            r, origin, ring, corner, field = probe(modules, partial, args.episodes, args.steps, args.seed)
        finally:
            algo.stop()
        print(f"\n{ck}\n  return {r:.2f}; episodes ending at the origin {origin:.2f}, on the ring {ring:.2f}, "
              f"in a corner {corner:.2f}\n  a1's speed / 0.1 (rows x1 = -1 .. 1" + ("" if partial else
                                                                                  ", columns x2 = -1 .. 1") + "):")
        print(np.array2string(field, precision=2, suppress_small=True, max_line_width=120))


if __name__ == "__main__":
    main()
