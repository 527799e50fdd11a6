"""SC2 adapter: translation of StarCraft2Env's API (tested with a fake; never run on SC2)."""

import numpy as np
import pytest

from rllib_sit.envs import make_env
from rllib_sit.envs.smac.sc2_adapter import SC2CoopEnv


class FakeStarCraft2Env:
    """Follows oxwhirl/smac StarCraft2Env's documented API for 2s_vs_1sc (2 agents, 7 actions).

    Scripted: step 1 kills nothing; then, when ``win_at`` is reached, the battle is won; with
    ``win_at=None`` the episode runs to its limit (terminated=True, no battle_won, as SMAC does
    with continuing_episode=False).
    """

    instances = []

    def __init__(self, map_name="2s_vs_1sc", seed=None, episode_limit=5, win_at=None, **kwargs):
        self.map_name, self.seed, self.limit, self.win_at = map_name, seed, episode_limit, win_at
        self.t, self.closed, self.actions = 0, False, []
        FakeStarCraft2Env.instances.append(self)

    def get_env_info(self):
        return {"state_shape": 27, "obs_shape": 17, "n_actions": 7, "n_agents": 2, "episode_limit": self.limit}

    def reset(self):
        self.t = 0
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.full(17, 0.1 * (i + 1) + self.t, np.float32) for i in range(2)]

    def get_state(self):
        return np.arange(27, dtype=np.float32) + self.t

    def get_avail_actions(self):
        if self.t >= 2:  # agent 1 died
            return [[0, 1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0]]
        return [[0, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0]]

    def step(self, actions):
        self.actions.append(list(actions))
        self.t += 1
        info = {"battle_won": False}
        terminated = False
        if self.win_at is not None and self.t >= self.win_at:
            terminated, info["battle_won"] = True, True
        elif self.t >= self.limit:
            terminated = True
        info["dead_allies"] = int(self.t >= 2)
        info["dead_enemies"] = int(bool(info["battle_won"]))
        return 0.5 * self.t, terminated, info

    def close(self):
        self.closed = True


def _make(**kw):
    return make_env("smac:2s_vs_1sc", backend="sc2", env_factory=FakeStarCraft2Env, **kw)


def test_translation_of_obs_state_masks_and_step():
    env = _make(seed=1)
    assert isinstance(env, SC2CoopEnv)
    assert env.possible_agents == ["s1", "s2"] and env.info.obs_dim == 17 and env.info.state_dim == 27
    obs, infos = env.reset()
    np.testing.assert_allclose(obs["s2"], np.full(17, 0.2))
    assert infos["s2"]["action_mask"].tolist() == [0, 1, 1, 1, 1, 1, 0]
    obs, rew, term, trunc, infos = env.step({"s1": 6, "s2": 2})
    assert env.sc2.actions[-1] == [6, 2]  # agent order preserved, plain ints
    assert rew == {"s1": 0.5, "s2": 0.5} and not any(term.values()) and not any(trunc.values())
    np.testing.assert_allclose(env.state(), np.arange(27) + 1)
    obs, rew, term, trunc, infos = env.step({"s1": 1, "s2": 1})
    assert infos["s2"]["action_mask"].tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert env.agent_stats()["alive"].tolist() == [1.0, 0.0]
    assert infos["s1"]["dead_allies"] == 1


def test_limit_becomes_truncation_and_win_stays_termination():
    env = _make(episode_limit=3)
    env.reset()
    for _ in range(3):
        obs, rew, term, trunc, infos = env.step({"s1": 1, "s2": 1 if env.sc2.t < 2 else 0})
    assert all(trunc.values()) and not any(term.values()) and infos["s1"]["episode_limit"] is True
    env = _make(episode_limit=3, win_at=3)
    env.reset()
    for _ in range(3):
        obs, rew, term, trunc, infos = env.step({"s1": 1, "s2": 1 if env.sc2.t < 2 else 0})
    assert all(term.values()) and not any(trunc.values()) and infos["s1"]["battle_won"] is True


def test_reset_seed_rebuilds_and_close_and_bad_actions():
    env = _make(seed=1)
    first = env.sc2
    env.reset(seed=1)
    assert env.sc2 is first
    env.reset(seed=2)
    assert first.closed and env.sc2.seed == 2
    with pytest.raises(ValueError, match="integers in"):
        env._step(np.array([1, 7]))
    env.close()
    assert env.sc2.closed


def test_missing_smac_gives_clear_import_error():
    try:
        import smac.env  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="oxwhirl"):
            make_env("smac:2s3z", backend="sc2")
    else:  # pragma: no cover - oxwhirl SMAC present
        pytest.skip("oxwhirl SMAC is installed")
