"""MAMuJoCo family on ``gymnasium_robotics.mamujoco_v1`` (MuJoCo v5 single-agent tasks).

Scenarios (agent ids ``l1..lN`` in mamujoco's partition order, one agent type per body part):

* ``mamujoco:halfcheetah_2l``: HalfCheetah 2x3, types ``leg_back, leg_front``, act_dim 3, limit 200 (SIT)
* ``mamujoco:walker_2l``: Walker2d 2x3, types ``leg_right, leg_left``, act_dim 3, limit 200 (SIT)
* ``mamujoco:hopper_3x1``: Hopper 3x1, types ``thigh, leg, foot``, act_dim 1, limit 1000
* ``mamujoco:ant_2x4``: Ant 2x4, types ``legs_front, legs_back``, act_dim 4, limit 1000

``agent_obsk=1`` (own joints + 1-hop neighbours). Observations of agents with fewer features are
zero-padded at the end to the largest agent's size (Hopper 3x1: 8/9/8 -> 9). Global state =
mamujoco's ``state()``, the single-agent observation (17 for HalfCheetah/Walker, 11 Hopper, 105
Ant). Team reward = the single-agent task reward. Walker, Hopper and Ant *terminate* early when
the robot is unhealthy (kept, as in MuJoCo); every task is truncated at ``episode_limit``
(kwarg; 1000 is the MuJoCo default the decentralized-MARL paper's D4RL-style data uses).

Reference policies: uniform random (:func:`rllib_sit.envs.uniform_random_actions`) everywhere, and
for HalfCheetah/Walker an open-loop sine gait (:data:`GAITS`, :func:`heuristic_actions`, with the
same ``skill`` knob as the MPE heuristics). Hopper/Ant have no scripted controller.

MuJoCo writes warnings to ``MUJOCO_LOG.TXT`` in the working directory by default; when no
user warning handler is installed, this module installs one that turns them into Python
``RuntimeWarning`` s instead, so the file is not created.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, NamedTuple, Optional

import numpy as np

from rllib_sit.envs.base import CoopEnv, EnvInfo
from rllib_sit.envs.registry import register_family

FAMILY = "mamujoco"


class _Spec(NamedTuple):
    task: str
    partition: str
    agent_types: List[str]
    episode_limit: int


SCENARIOS: Dict[str, _Spec] = {
    "halfcheetah_2l": _Spec("HalfCheetah", "2x3", ["leg_back", "leg_front"], 200),
    "walker_2l": _Spec("Walker2d", "2x3", ["leg_right", "leg_left"], 200),
    "hopper_3x1": _Spec("Hopper", "3x1", ["thigh", "leg", "foot"], 1000),
    "ant_2x4": _Spec("Ant", "2x4", ["legs_front", "legs_back"], 1000),
}


class _Gait(NamedTuple):
    freq_hz: float  # oscillation frequency in simulated seconds
    amplitude: float  # in action units
    agent_phase: float  # phase offset between consecutive agents, in units of pi


# Found by a small grid search over (freq, amplitude, phase), 6 seeds each; every joint of an agent
# gets the same sine. HalfCheetah: 200 +- 9 over 200 steps; Walker: 140 +- 6 before it falls (~100 steps).
GAITS: Dict[str, _Gait] = {
    "halfcheetah_2l": _Gait(3.5, 0.5, 0.5),
    "walker_2l": _Gait(0.75, 0.5, 0.0),
}


def _mujoco_warning(msg: str) -> None:
    warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=2)


def _import_mamujoco():
    """Import ``mamujoco_v1`` quietly and route MuJoCo warnings away from MUJOCO_LOG.TXT."""
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gymnasium_robotics import mamujoco_v1
    return mamujoco_v1


class MaMuJoCoEnv(CoopEnv):
    """One ``mamujoco_v1.parallel_env`` behind the :class:`CoopEnv` interface."""

    def __init__(self, env_id: str, spec: _Spec, episode_limit: Optional[int] = None, agent_obsk: int = 1):
        limit = spec.episode_limit if episode_limit is None else episode_limit
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"{env_id}: episode_limit must be a positive int, got {episode_limit!r}")
        if not isinstance(agent_obsk, int) or agent_obsk < 0:
            raise ValueError(f"{env_id}: agent_obsk must be an int >= 0, got {agent_obsk!r}")
        mamujoco_v1 = _import_mamujoco()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the 'settotalmass is deprecated' model-compiler notice
            self.env = mamujoco_v1.parallel_env(spec.task, spec.partition, agent_obsk=agent_obsk,
                                                max_episode_steps=limit)
        self._ids = list(self.env.possible_agents)
        self._obs_sizes = [self.env.observation_space(a).shape[0] for a in self._ids]
        act_dims = {self.env.action_space(a).shape[0] for a in self._ids}
        if len(act_dims) != 1:
            raise ValueError(f"{env_id}: agents have different action sizes {sorted(act_dims)}")
        space = self.env.action_space(self._ids[0])
        self.info = EnvInfo(
            env_id=env_id, agents=[f"l{i + 1}" for i in range(len(self._ids))],
            agent_types=list(spec.agent_types), obs_dim=max(self._obs_sizes),
            state_dim=int(self.env.state().shape[0]), episode_limit=limit, discrete=False,
            act_dim=act_dims.pop(), action_low=float(space.low.min()), action_high=float(space.high.max()))
        self.scenario = env_id.split(":", 1)[1]
        self.dt = float(self.env.unwrapped.single_agent_env.unwrapped.dt)
        super().__init__()
        self._last_obs: Dict[str, np.ndarray] = {}
        self.t = 0
        self._sum_abs_action = np.zeros(self.info.n_agents)
        self._sum_sq_action = np.zeros(self.info.n_agents)

    def _reset(self, seed: Optional[int]) -> None:
        self._last_obs, _ = self.env.reset(seed=seed)
        self.t = 0
        self._sum_abs_action = np.zeros(self.info.n_agents)
        self._sum_sq_action = np.zeros(self.info.n_agents)

    def _step(self, actions: np.ndarray):
        a = np.clip(actions, self.info.action_low, self.info.action_high)
        obs, rew, term, trunc, infos = self.env.step({k: a[i] for i, k in enumerate(self._ids)})
        self._last_obs = obs
        self.t += 1
        self._sum_abs_action += np.abs(a).mean(axis=1)
        self._sum_sq_action += np.square(a).sum(axis=1)
        terminated = any(term.values())
        truncated = (any(trunc.values()) or self.t >= self.info.episode_limit) and not terminated
        x_vel = next(iter(infos.values()), {}).get("x_velocity")
        return float(rew[self._ids[0]]), terminated, truncated, {} if x_vel is None else {"x_velocity": float(x_vel)}

    def _obs(self) -> np.ndarray:
        out = np.zeros((self.info.n_agents, self.info.obs_dim), np.float32)
        for i, k in enumerate(self._ids):
            o = self._last_obs[k]
            out[i, : len(o)] = o
        return out

    def state(self) -> np.ndarray:
        return np.asarray(self.env.state(), np.float32)

    def agent_stats(self) -> Dict[str, np.ndarray]:
        """Per agent, over the steps so far: mean |action| and mean squared-action (control) cost."""
        steps = max(self.t, 1)
        return {"mean_abs_action": (self._sum_abs_action / steps).astype(np.float32),
                "mean_ctrl_energy": (self._sum_sq_action / steps).astype(np.float32)}

    def close(self) -> None:
        self.env.close()


def heuristic_action(env: MaMuJoCoEnv, agent_index: int, rng: np.random.Generator, skill: float = 1.0) -> np.ndarray:
    """Agent ``agent_index``'s open-loop sine-gait action at the env's current step (prob. ``skill``),
    else a uniformly random action. Only for scenarios in :data:`GAITS`."""
    if env.scenario not in GAITS:
        raise ValueError(f"{env.info.env_id}: no scripted gait; expected one of {sorted(GAITS)} (use random actions)")
    if not 0.0 <= float(skill) <= 1.0:
        raise ValueError(f"skill must be in [0, 1], got {skill!r}")
    if rng.random() >= skill:
        return rng.uniform(-1.0, 1.0, env.info.act_dim).astype(np.float32)
    g = GAITS[env.scenario]
    phase = 2 * np.pi * g.freq_hz * env.t * env.dt + g.agent_phase * np.pi * agent_index
    return np.full(env.info.act_dim, g.amplitude * np.sin(phase), np.float32)


def heuristic_actions(env: MaMuJoCoEnv, rng: np.random.Generator, skill=1.0) -> np.ndarray:
    """[N, act_dim] gait actions; ``skill`` a float or one float per agent."""
    n = env.info.n_agents
    skills = np.full(n, float(skill)) if np.ndim(skill) == 0 else np.asarray(skill, np.float64)
    if skills.shape != (n,):
        raise ValueError(f"skill must be a float or {n} floats (one per agent), got {skill!r}")
    return np.stack([heuristic_action(env, i, rng, s) for i, s in enumerate(skills)])


def make_mamujoco_env(scenario: str, **kwargs) -> CoopEnv:
    """Factory registered for the ``mamujoco`` family (kwargs: ``episode_limit``, ``agent_obsk``)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} for family 'mamujoco'; expected one of {sorted(SCENARIOS)}")
    unknown = set(kwargs) - {"episode_limit", "agent_obsk"}
    if unknown:
        raise ValueError(f"mamujoco:{scenario}: unknown keyword argument(s) {sorted(unknown)}; "
                         "expected episode_limit, agent_obsk")
    return MaMuJoCoEnv(f"mamujoco:{scenario}", SCENARIOS[scenario], **kwargs)


register_family(FAMILY, make_mamujoco_env, list(SCENARIOS))
