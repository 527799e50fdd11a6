"""Small datasets for tests, smoke runs and I/O benchmarks.

* :func:`make_random_dataset` — real episodes of a registered env under uniform random actions.
* :func:`synthetic_rows` — schema-valid random episodes of any :class:`EnvInfo` without running an
  env (I/O benchmarks at a realistic size, e.g. 2s3z's [121, 5, 80] observations).
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.data.episode import Row, rollout_episode
from rllib_sit.data.io import write_dataset
from rllib_sit.envs.base import CoopEnv, EnvInfo, uniform_random_actions


def make_random_dataset(env: Union[str, CoopEnv], n_episodes: int, path: str, seed: int = 0,
                        overwrite: bool = False) -> str:
    """Roll out ``n_episodes`` uniformly random episodes of ``env`` and write them to ``path``.

    Episode ``k`` is reset with seed ``seed + k`` and acts from ``np.random.default_rng((seed, k))``,
    so the dataset is a pure function of ``seed``.
    """
    if isinstance(env, str):
        from rllib_sit.envs.registry import make_env

        env = make_env(env)
    stat_names = list(env.agent_stats().keys()) if _has_stats(env) else []
    meta = S.DatasetMeta(env=env.info, agent_stat_names=stat_names)

    def rows() -> Iterator[Row]:
        for k in range(n_episodes):
            rng = np.random.default_rng((seed, k))
            yield rollout_episode(env, lambda e, _obs, rng=rng: uniform_random_actions(e, rng), seed=seed + k,
                                  episode_id=k, policy_levels=[S.LEVELS["r"]] * env.info.n_agents)

    card = {"quality": "random", "composition": f"100% [{', '.join(a + ':r' for a in env.info.agents)}]",
            "generating_policies": {"r": "uniform over available actions"}, "seed": seed}
    return write_dataset(rows(), path, meta, card, overwrite=overwrite)


def _has_stats(env: CoopEnv) -> bool:
    env.reset(seed=0)
    return bool(env.agent_stats())


def synthetic_rows(env: EnvInfo, n_episodes: int, seed: int = 0, min_length: int = 20) -> Iterator[Row]:
    """Random but schema-valid episodes (lengths in [min_length, T]); no simulator needed."""
    rng = np.random.default_rng(seed)
    T, N = env.episode_limit, env.n_agents
    for k in range(n_episodes):
        L = int(rng.integers(min(min_length, T), T + 1))
        obs = np.zeros((T + 1, N, env.obs_dim), np.float32)
        obs[: L + 1] = rng.standard_normal((L + 1, N, env.obs_dim), dtype=np.float32)
        state = np.zeros((T + 1, env.state_dim), np.float32)
        state[: L + 1] = rng.standard_normal((L + 1, env.state_dim), dtype=np.float32)
        reward = np.zeros(T, np.float32)
        reward[:L] = rng.random(L, dtype=np.float32)
        term = np.zeros(T, np.uint8)
        term[L - 1] = 1
        row: Row = {S.OBS: obs, S.STATE: state, S.REWARD: reward, S.TERMINATED: term,
                    S.TRUNCATED: np.zeros(T, np.uint8), S.FILLED: (np.arange(T) < L).astype(np.uint8),
                    S.LENGTH: np.int32(L), S.EPISODE_RETURN: np.float32(reward.sum()), S.EPISODE_ID: np.int64(k)}
        if env.discrete:
            avail = np.zeros((T + 1, N, env.n_actions), np.float32)
            avail[: L + 1] = rng.random((L + 1, N, env.n_actions)) < 0.6
            avail[: L + 1, :, 1] = 1.0  # "stop" always available so every step has an action
            actions = np.zeros((T, N), np.int64)
            scores = rng.random((L, N, env.n_actions)) * avail[:L]
            actions[:L] = scores.argmax(-1)
            row[S.AVAIL_ACTIONS], row[S.ACTIONS] = avail, actions
        else:
            actions = np.zeros((T, N, env.act_dim), np.float32)
            actions[:L] = rng.uniform(env.action_low, env.action_high, (L, N, env.act_dim))
            row[S.ACTIONS] = actions
        yield row


SMAC_2S3Z_INFO = EnvInfo(env_id="smac:2s3z", agents=["s1", "s2", "z1", "z2", "z3"],
                         agent_types=["stalker", "stalker", "zealot", "zealot", "zealot"],
                         obs_dim=80, state_dim=120, episode_limit=120, discrete=True, n_actions=11)
"""2s3z's sizes (SMAC spec), for benchmarks that must not depend on the simulator."""
