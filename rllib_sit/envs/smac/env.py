"""``SMACEnv``: SMAC's interface (actions, masks, obs, state, reward) on the NumPy simulator."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from rllib_sit.envs.base import CoopEnv, EnvInfo
from rllib_sit.envs.smac.maps import MapSpec, agent_names, get_map
from rllib_sit.envs.smac.obs import MOVE_AMOUNT, MOVE_DIRS, N_ACTIONS_NO_ATTACK, Featurizer
from rllib_sit.envs.smac.sim import Battle
from rllib_sit.envs.smac.units import STEP_MUL

REWARD_DEATH_VALUE = 10.0
REWARD_WIN = 200.0
REWARD_SCALE_RATE = 20.0


class SMACEnv(CoopEnv):
    """One SMAC map as a cooperative PettingZoo ``ParallelEnv`` (see docs/envs/smac.md).

    Args:
        map_name: one of :data:`rllib_sit.envs.smac.maps.MAPS`.
        loops_per_substep: game loops per vectorised simulation sub-step (1, 2, 4, 8; default 2).
        spawn_jitter: uniform spawn-position jitter in map units (0 = fixed layout).
        reward_scale: scale rewards so that the maximal episode return is ``reward_scale_rate``.
        check_actions: raise ValueError on an unavailable action (SMAC asserts); if False an
            unavailable action is executed as "stop" (or no-op for a dead agent), i.e. the agent's
            first available action. ``CoopEnv.step`` applies this rule (and records the replaced
            action in ``infos[agent]["unavailable_action"]``); ``_step`` applies it again for
            callers that bypass ``step``.
    """

    def __init__(self, map_name: str = "2s3z", loops_per_substep: int = 2, spawn_jitter: float = 0.1,
                 reward_scale: bool = True, reward_scale_rate: float = REWARD_SCALE_RATE,
                 check_actions: bool = True):
        self.map: MapSpec = get_map(map_name)
        self.battle = Battle(self.map, loops_per_substep=loops_per_substep, spawn_jitter=spawn_jitter)
        self.feat = Featurizer(self.map, self.battle)
        self.reward_scale = bool(reward_scale)
        self.reward_scale_rate = float(reward_scale_rate)
        if self.reward_scale_rate <= 0:
            raise ValueError(f"reward_scale_rate must be > 0; got {reward_scale_rate!r}")
        self.check_actions = bool(check_actions)
        self.n_agents, self.n_enemies = self.map.n_agents, self.map.n_enemies
        self.n_actions = self.feat.n_actions
        self.episode_limit = self.map.limit
        self.max_reward = self.map.max_reward
        self.info = EnvInfo(env_id=f"smac:{map_name}", agents=agent_names(self.map),
                            agent_types=self.map.ally_types(), obs_dim=self.feat.obs_dim,
                            state_dim=self.feat.state_dim, episode_limit=self.map.limit,
                            discrete=True, n_actions=self.n_actions)
        super().__init__()
        self._ar_ag = np.arange(self.n_agents)
        self._eye = np.eye(self.n_actions, dtype=np.float32)
        self._move_z = (MOVE_DIRS[:, 0] + 1j * MOVE_DIRS[:, 1]) * MOVE_AMOUNT  # N, S, E, W as x + iy
        self._rng = np.random.default_rng()
        self._seeded = False
        self._reset(None)

    # -- CoopEnv API -----------------------------------------------------------------------------
    def _reset(self, seed: Optional[int]) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.battle.reset(self._rng)
        self.episode_steps = 0
        self.last_action = np.zeros((self.n_agents, self.n_actions), dtype=np.float32)
        self.dead_tracker_enemy = np.zeros(self.n_enemies, dtype=bool)
        self.battle_won = False
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the cached distances and masks after the units changed."""
        self._d_ae = self.feat.distances()
        self._masks = self.feat.masks(self._d_ae)

    def _apply_actions(self, actions: np.ndarray) -> None:
        b = self.battle
        if actions.shape != (self.n_agents,):
            raise ValueError(f"actions must have shape ({self.n_agents},); got {actions.shape}")
        if np.count_nonzero((actions < 0) | (actions >= self.n_actions)):
            raise ValueError(f"actions must be integers in [0, {self.n_actions}); got {actions.tolist()}")
        avail = self._masks[self._ar_ag, actions] > 0
        for i in (~avail).nonzero()[0].tolist():
            if self.check_actions:
                raise ValueError(f"{self.info.env_id}: action {int(actions[i])} of agent "
                                 f"{self.info.agents[i]!r} is not available (mask "
                                 f"{self._masks[i].astype(int).tolist()})")
            actions[i] = 0 if not b.alive[i] else 1
        b.order_agents(actions, self._move_z, N_ACTIONS_NO_ATTACK)

    def _step(self, actions: np.ndarray) -> Tuple[float, bool, bool, Dict[str, Any]]:
        b, n_ag = self.battle, self.n_agents
        actions = np.asarray(actions, dtype=np.int64).copy()
        self._apply_actions(actions)
        self.last_action = self._eye[actions]
        prev = b.hp[n_ag:] + b.sh[n_ag:]
        b.advance(STEP_MUL)
        self.episode_steps += 1
        # SMAC reward_battle with reward_only_positive: abs(damage + kill bonus)
        cur = b.hp[n_ag:] + b.sh[n_ag:]
        live = ~self.dead_tracker_enemy
        died = live & ~b.alive[n_ag:]
        delta = float(np.where(died, prev, prev - cur)[live].sum()) + REWARD_DEATH_VALUE * float(died.sum())
        self.dead_tracker_enemy |= died
        reward = abs(delta)
        n_al, n_en = int(b.alive[:n_ag].sum()), int(b.alive[n_ag:].sum())
        terminated = truncated = False
        info: Dict[str, Any] = {"battle_won": False, "episode_limit": False}
        if n_al == 0 or n_en == 0:
            terminated = True
            if n_en == 0 and n_al > 0:
                self.battle_won = True
                info["battle_won"] = True
                reward += REWARD_WIN
        elif self.episode_steps >= self.episode_limit:
            truncated = True
            info["episode_limit"] = True
        info["dead_allies"] = n_ag - n_al
        info["dead_enemies"] = self.n_enemies - n_en
        if self.reward_scale:
            reward /= self.max_reward / self.reward_scale_rate
        self._refresh()
        return float(reward), terminated, truncated, info

    def _obs(self) -> np.ndarray:
        return self.feat.obs(self._masks, self._d_ae)

    def state(self) -> np.ndarray:
        return self.feat.state(self.last_action)

    def action_masks(self) -> np.ndarray:
        return self._masks.copy()

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per-agent episode statistics: damage dealt/taken (HP + shield), kills, shots, alive."""
        b, n = self.battle, self.n_agents
        return {"damage_dealt": b.damage_dealt[:n].copy(), "kills": b.kills[:n].copy(),
                "damage_taken": b.damage_taken[:n].copy(), "shots": b.shots[:n].copy(),
                "alive": b.alive[:n].astype(np.float64)}

    # -- SMAC-style accessors ---------------------------------------------------------------------
    def get_obs(self) -> np.ndarray:
        """SMAC name for the [N, obs_dim] observation array."""
        return self._obs()

    def get_state(self) -> np.ndarray:
        return self.state()

    def get_avail_actions(self) -> np.ndarray:
        return self.action_masks()

    def get_env_info(self) -> Dict[str, Any]:
        """SMAC's ``get_env_info`` dict."""
        return {"state_shape": self.info.state_dim, "obs_shape": self.info.obs_dim,
                "n_actions": self.n_actions, "n_agents": self.n_agents, "episode_limit": self.episode_limit}

    def render_png(self, path: str, title: Optional[str] = None) -> str:
        """Draw the current frame to a PNG file (matplotlib); returns ``path``."""
        from rllib_sit.envs.smac.render import render_png

        return render_png(self, path, title=title)
