"""Where do a trained DG policy's agents go? (a probe for ``benchmarks/vdtn_dg_learning.py``; not a test)

    python benchmarks/vdtn_dg_policy.py results/vdtn_dg/tune/*/*/checkpoint_000000

For each checkpoint of ``VDTN_TD3BC`` (or any algorithm with per-agent modules ``a1``/``a2`` on
``mpe:dg`` / ``mpe:dg_partial`` / ``mpe:dg50`` / ``mpe:dg50_partial``): ``--episodes`` greedy episodes from uniform starts in [-1, 1]²
(seeded), run vectorised with the env's own dynamics and reward (``x <- clip(x + a, -1, 1)``,
``dg_reward``), and printed: the mean return, the share of episodes that end at the global optimum
(l < 0.2), on the outer ring (l > 0.6) and in a corner (both |x| > 0.9), and agent ``a1``'s speed
(in units of the limit 0.1) on a 9 × 9 grid of (x1, x2) (one column under partial observation);
then the spread of λ_vd that the final target networks give on ``--transitions`` dataset transitions
per agent (quantiles; the training metrics hold only its mean and the share at the clip).
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


def lambda_vd_quantiles(algo, n: int, q=(0.01, 0.05, 0.5, 0.95, 0.99)):
    """λ_vd (the learner's own function, with the config's γ, ε) of ``n`` transitions per agent."""
    from rllib_sit.algorithms.vdtn import vdtn_learner as V
    from rllib_sit.algorithms.vdtn.torch.vdtn_torch_learner import value_deviation_weights

    cfg, out = algo.config, {}
    for m, batch in algo.sampler.sample(n).items():
        module = algo.learner_group._learner.module[m].unwrapped()
        b = {k: torch.as_tensor(v) for k, v in batch.items()}
        with torch.no_grad():
            f = module.forward_td(b)
            lvd = value_deviation_weights(f[V.V_NEXT_TARGET], f[V.Q_TAKEN_TARGET], b[V.REWARD], b[V.BOOTSTRAP],
                                          cfg.gamma, cfg.optimism, cfg.vd_min_denominator, cfg.vd_terminal).numpy()
        out[m] = (np.quantile(lvd, q), float(np.mean(np.abs(lvd - 1.0) > 0.1)), float(f[V.Q_TAKEN_TARGET].mean()))
    return q, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--steps", type=int, help="episode length (default: the checkpoint env's, 25 on mpe:dg, 50 on "
                                               "mpe:dg50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--transitions", type=int, default=10000, help="per agent, for the λ_vd quantiles")
    args = ap.parse_args()
    import ray

    import rllib_sit
    from ray.rllib.algorithms.algorithm import Algorithm

    from rllib_sit.envs.registry import make_env

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    rllib_sit.register_all()
    print(f"$ python benchmarks/vdtn_dg_policy.py --episodes {args.episodes} --steps {args.steps or 'env'} "
          f"--seed {args.seed} "
          f"--transitions {args.transitions} ...")
    for ck in args.checkpoints:
        algo = Algorithm.from_checkpoint(os.path.abspath(ck))
        try:
            modules = {m: algo.learner_group._learner.module[m].unwrapped() for m in ("a1", "a2")}
            partial = str(algo.config.env).endswith("_partial")  # mpe:dg_partial, mpe:dg50_partial
            steps = args.steps or make_env(algo.config.env).info.episode_limit
            r, origin, ring, corner, field = probe(modules, partial, args.episodes, steps, args.seed)
            qs, lvd = lambda_vd_quantiles(algo, args.transitions)
        finally:
            algo.stop()
        print(f"\n{ck}\n  return {r:.2f}; episodes ending at the origin {origin:.2f}, on the ring {ring:.2f}, "
              f"in a corner {corner:.2f}\n  a1's speed / 0.1 (rows x1 = -1 .. 1" + ("" if partial else
                                                                                  ", columns x2 = -1 .. 1") + "):")
        print(np.array2string(field, precision=2, suppress_small=True, max_line_width=120))
        for m, (quant, far, qmean) in lvd.items():
            print(f"  {m}: λ_vd quantiles {dict(zip(qs, np.round(quant, 3).tolist()))}, |λ_vd − 1| > 0.1 in "
                  f"{far:.3f} of {args.transitions}; mean Q̂(s, a_i) {qmean:.2f}")


if __name__ == "__main__":
    main()
