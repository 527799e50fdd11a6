"""Every registered env passes its ecosystem's own tests (issue 13, "Environments that pass their
ecosystem's own tests"): PettingZoo's ``parallel_api_test`` / ``parallel_seed_test`` and RLlib's
``check_multiagent_environments``; plus the two conventions they rely on (docs/envs/smac.md,
"PettingZoo and RLlib conventions").

Which convention each tool needs (read from pettingzoo/test/*.py and ray/rllib/utils/pre_checks/env.py):

* ``parallel_api_test`` samples with ``obs[agent]["action_mask"]`` when the observation is a Dict
  holding one, else unmasked -> ``make_env(id, action_mask_in_obs=True)``; actions stay checked.
* ``parallel_seed_test`` samples *unmasked* (``action_space.sample()``) whatever the observation,
  and (pettingzoo 1.27) stops after one step, since ``any(terminations1)`` tests the dict's keys
  -> it needs ``check_actions=False``. The AEC ``seed_test`` (through ``parallel_to_aec``) samples
  with the mask (obs or infos; gymnasium wants it int8, as the Dict observation gives it) and runs
  many steps, so it is added here as the multi-step determinism check.
* RLlib's checker resets with seed 42 and steps once with unmasked ``action_space.sample()``
  actions, and checks the returned dicts' keys against ``env.agents`` -> the RLlib wrapper accepts
  any action of the space (unavailable -> first available, recorded in infos) and keeps
  ``agents`` listed until the next reset.
"""

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test, seed_test
from pettingzoo.utils.conversions import parallel_to_aec
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_sit.envs import make_env, make_rllib_env
from rllib_sit.envs.base import ACTION_MASK_KEY, OBSERVATION_KEY, UNAVAILABLE_ACTION_KEY
from rllib_sit.envs.registry import env_ids

ENV_IDS = env_ids()
# A few hundred steps per env keep the module fast: parallel_api_test plays 2 episodes of at most
# API_CYCLES steps; the AEC seed test compares two envs over at most AEC_SEED_CYCLES steps.
API_CYCLES = 200
AEC_SEED_CYCLES = 100


def _no_pettingzoo_warnings(record):
    """parallel_api_test reports some API breaches (e.g. "Live agent was not given observation")
    only as warnings; fail on them."""
    bad = [str(w.message) for w in record if "pettingzoo" in w.filename.replace("\\", "/")]
    assert not bad, bad


def test_every_family_is_registered():
    families = {i.split(":")[0] for i in ENV_IDS}
    assert families == {"smac", "mpe", "mamujoco", "matrix"}, ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_parallel_api_test(env_id):
    env = make_env(env_id, action_mask_in_obs=True)  # check_actions stays True: masked sampling
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        parallel_api_test(env, num_cycles=API_CYCLES)
    _no_pettingzoo_warnings(record)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_parallel_seed_test(env_id):
    for mask_in_obs in (True, False):  # unmasked sampling: both conventions, check_actions=False
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            parallel_seed_test(lambda m=mask_in_obs: make_env(env_id, action_mask_in_obs=m, check_actions=False))
        _no_pettingzoo_warnings(record)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_aec_seed_test(env_id):
    """Multi-step determinism with masked sampling (parallel_seed_test does one step only)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        seed_test(lambda: parallel_to_aec(make_env(env_id, action_mask_in_obs=True)),
                  num_cycles=AEC_SEED_CYCLES)
    _no_pettingzoo_warnings(record)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rllib_check_multiagent_environments(env_id):
    env = make_rllib_env(env_id)
    check_multiagent_environments(env)
    env.close()


# -- the conventions themselves ---------------------------------------------------------------------

def test_default_convention_unchanged():
    """Flat float32 observations, float32 mask in infos, unavailable actions raise (datasets and
    algorithms rely on it)."""
    env = make_env("smac:3m")
    obs, infos = env.reset(seed=0)
    assert obs["m1"].shape == (30,) and obs["m1"].dtype == np.float32
    assert infos["m1"][ACTION_MASK_KEY].dtype == np.float32 and infos["m1"][ACTION_MASK_KEY].shape == (9,)
    assert env.observation_space("m1").shape == (30,) and env.check_actions and not env.action_mask_in_obs


def test_dict_observation_matches_flat_one():
    flat, d = make_env("smac:2s3z"), make_env("smac:2s3z", action_mask_in_obs=True)
    o_f, i_f = flat.reset(seed=3)
    o_d, i_d = d.reset(seed=3)
    for i, a in enumerate(d.possible_agents):
        d.action_space(a).seed(i)
    for _ in range(20):
        for a in flat.possible_agents:
            assert set(o_d[a]) == {OBSERVATION_KEY, ACTION_MASK_KEY}
            assert d.observation_space(a).contains(o_d[a])
            np.testing.assert_array_equal(o_d[a][OBSERVATION_KEY], o_f[a])
            assert o_d[a][ACTION_MASK_KEY].dtype == np.int8
            np.testing.assert_array_equal(o_d[a][ACTION_MASK_KEY], i_f[a][ACTION_MASK_KEY])
            np.testing.assert_array_equal(i_d[a][ACTION_MASK_KEY], i_f[a][ACTION_MASK_KEY])  # still in infos
        acts = {a: d.action_space(a).sample(mask=o_d[a][ACTION_MASK_KEY]) for a in d.agents}
        o_f, _, te, tr, i_f = flat.step(acts)
        o_d, _, _, _, i_d = d.step(acts)
        if any(te.values()) or any(tr.values()):
            break


def test_dict_observation_of_continuous_env_has_no_mask():
    env = make_env("mpe:dg", action_mask_in_obs=True)
    obs, infos = env.reset(seed=0)
    assert set(obs["a1"]) == {OBSERVATION_KEY} and ACTION_MASK_KEY not in infos["a1"]
    assert env.observation_space("a1").contains(obs["a1"])


def test_spaces_are_one_object_per_agent():
    env = make_env("smac:3m", action_mask_in_obs=True)
    assert env.action_space("m1") is env.action_space("m1")
    assert env.action_space("m1") is not env.action_space("m2")  # seeding one leaves the others alone
    assert env.observation_space("m1") is not env.observation_space("m2")


def test_unavailable_action_raises_naming_agent_and_action():
    for mask_in_obs in (False, True):
        env = make_env("smac:3m", action_mask_in_obs=mask_in_obs)
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r"smac:3m: action 0 of agent 'm2' is not available \(available: \[1, "):
            env.step({"m1": 1, "m2": 0, "m3": 1})  # the no-op is only for dead agents (SMAC)
        with pytest.raises(ValueError, match=r"actions must be in \[0, 9\); agent 'm3' got 9"):
            env.step({"m1": 1, "m2": 1, "m3": 9})  # outside the space: raises whatever check_actions


def test_unavailable_action_replaced_when_not_checked():
    """check_actions=False executes the first available action (stop for a living SMAC agent) and
    records the replaced action; the trajectory equals the one with that action given explicitly."""
    lax, ref = make_env("smac:3m", check_actions=False), make_env("smac:3m")
    lax.reset(seed=1)
    ref.reset(seed=1)
    o1, r1, _, _, i1 = lax.step({"m1": 0, "m2": 8, "m3": 2})  # 0 and 8 (attack a far enemy) unavailable
    o2, r2, _, _, i2 = ref.step({"m1": 1, "m2": 1, "m3": 2})
    assert i1["m1"][UNAVAILABLE_ACTION_KEY] == 0 and i1["m2"][UNAVAILABLE_ACTION_KEY] == 8
    assert UNAVAILABLE_ACTION_KEY not in i1["m3"] and UNAVAILABLE_ACTION_KEY not in i2["m1"]
    assert r1 == r2
    for a in o1:
        np.testing.assert_array_equal(o1[a], o2[a])
    np.testing.assert_array_equal(lax.state(), ref.state())  # last-action one-hots: stop, stop, move


def test_bad_api_option_fails_clearly():
    with pytest.raises(ValueError, match="action_mask_in_obs must be True or False; got 'yes'"):
        make_env("mpe:cn_3ls3l", action_mask_in_obs="yes")


def test_rllib_wrapper_accepts_every_action_and_records_replacements():
    """Regression (issue 13): RLlib's checker failed on SMAC (random actions hit the mask)."""
    env = make_rllib_env("smac:3m")
    obs, _ = env.reset(seed=0)
    space = env.get_action_space("m1")
    space.seed(0)
    seen = 0
    for _ in range(60):
        acts = {a: env.get_action_space(a).sample() for a in env.agents}
        obs_next, _, term, trunc, infos = env.step(acts)
        for a, act in acts.items():
            unavailable = obs[a]["action_mask"][act] == 0
            assert (infos[a].get(UNAVAILABLE_ACTION_KEY) == act) if unavailable else \
                (UNAVAILABLE_ACTION_KEY not in infos[a])
            seen += int(unavailable)
        obs = obs_next
        if term["__all__"] or trunc["__all__"]:
            break
    assert seen > 0
    strict = make_rllib_env("smac:3m", {"check_actions": True})
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="agent 'm1' is not available"):
        strict.step({"m1": 0, "m2": 1, "m3": 1})


def test_rllib_wrapper_keeps_agents_until_reset():
    """Regression (issue 13): on matrix:vdtn RLlib's checker saw observations for agents the
    wrapper no longer listed (it emptied ``agents`` on the final step)."""
    env = make_rllib_env("matrix:vdtn")
    env.reset(seed=0)
    obs, rew, term, trunc, _ = env.step({"a1": 1, "a2": 0})
    assert term["__all__"] and set(obs) == set(rew) == set(env.agents) == {"a1", "a2"}


def test_rllib_wrapper_ignores_the_pettingzoo_observation_convention():
    env = make_rllib_env("smac:3m", {"action_mask_in_obs": True})
    obs, _ = env.reset(seed=0)
    assert set(obs["m1"]) == {"obs", "action_mask"} and obs["m1"]["obs"].shape == (30,)
    assert obs["m1"]["action_mask"].dtype == np.float32 and env.observation_spaces["m1"].contains(obs["m1"])
