"""Shared helper of the SMAC tests: play seeded episodes with a scripted policy."""

import numpy as np


def play_episodes(env, policy, seeds, rng_seed=0):
    """Returns ([episode returns], number of wins) of ``policy(env, rng)`` over ``seeds``."""
    rng = np.random.default_rng(rng_seed)
    out, wins = [], 0
    for s in seeds:
        env.reset(seed=s)
        total, done, info = 0.0, False, {}
        while not done:
            r, te, tr, info = env._step(policy(env, rng))
            total += r
            done = te or tr
        out.append(total)
        wins += int(info.get("battle_won", False))
    return np.array(out), wins
