"""Tiny fixtures shared by every algorithm's tests: a 3-agent, 2-type cooperative env, a 2-agent box env, and datasets.

``tiny:coop`` — agents a0, a1 (type "scout") and b0 (type "tank"); 3 discrete actions, action 2
is unavailable to the tank. Team reward per step = [a0 took 1] + 0.5·[b0 took 1]; a1 contributes
nothing. Episodes last 4–6 steps. Everything is deterministic given the reset seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from rllib_sit.envs.base import CoopEnv, EnvInfo
from rllib_sit.envs.registry import register_family

TINY_ENV_ID = "tiny:coop"


class TinyCoopEnv(CoopEnv):
    def __init__(self, **kwargs):
        self.info = EnvInfo(env_id=TINY_ENV_ID, agents=["a0", "a1", "b0"], agent_types=["scout", "scout", "tank"],
                            obs_dim=4, state_dim=5, episode_limit=6, discrete=True, n_actions=3)
        super().__init__()
        self._rng = np.random.default_rng(0)

    def _reset(self, seed):
        if seed is not None:  # gymnasium convention: reset(seed=None) continues the RNG
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self.limit = int(self._rng.integers(4, 7))
        self.x = self._rng.normal(size=(3, 2)).astype(np.float32)

    def _step(self, actions):
        r = float(actions[0] == 1) + 0.5 * float(actions[2] == 1)
        self.x = (self.x + 0.1 * self._rng.normal(size=self.x.shape)).astype(np.float32)
        self.t += 1
        terminated = self.t >= self.limit and self.limit < self.info.episode_limit
        truncated = self.t >= self.info.episode_limit
        return r, terminated, truncated and not terminated, {"battle_won": bool(r > 1.0)}

    def _obs(self):
        t = np.full((3, 1), self.t / 6.0, np.float32)
        ids = np.array([[0.0], [0.0], [1.0]], np.float32)
        return np.concatenate([self.x, t, ids], 1)

    def state(self):
        return np.concatenate([self.x[:, 0], [self.t / 6.0, 1.0]]).astype(np.float32)

    def action_masks(self):
        m = np.ones((3, 3), np.float32)
        m[2, 2] = 0.0
        return m


def register_tiny_env() -> None:
    register_family("tiny", lambda scenario, **kw: TinyCoopEnv(**kw), ["coop"])
    from ray.tune.registry import register_env

    from rllib_sit.envs.registry import make_rllib_env

    register_env(TINY_ENV_ID, lambda cfg: make_rllib_env(TINY_ENV_ID, cfg))


def make_tiny_dataset(path: str, n_episodes: int = 40, seed: int = 0) -> str:
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_env()
    return make_random_dataset(TinyCoopEnv(), n_episodes, path, seed=seed)


def tiny_config(path: str, **training):
    from rllib_sit.algorithms.sit import SITConfig

    kw = dict(ardnem_updates=4, agent_updates=6, ardnem_updates_per_iteration=2, agent_updates_per_iteration=3,
              batch_size_episodes=8, target_update_interval=2, stage2_batch_episodes=16,
              priority_scale="minmax")  # the tiny envs have no data spec, hence no return range
    kw.update(training)
    return (SITConfig().environment(TINY_ENV_ID).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


TINY_CONT_ENV_ID = "tinycont:coop"


class TinyContinuousEnv(CoopEnv):
    """2 agents of one type, 2-dim box actions in [-1, 1]; reward = −|a0 − 0.5|₁ − |a1 + 0.5|₁."""

    def __init__(self, **kwargs):
        self.info = EnvInfo(env_id=TINY_CONT_ENV_ID, agents=["l0", "l1"], agent_types=["leg", "leg"], obs_dim=3,
                            state_dim=4, episode_limit=5, discrete=False, act_dim=2)
        super().__init__()
        self._rng = np.random.default_rng(0)

    def _reset(self, seed):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self.x = self._rng.normal(size=(2, 2)).astype(np.float32)

    def _step(self, actions):
        r = -float(np.abs(actions[0] - 0.5).sum() + np.abs(actions[1] + 0.5).sum())
        self.t += 1
        return r, False, self.t >= 5, {}

    def _obs(self):
        return np.concatenate([self.x, np.full((2, 1), self.t / 5.0, np.float32)], 1)

    def state(self):
        return np.concatenate([self.x.reshape(-1)]).astype(np.float32)


def register_tiny_continuous_env() -> None:
    register_family("tinycont", lambda scenario, **kw: TinyContinuousEnv(**kw), ["coop"])
    from ray.tune.registry import register_env

    from rllib_sit.envs.registry import make_rllib_env

    register_env(TINY_CONT_ENV_ID, lambda cfg: make_rllib_env(TINY_CONT_ENV_ID, cfg))


# -- NumPy references shared by the algorithm tests ------------------------------------------------

def np_qmixer(mixer, q, s):
    """QMixer in NumPy from its weights: |W1(s)|, ELU, |w2(s)|, V(s); ``q [n, N]``, ``s [n, S]``."""
    P = {k: v.detach().double().numpy() for k, v in mixer.state_dict().items()}
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    n, N = q.shape
    w1 = np.abs(relu(s @ P["hyper_w1.0.weight"].T + P["hyper_w1.0.bias"]) @ P["hyper_w1.2.weight"].T
                + P["hyper_w1.2.bias"]).reshape(n, N, -1)
    x = np.einsum("na,nae->ne", q, w1) + s @ P["hyper_b1.weight"].T + P["hyper_b1.bias"]
    hidden = np.where(x > 0, x, np.expm1(x))
    w2 = np.abs(relu(s @ P["hyper_w2.0.weight"].T + P["hyper_w2.0.bias"]) @ P["hyper_w2.2.weight"].T
                + P["hyper_w2.2.bias"])
    v = relu(s @ P["v.0.weight"].T + P["v.0.bias"]) @ P["v.2.weight"].T + P["v.2.bias"]
    return (hidden * w2).sum(-1) + v[:, 0]


@pytest.fixture(scope="module")
def ray_session():
    """Ray once per test module (local, 2 CPUs) with the tiny env registered; the conftests of
    tests/algorithms and tests/ope import this one fixture."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    yield
    ray.shutdown()


def assert_learns_the_rewarding_actions(algo):
    """tiny:coop pays 1 per step when a0 takes action 1 and 0.5 when b0 does: the untrained greedy
    agents earn less than 1.5 per step, one ``train()`` later they earn exactly that. Stops ``algo``."""
    try:
        before = algo.evaluate()["env_runners"]
        assert before["episode_return_mean"] < 1.5 * before["episode_len_mean"]
        algo.train()
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_return_mean"] == pytest.approx(1.5 * ev["episode_len_mean"]), (before, ev)
    finally:
        algo.stop()


def assert_gaussian_entropy_logged(algo, result, module_id: str):
    """``policy_entropy`` of a continuous module equals the pre-tanh Gaussian's closed form
    Σ_d ½ log(2πe) + log σ_d at the learner's current σ (which the last optimizer step moved by
    less than the tolerance)."""
    from rllib_sit.algorithms.common.torch_learner import POLICY_ENTROPY

    log_std = algo.learner_group._learner.module[module_id].unwrapped().actor.log_std.detach().numpy()
    want = float(np.sum(0.5 * np.log(2 * np.pi * np.e) + np.clip(log_std, -5.0, 2.0)))
    assert result["learners"][module_id][POLICY_ENTROPY] == pytest.approx(want, abs=0.05)
