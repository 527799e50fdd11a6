"""Greedy evaluation of SIT's actors on the registered environment (decentralised execution).

Each agent acts with the actor of its type on its own τ_i = (o_i, a_i^{t-1}) and GRU state:
arg max over available actions (discrete) or the tanh mean (continuous).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch


def greedy_rollouts(env_id: str, modules: Dict[str, Any], info, n_episodes: int, seed: int = 0,
                    env_config: Dict[str, Any] | None = None) -> Dict[str, float]:
    from rllib_sit.envs.registry import make_env

    env = make_env(env_id, **(env_config or {}))
    types = info.type_names()
    members = {t: info.agents_of_type(t) for t in types}
    returns, lengths, wins = [], [], []
    for ep in range(n_episodes):
        obs_d, _ = env.reset(seed=seed + ep)
        h = {t: modules[t].actor.initial_state(len(members[t])) for t in types}
        if info.discrete:
            prev = np.full(info.n_agents, -1, np.int64)
        else:
            prev = np.zeros((info.n_agents, info.act_dim), np.float32)
        done, ret, steps, won = False, 0.0, 0, False
        while not done:
            obs = np.stack([obs_d[a] for a in env.possible_agents]).astype(np.float32)
            avail = env.action_masks() if info.discrete else None
            actions = np.zeros_like(prev)
            for t in types:
                idx = members[t]
                a, h[t] = modules[t].act(torch.as_tensor(obs[idx]), torch.as_tensor(prev[idx]), h[t],
                                         None if avail is None else torch.as_tensor(np.asarray(avail[idx], np.float32)))
                actions[idx] = a.numpy()
            obs_d, rew, term, trunc, infos = env.step({a: actions[i] for i, a in enumerate(env.possible_agents)})
            ret += float(next(iter(rew.values())))
            steps += 1
            prev = actions
            done = any(term.values()) or any(trunc.values())
            first = infos.get(env.possible_agents[0], {}) if isinstance(infos, dict) else {}
            won = won or bool(first.get("battle_won", False))
            has_win = "battle_won" in first
        returns.append(ret)
        lengths.append(steps)
        if has_win:
            wins.append(float(won))
    out = {"episode_return_mean": float(np.mean(returns)), "episode_return_std": float(np.std(returns)),
           "episode_return_min": float(np.min(returns)), "episode_return_max": float(np.max(returns)),
           "episode_len_mean": float(np.mean(lengths)), "num_episodes": int(n_episodes)}
    if wins:
        out["win_rate"] = float(np.mean(wins))
    env.close()
    return out
