"""Rolling a team of per-agent behaviour policies out and measuring its return: what pool
calibration (:mod:`.pool_calibration`) and the dataset fit (:mod:`.pool_fit`) both measure with."""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from rllib_sit.data.pool_card import AgentPolicy
from rllib_sit.envs.base import CoopEnv


def run_episode(env: CoopEnv, policies: Sequence[AgentPolicy], seed: int) -> Tuple[float, Dict[str, np.ndarray]]:
    """One episode with agent i acting by ``policies[i]``; returns (return, agent_stats).

    All randomness comes from ``seed``: the env reset seed and one generator per agent.
    """
    ss = np.random.SeedSequence([int(seed)])
    env_seed, *agent_ss = ss.spawn(1 + len(policies))
    rngs = [np.random.default_rng(s) for s in agent_ss]
    obs_d, _ = env.reset(seed=int(env_seed.generate_state(1)[0]))
    agents = env.possible_agents
    total, done = 0.0, False
    while not done:
        obs = np.stack([obs_d[a] for a in agents])
        acts = {a: policies[i](env, i, rngs[i], obs) for i, a in enumerate(agents)}
        obs_d, rew, term, trunc, _ = env.step(acts)
        total += float(next(iter(rew.values())))
        done = any(term.values()) or any(trunc.values())
    return total, env.agent_stats()


def measure(env: CoopEnv, policy: AgentPolicy, n_episodes: int, seed: int) -> Dict[str, Any]:
    """Return mean/std over ``n_episodes`` with every agent using ``policy`` (episode seeds seed+k)."""
    rets, stats = [], []
    for k in range(n_episodes):
        r, st = run_episode(env, [policy] * env.info.n_agents, seed + k)
        rets.append(r)
        stats.append({name: float(np.mean(v)) for name, v in st.items()})
    rets = np.asarray(rets)
    out: Dict[str, Any] = {"mean": round(float(rets.mean()), 3), "std": round(float(rets.std()), 3), "n": int(n_episodes),
                           "first10_mean": round(float(rets[:10].mean()), 3)}  # cheap reproducibility check
    if stats and stats[0]:
        out["agent_stats_mean"] = {k: round(float(np.mean([s[k] for s in stats])), 3) for k in stats[0]}
    return out
