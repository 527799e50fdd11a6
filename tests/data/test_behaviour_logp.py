"""The generator records the behaviour policy's log-probabilities (optional column ``behaviour_logp``).

(a) the closed-form distributions of every discrete member kind (uniform with drift / attack_drop,
    SMAC and MPE heuristics, each composed with the ``noise`` option) sum to 1 at real states and
    match the Monte-Carlo frequencies of the members' actual ``act`` functions;
(b) generated SMAC and MPE datasets carry the column (finite, <= 0 on real steps, 0 on padding) and
    ``exp(logp)`` of every recorded action equals the probability recomputed here, on a replay of
    the episode, from an independent implementation of the members' draws;
(c) the pre-existing columns are bit-identical to those of the code before the column existed
    (sha256 prefixes computed then, same pools, compositions and seed);
(d) ``OPEData.open`` returns the column and PDWIS runs on it.

Monte-Carlo tolerance: for each action, ``|freq - p| <= 4.5 sqrt(p (1 - p) / M) + 1.5 / M`` with M
draws (fixed seeds, so the test is deterministic); an action of probability 0 is never drawn.
"""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rllib_sit.data import read_dataset
from rllib_sit.data import schema as S
from rllib_sit.data.generation import (
    component_assignment,
    decentralize,
    generate_dataset,
    noisy_action,
    noisy_action_probs,
)
from rllib_sit.data.composition import parse_composition
from rllib_sit.data.pool_card import Pool, PoolMember, member_action_probs
from rllib_sit.envs import mpe_policies
from rllib_sit.envs.registry import make_env
from rllib_sit.envs.smac import policies as smac_policies

SMAC_FN = "rllib_sit.envs.smac.policies:heuristic_action"
MPE_FN = "rllib_sit.envs.mpe_policies:heuristic_action"
SEED = 11


def _pool(env_id: str) -> Pool:
    """A fixed pool (not the shipped cards, which may be rebuilt): two members in the random and
    expert levels, so the per-episode member choice matters."""
    smac = env_id.startswith("smac")
    fn = SMAC_FN if smac else MPE_FN
    rnd = ([PoolMember("uniform", {"attack_drop": 0.6}), PoolMember("uniform", {"drift": 0.3, "attack_drop": 0.3})]
           if smac else [PoolMember("uniform", {"drift": 0.3}), PoolMember("uniform", {})])
    return Pool(env_id, {"random": rnd,
                         "medium": [PoolMember("heuristic", {"fn": fn, "skill": 0.5})],
                         "expert": [PoolMember("heuristic", {"fn": fn, "skill": 1.0}),
                                    PoolMember("heuristic", {"fn": fn, "skill": 0.9})]})


CASES = {
    "smac:3m": ("40% [m1:r, m2:m, m3:e] + 30% [m1:m, m2:m, m3:r] noise=0.2 + 30% [m1:e, m2:r, m3:m] noise=0.1", 12),
    "smac:2s3z": ("50% [s1:r, s2:m, z1:e, z2:r, z3:m] + 50% [s1:m, s2:r, z1:r, z2:e, z3:r] noise=0.15", 6),
    "mpe:cn_3ls3l": ("40% [ls1:r, ls2:m, ls3:e] + 60% [ls1:m, ls2:r, ls3:e] noise=0.3", 10),
}

# sha256 (first 16 hex) of every column of the CASES datasets (seed 11, the pools of _pool), computed
# with the generator as it was before it recorded behaviour_logp (numpy 2.4, this package's simulators).
BEFORE = {
    "smac:3m": {
        "actions": "e8bb200e853a0b27", "agent_stats": "e90be59bcb6aee7d", "avail_actions": "461387efd449e8fe",
        "episode_id": "c2b26e0dfc5e5624", "episode_return": "7bab613f33ad8cf6", "filled": "6ee58eb12406c4fd",
        "length": "2bdcd7e860867c92", "obs": "cd498876f80b12e2", "policy_levels": "fdaba93c8cf96559",
        "reward": "561c969a58820c50", "state": "c6050cea1075b308", "terminated": "63667768a24ca10e",
        "truncated": "0f6a20693e658b70",
    },
    "smac:2s3z": {
        "actions": "f0fef38fe0fcec0d", "agent_stats": "6c1194ab2cb6574b", "avail_actions": "d92e1a581ffd6716",
        "episode_id": "2118944d8c52cd1b", "episode_return": "7e5b2ac0abcb3550", "filled": "2bddad8434fdfa44",
        "length": "a5fb92c2c6234907", "obs": "225036f19bbcc837", "policy_levels": "e3547e8deb54e2c6",
        "reward": "47e8d43a6c39e05a", "state": "bc4bdb9526706137", "terminated": "1c6de61a1f026952",
        "truncated": "bf094ce19ec3899a",
    },
    "mpe:cn_3ls3l": {
        "actions": "4f6506703030c761", "agent_stats": "4cfe2a5880b94b17", "avail_actions": "19d3de9a4fa6c7a6",
        "episode_id": "5796130109a39537", "episode_return": "193fdfeac2434fb4", "filled": "f8b0b2cfc750b466",
        "length": "bed29dc415bbac8d", "obs": "4031d5aa2b8238bd", "policy_levels": "032648b548b109f5",
        "reward": "450bdeeb23b97d31", "state": "a80e50c02ec8081b", "terminated": "8d3e9b46d2dceae3",
        "truncated": "2c2cdd95b3f527b7",
    },
}


FLOAT_COLUMNS = {"agent_stats", "episode_return", "obs", "reward", "state"}


def _columns(path) -> dict:
    cols = {}
    for b in read_dataset(path).iter_batches(64, backend="arrow"):
        for c, v in b.items():
            cols.setdefault(c, []).append(np.asarray(v))
    return {c: np.ascontiguousarray(np.concatenate(v)) for c, v in cols.items()}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("logp")
    return {env_id: generate_dataset(env_id, composition=comp, n_episodes=n, seed=SEED,
                                     out=root / env_id.replace(":", "_"), num_workers=0, progress=False,
                                     pool=_pool(env_id))
            for env_id, (comp, n) in CASES.items()}


# ------------------------------------------------------------------------------------------------
# An independent implementation of the members' distributions (enumerating their draws)
# ------------------------------------------------------------------------------------------------

def _ref_uniform(mask: np.ndarray, i: int, drift: float, drop: float, first_attack: int) -> np.ndarray:
    avail = [int(a) for a in np.flatnonzero(mask)]
    calm = [a for a in avail if a < first_attack]
    p = np.zeros(len(mask))
    move = 1 + i % 4
    p_drift = drift if drift > 0 and mask[move] else 0.0
    p[move] += p_drift
    for a in avail:  # the uniform draw ...
        w = (1.0 - p_drift) / len(avail)
        if drop > 0 and a >= first_attack and calm:  # ... an attack dropped to a calm action
            p[a] += w * (1.0 - drop)
            for c in calm:
                p[c] += w * drop / len(calm)
        else:
            p[a] += w
    return p


def _ref_pmf(env, i: int, member: PoolMember, noise: float) -> np.ndarray:
    mask = env.action_masks()[i] > 0
    A = len(mask)
    if member.kind == "uniform":
        prm = member.params
        p = _ref_uniform(mask, i, prm.get("drift", 0.0), prm.get("attack_drop", 0.0),
                         prm.get("first_attack_action", 6))
    else:
        skill = member.params["skill"]
        smac = member.params["fn"] == SMAC_FN
        if smac and mask[0] and not mask[1:].any():
            p = np.eye(A)[0]  # dead: the no-op, always
        else:
            rand = mask / mask.sum() if smac else np.full(A, 1.0 / A)  # MPE's random action ignores the mask
            mod = smac_policies if smac else mpe_policies
            p = (1.0 - skill) * rand + skill * np.eye(A)[int(mod.scripted_action(env, i))]
    return (1.0 - noise) * p + noise * mask / mask.sum()


# ------------------------------------------------------------------------------------------------
# (a) closed form vs Monte Carlo of the act functions
# ------------------------------------------------------------------------------------------------

def _check_mc(env, i: int, act, probs: np.ndarray, noise: float, m: int, seed: int, what: str) -> None:
    rng = np.random.default_rng(seed)
    draws = np.array([noisy_action(env, i, act(env, i, rng), noise, rng) for _ in range(m)])
    freq = np.bincount(draws, minlength=len(probs)) / m
    assert probs.min() >= 0 and probs.sum() == pytest.approx(1.0, abs=1e-12), what
    assert (freq[probs == 0] == 0).all(), f"{what}: drew an action of probability 0: {freq} vs {probs}"
    tol = 4.5 * np.sqrt(probs * (1 - probs) / m) + 1.5 / m
    assert (np.abs(freq - probs) <= tol).all(), f"{what}: frequencies {freq.round(4)} vs closed form {probs.round(4)}"


MC_MEMBERS = {
    "smac": [PoolMember("uniform", {}), PoolMember("uniform", {"attack_drop": 0.6, "drift": 0.3}),
             PoolMember("heuristic", {"fn": SMAC_FN, "skill": 0.5}),
             PoolMember("heuristic", {"fn": SMAC_FN, "skill": 0.0}),
             PoolMember("heuristic", {"fn": SMAC_FN, "skill": 1.0})],
    "mpe": [PoolMember("uniform", {"drift": 0.3}), PoolMember("heuristic", {"fn": MPE_FN, "skill": 0.5}),
            PoolMember("heuristic", {"fn": MPE_FN, "skill": 1.0})],
}
# env -> {step: agents examined there} (states reached by a skill-0.8 heuristic rollout, env seed 3):
# smac:2s3z has attacks available from about step 6 and agent z3 (4) dead at step 15.
MC_STATES = {"smac:2s3z": {0: [0, 2], 7: [0, 2], 15: [1, 4]}, "smac:3m": {10: [0, 1], 13: [0, 2]},
             "mpe:cn_3ls3l": {0: [0, 1, 2], 10: [0, 1, 2]}}
MC_DRAWS = 2000


@pytest.mark.parametrize("env_id", list(MC_STATES))
def test_closed_form_matches_monte_carlo_at_real_states(env_id):
    family = env_id.split(":")[0]
    mod = smac_policies if family == "smac" else mpe_policies
    env = make_env(env_id)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    seen = {"attack_and_calm": False, "dead": False}
    t, done, checked = 0, False, 0
    while not done and t <= max(MC_STATES[env_id]):
        for i in MC_STATES[env_id].get(t, []):
            mask = env.action_masks()[i]
            seen["dead"] |= bool(mask[0] > 0 and mask[1:].sum() == 0)
            seen["attack_and_calm"] |= bool(mask[6:].any() and mask[1:6].any())
            for j, member in enumerate(MC_MEMBERS[family]):
                act = member.build()
                for noise in ((0.0, 0.3) if j < 2 else (0.0,)):
                    probs = noisy_action_probs(env, i, member_action_probs(act)(env, i), noise)
                    what = f"{env_id} t={t} agent {i} {member.kind} {member.params} noise={noise}"
                    np.testing.assert_allclose(probs, _ref_pmf(env, i, member, noise), atol=1e-12, err_msg=what)
                    _check_mc(env, i, act, probs, noise, MC_DRAWS, seed=1000 * t + 10 * i + j, what=what)
                    checked += 1
        acts = mod.heuristic_actions(env, rng, 0.8)
        _, _, term, trunc, _ = env.step({a: acts[k] for k, a in enumerate(env.possible_agents)})
        done = any(term.values()) or any(trunc.values())
        t += 1
    assert checked == sum(len(v) for v in MC_STATES[env_id].values()) * (len(MC_MEMBERS[family]) + 2)
    if env_id == "smac:2s3z":  # the states exercise attack_drop and the dead agent's point mass
        assert seen["attack_and_calm"] and seen["dead"], seen


class _MaskEnv:
    """Just what a uniform member and the noise option read: discrete info and fixed masks."""

    def __init__(self, masks):
        self.masks = np.asarray(masks, np.float32)
        self.info = SimpleNamespace(discrete=True, env_id="fake:masks", n_actions=self.masks.shape[1])

    def action_masks(self):
        return self.masks.copy()


@pytest.mark.parametrize("mask, i, params, noise", [
    # drift move of agent 0 (action 1) unavailable: the drift draw happens but changes nothing
    ([0, 0, 1, 1, 0, 1, 1, 1, 0], 0, {"drift": 0.5, "attack_drop": 0.7}, 0.0),
    # no calm action available: a drawn attack is kept
    ([0, 0, 0, 0, 0, 0, 1, 1, 1], 1, {"drift": 0.4, "attack_drop": 0.9}, 0.2),
    # no attack available
    ([0, 1, 1, 1, 1, 1, 0, 0, 0], 2, {"drift": 0.25, "attack_drop": 0.5}, 0.0),
    # MPE-like: 5 actions, all available, agent 2 drifts to action 3
    ([1, 1, 1, 1, 1], 2, {"drift": 0.6}, 0.3),
    # another first attack action
    ([0, 1, 1, 1, 1, 0, 1], 3, {"attack_drop": 0.8, "first_attack_action": 3}, 0.0),
])
def test_uniform_member_edge_cases(mask, i, params, noise):
    masks = np.zeros((i + 1, len(mask)))
    masks[i] = mask
    env = _MaskEnv(masks)
    member = PoolMember("uniform", params)
    act = member.build()
    probs = noisy_action_probs(env, i, member_action_probs(act)(env, i), noise)
    np.testing.assert_allclose(probs, _ref_pmf(env, i, member, noise), atol=1e-12)
    _check_mc(env, i, act, probs, noise, 20_000, seed=7, what=f"{mask} {params}")


def test_probabilities_draw_nothing_and_scripted_action_is_the_skill_one_action():
    env = make_env("smac:2s3z")
    env.reset(seed=3)
    for _ in range(7):
        env.step({a: 1 for a in env.possible_agents})
    for i in range(env.n_agents):
        rng = np.random.default_rng(5)
        assert smac_policies.heuristic_action(env, i, rng, skill=1.0) == smac_policies.scripted_action(env, i)
        assert rng.random() == np.random.default_rng(5).random()  # skill 1 drew nothing
    p = smac_policies.heuristic_action_probs(env, 0, skill=0.0)
    mask = env.action_masks()[0] > 0
    np.testing.assert_allclose(p, mask / mask.sum())
    with pytest.raises(ValueError, match="skill"):
        smac_policies.heuristic_action_probs(env, 0, skill=1.5)
    dg = make_env("mpe:dg")
    dg.reset(seed=0)
    with pytest.raises(ValueError, match="discrete"):
        mpe_policies.heuristic_action_probs(dg, 0, skill=0.5)


# ------------------------------------------------------------------------------------------------
# (b) the column of generated datasets, replayed
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", list(CASES))
def test_generated_column_matches_replayed_closed_form(datasets, env_id):
    cols = _columns(datasets[env_id])
    card = json.loads(Path(datasets[env_id], "card.json").read_text())
    assert card["behaviour_logp"].startswith("pool members' exact probabilities (chosen member per agent and episode)")
    lp, filled = cols[S.BEHAVIOUR_LOGP], cols[S.FILLED] > 0
    env = make_env(env_id)
    K, T, N = len(cols[S.LENGTH]), env.info.episode_limit, env.info.n_agents
    assert lp.dtype == np.float32 and lp.shape == (K, T, N)
    assert np.isfinite(lp).all() and (lp[filled] <= 0).all() and (lp[~filled] == 0).all()
    assert (lp[filled] < 0).any()
    comp_text, n = CASES[env_id]
    comp = parse_composition(comp_text, env.info.agents)
    assignment = component_assignment(comp, n, SEED)
    pool = _pool(env_id)
    words = {0: "random", 1: "medium", 2: "expert"}
    checked = 0
    for k in range(K):
        # the member each agent got (the generator's seeding protocol, see the card's "seeding")
        ss = np.random.SeedSequence([SEED, k])
        env_ss, member_ss, *_ = ss.spawn(2 + N)
        member_rng = np.random.default_rng(member_ss)
        members = []
        for i in range(N):
            choices = pool.members(words[int(cols[S.POLICY_LEVELS][k, i])])
            members.append(choices[int(member_rng.integers(len(choices)))])
        noise = comp.components[int(assignment[k])].noise
        obs_d, _ = env.reset(seed=int(env_ss.generate_state(1)[0]))
        for t in range(int(cols[S.LENGTH][k])):
            np.testing.assert_array_equal(np.stack([obs_d[a] for a in env.possible_agents]), cols[S.OBS][k, t])
            for i in range(N):
                p = _ref_pmf(env, i, members[i], noise)[int(cols[S.ACTIONS][k, t, i])]
                assert np.exp(np.float64(lp[k, t, i])) == pytest.approx(p, rel=1e-5), (k, t, i)
                checked += 1
            obs_d, *_ = env.step({a: int(cols[S.ACTIONS][k, t, j]) for j, a in enumerate(env.possible_agents)})
    assert checked == int(filled.sum()) * N


# ------------------------------------------------------------------------------------------------
# (c) the other columns are what the generator wrote before
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", list(CASES))
def test_preexisting_columns_unchanged(datasets, env_id):
    cols = _columns(datasets[env_id])
    assert set(cols) == set(BEFORE[env_id]) | {S.BEHAVIOUR_LOGP}
    # The integer columns only: an extra or missing RNG draw changes the actions, while the float
    # columns (obs, state, reward, ...) could differ in their last bits on another numpy/BLAS build.
    got = {c: _digest(cols[c]) for c in BEFORE[env_id] if c not in FLOAT_COLUMNS}
    changed = sorted(c for c in got if got[c] != BEFORE[env_id][c])
    assert {S.ACTIONS, S.AVAIL_ACTIONS} <= set(got)
    assert not changed, f"{env_id}: columns {changed} differ from the generator before behaviour_logp"


# ------------------------------------------------------------------------------------------------
# (d) OPE reads the column; PDWIS runs on it
# ------------------------------------------------------------------------------------------------

def test_ope_reads_column_and_pdwis_runs(datasets, tmp_path):
    from rllib_sit.ope.data import BEHAVIOUR_LOGP, OPEData
    from rllib_sit.ope.importance import pdwis

    assert BEHAVIOUR_LOGP == S.BEHAVIOUR_LOGP
    path = str(datasets["smac:2s3z"])
    data = OPEData.open(path, cache_root=str(tmp_path / "cache"))
    assert data.behaviour_logp is not None
    np.testing.assert_array_equal(np.asarray(data.behaviour_logp), _columns(path)[S.BEHAVIOUR_LOGP])
    c = data.columns
    filled = np.asarray(c[S.FILLED])
    mu = np.asarray(data.behaviour_logp)
    same = pdwis(c[S.REWARD], filled, mu, mu, resamples=50)  # π = μ: every ratio is 1
    assert same["estimate"] == pytest.approx(float(data.episode_returns.mean()), rel=1e-6)
    assert same["ess"] == pytest.approx(data.num_episodes)
    avail = np.asarray(c[S.AVAIL_ACTIONS])[:, :-1]
    uniform = -np.log(np.maximum(avail.sum(-1), 1.0)) * (filled > 0)[..., None]
    out = pdwis(c[S.REWARD], filled, uniform, mu, resamples=50)
    assert np.isfinite(out["estimate"]) and 0 < out["ess"] <= data.num_episodes


# ------------------------------------------------------------------------------------------------
# where the column is not written; per-agent datasets
# ------------------------------------------------------------------------------------------------

def test_no_column_for_continuous_actions_or_members_without_probabilities(tmp_path):
    dg = generate_dataset("mpe:dg", composition="100% [a1:r, a2:r]", n_episodes=2, seed=0, out=tmp_path / "dg",
                          num_workers=0, progress=False, pool=Pool("mpe:dg", {"random": [PoolMember("uniform")]}))
    assert S.BEHAVIOUR_LOGP not in read_dataset(dg).schema.names
    card = json.loads(Path(dg, "card.json").read_text())
    assert card["behaviour_logp"] is None and "continuous" in card["behaviour_logp_missing"]

    def opaque(env, i, rng, obs=None):  # an in-memory member that exposes no probabilities
        return int(rng.choice(np.flatnonzero(env.action_masks()[i])))

    pool = Pool("mpe:pp_3p1p", {"random": [PoolMember("uniform", {"drift": 0.2})],
                                "medium": [PoolMember("custom", {}, fn=opaque)]})
    pp = generate_dataset("mpe:pp_3p1p", composition="100% [p1:r, p2:m, p3:r]", n_episodes=2, seed=0,
                          out=tmp_path / "pp", num_workers=0, progress=False, pool=pool)
    assert S.BEHAVIOUR_LOGP not in read_dataset(pp).schema.names
    assert "medium" in json.loads(Path(pp, "card.json").read_text())["behaviour_logp_missing"]


def test_decentralize_keeps_each_agents_column(datasets, tmp_path):
    path = datasets["mpe:cn_3ls3l"]
    full = _columns(path)[S.BEHAVIOUR_LOGP]
    out = decentralize(path, tmp_path / "dec")
    for i, (agent, p) in enumerate(out.items()):
        np.testing.assert_array_equal(_columns(p)[S.BEHAVIOUR_LOGP], full[:, :, [i]], err_msg=agent)
