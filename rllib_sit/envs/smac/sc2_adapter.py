"""``SC2CoopEnv``: the package's SMAC interface on oxwhirl's real ``smac.env.StarCraft2Env``.

Use ``make_env("smac:2s3z", backend="sc2", **starcraft2env_kwargs)`` on a machine with
StarCraft II and oxwhirl's SMAC (``pip install git+https://github.com/oxwhirl/smac.git``; the PyPI
package ``smac`` is SMAC3, an unrelated optimiser). The translation is unit-tested against a fake
that follows StarCraft2Env's documented API; it has NOT been run against StarCraft II.

Translation: ``get_obs()`` -> ``[N, obs_dim]``, ``get_state()``, ``get_avail_actions()`` ->
masks, ``step(actions) -> (reward, terminated, info)`` -> ``(reward, terminated, truncated, info)``
where reaching the episode limit without a decided battle is reported as ``truncated=True``
(``info["episode_limit"] = True``). StarCraft II is seeded once at construction (``seed=``
kwarg); ``reset(seed=...)`` cannot reseed a running game and rebuilds the wrapped env instead.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np

from rllib_sit.envs.base import CoopEnv, EnvInfo
from rllib_sit.envs.smac.maps import agent_names, get_map

_INSTALL_HINT = ("backend='sc2' needs oxwhirl's SMAC and StarCraft II: "
                 "pip install git+https://github.com/oxwhirl/smac.git and set SC2PATH "
                 "(the PyPI package 'smac' is SMAC3, an unrelated optimiser -- do not install it)")


def _default_factory(**kwargs):
    try:
        from smac.env import StarCraft2Env  # type: ignore
    except ImportError as exc:  # also SMAC3, which has no smac.env
        raise ImportError(_INSTALL_HINT) from exc
    return StarCraft2Env(**kwargs)


class SC2CoopEnv(CoopEnv):
    """A :class:`CoopEnv` over ``StarCraft2Env`` (or any object with its API).

    Args:
        map_name: SMAC map name (one of the maps this package knows, for agent ids and types).
        env_factory: ``(**kwargs) -> StarCraft2Env``-like object; default imports oxwhirl's SMAC.
        **sc2_kwargs: passed to the factory (e.g. ``seed``, ``difficulty``, ``replay_dir``).
    """

    def __init__(self, map_name: str, env_factory: Optional[Callable[..., Any]] = None, **sc2_kwargs):
        self.map = get_map(map_name)
        self._factory = env_factory or _default_factory
        self._kwargs = dict(sc2_kwargs, map_name=map_name)
        self.sc2 = self._factory(**self._kwargs)
        ei = self.sc2.get_env_info()
        if int(ei["n_agents"]) != self.map.n_agents:
            raise ValueError(f"StarCraft2Env({map_name!r}) reports n_agents={ei['n_agents']}; "
                             f"expected {self.map.n_agents}")
        self.n_agents = int(ei["n_agents"])
        self.n_actions = int(ei["n_actions"])
        self.episode_limit = int(ei["episode_limit"])
        self.info = EnvInfo(env_id=f"smac:{map_name}", agents=agent_names(self.map),
                            agent_types=self.map.ally_types(), obs_dim=int(ei["obs_shape"]),
                            state_dim=int(ei["state_shape"]), episode_limit=self.episode_limit,
                            discrete=True, n_actions=self.n_actions)
        super().__init__()
        self.episode_steps = 0
        self._masks = np.zeros((self.n_agents, self.n_actions), np.float32)

    def _reset(self, seed: Optional[int]) -> None:
        if seed is not None and self._kwargs.get("seed") != seed:
            self.sc2.close()
            self._kwargs["seed"] = seed
            self.sc2 = self._factory(**self._kwargs)
        self.sc2.reset()
        self.episode_steps = 0
        self._masks = self._read_masks()

    def _read_masks(self) -> np.ndarray:
        return np.asarray(self.sc2.get_avail_actions(), dtype=np.float32).reshape(self.n_agents, self.n_actions)

    def _step(self, actions: np.ndarray):
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.n_agents,) or ((actions < 0) | (actions >= self.n_actions)).any():
            raise ValueError(f"actions must be {self.n_agents} integers in [0, {self.n_actions}); got {actions.tolist()}")
        reward, terminated, sc2_info = self.sc2.step(actions.tolist())
        self.episode_steps += 1
        info: Dict[str, Any] = dict(sc2_info or {})
        info["battle_won"] = bool(info.get("battle_won", False))
        info.setdefault("dead_allies", 0)
        info.setdefault("dead_enemies", 0)
        decided = info["battle_won"] or info["dead_allies"] >= self.n_agents
        at_limit = bool(info.get("episode_limit", False)) or self.episode_steps >= self.episode_limit
        truncated = bool(terminated) and at_limit and not decided
        info["episode_limit"] = truncated
        self._masks = self._read_masks()
        return float(reward), bool(terminated) and not truncated, truncated, info

    def _obs(self) -> np.ndarray:
        return np.asarray(self.sc2.get_obs(), dtype=np.float32).reshape(self.n_agents, self.info.obs_dim)

    def state(self) -> np.ndarray:
        return np.asarray(self.sc2.get_state(), dtype=np.float32).reshape(self.info.state_dim)

    def action_masks(self) -> np.ndarray:
        return self._masks.copy()

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Only ``alive`` (dead agents have the no-op as their sole action); SC2 gives no per-agent damage."""
        dead = (self._masks[:, 0] > 0) & (self._masks[:, 1:].sum(1) == 0)
        return {"alive": (~dead).astype(np.float64)}

    def close(self) -> None:
        self.sc2.close()
