"""``rllib-sit export``: a tiny SIT (discrete, masks) and a tiny continuous SIT are trained for two
iterations, checkpointed and exported; the exported actors (TorchScript, and ONNX through
onnxruntime) must choose the RLlib module's ``forward_inference`` actions on a few hundred recorded
env steps with the recurrent state carried, and the inference API must run without Ray. A tiny
MABCQ's export must apply its behaviour filter (greedy and sampled) as its RLlib module does."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import ray
import torch
from ray.rllib.core.columns import Columns

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "algorithms"))
from tiny_fixtures import (TINY_CONT_ENV_ID, TinyContinuousEnv, TinyCoopEnv,  # noqa: E402
                               make_tiny_dataset, register_tiny_continuous_env, register_tiny_env, tiny_config)

from algo_cases import tiny_config as case_config  # noqa: E402

from rllib_sit.cli.sit_cmd import main as sit_main  # noqa: E402
from rllib_sit.data.synthetic import make_random_dataset  # noqa: E402
from rllib_sit.export import ExportedPolicy, ExportError, export_checkpoint  # noqa: E402
from rllib_sit.models.discrete import bcq_action_filter  # noqa: E402

BACKENDS = ("torchscript", "onnx")


def _train_and_save(config, path):
    """Two iterations, a checkpoint, and copies of the trained agent modules (for the reference actions)."""
    algo = config.build_algo()
    try:
        algo.train()
        algo.train()
        ckpt = algo.save_to_path(path)
        multi = algo.learner_group._learner.module
        modules = {m: multi[m].eval() for m in multi.keys() if not m.startswith("__")}
    finally:
        algo.stop()
    return ckpt, modules


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    register_tiny_continuous_env()
    root = tmp_path_factory.mktemp("export")
    disc = make_tiny_dataset(str(root / "ds"), n_episodes=24, seed=0)
    cont = make_random_dataset(TinyContinuousEnv(), 12, str(root / "dsc"), seed=0)
    try:
        out = {"discrete": _train_and_save(tiny_config(disc), str(root / "ckpt")),
               "continuous": _train_and_save(tiny_config(cont, batch_size_episodes=4).environment(TINY_CONT_ENV_ID),
                                             str(root / "ckpt_cont"))}
    finally:
        ray.shutdown()
    for name, (ckpt, _) in out.items():
        export_checkpoint(ckpt, str(root / f"exported_{name}"))
    yield {name: (ckpt, modules, str(root / f"exported_{name}")) for name, (ckpt, modules) in out.items()}


@pytest.fixture(scope="module")
def facmac(tmp_path_factory):
    """A tiny FACMAC (deterministic tanh actor; sampled = Gaussian action noise) trained, saved, exported."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_continuous_env()
    root = tmp_path_factory.mktemp("export_facmac")
    data = make_random_dataset(TinyContinuousEnv(), 8, str(root / "ds"), seed=0)
    try:
        ckpt, modules = _train_and_save(case_config("FACMAC", None, data), str(root / "ckpt"))
    finally:
        ray.shutdown()
    return ckpt, modules, export_checkpoint(ckpt, str(root / "exported"))


def _module_step(module, obs, mask, state, explore=False):
    """The RLlib module's forward_inference (``explore``: forward_exploration) on a batch of agents of one module."""
    o = {"obs": torch.as_tensor(obs)}
    if mask is not None:
        o["action_mask"] = torch.as_tensor(mask)
    batch = {Columns.OBS: o, Columns.STATE_IN: {k: torch.as_tensor(v) for k, v in state.items()}}
    with torch.no_grad():
        out = module.forward_exploration(batch) if explore else module.forward_inference(batch)
    return out[Columns.ACTIONS].numpy(), {k: v.numpy() for k, v in out[Columns.STATE_OUT].items()}


def record(env, modules, n_episodes, seed=0):
    """Roll out ``n_episodes`` with the RLlib modules (greedy), the state carried per agent.

    Discrete masks are the env's, with extra random holes (always leaving one action the env allows)
    so that masking is exercised. Returns ``[episode][t] = (obs {agent}, masks {agent} | None,
    actions {agent} (env actions), h {agent})``.
    """
    info, rng = env.info, np.random.default_rng(seed)
    types = dict(zip(info.agents, info.agent_types))
    episodes = []
    for k in range(n_episodes):
        obs, _ = env.reset(seed=seed + k)
        state = {a: {kk: v.numpy() for kk, v in modules[types[a]].get_initial_state().items()} for a in info.agents}
        steps, done = [], False
        while not done:
            masks = None
            if info.discrete:
                env_mask = env.action_masks()
                extra = (rng.random(env_mask.shape) < 0.6).astype(np.float32)
                masks = env_mask * extra
                for i in range(info.n_agents):
                    if not masks[i].any():
                        masks[i, rng.choice(np.flatnonzero(env_mask[i]))] = 1.0
                masks = {a: masks[i] for i, a in enumerate(info.agents)}
            actions, hs = {}, {}
            for t in dict.fromkeys(info.agent_types):
                agents = [a for a in info.agents if types[a] == t]
                acts, new = _module_step(modules[t], np.stack([obs[a] for a in agents]),
                                         None if masks is None else np.stack([masks[a] for a in agents]),
                                         {kk: np.stack([state[a][kk] for a in agents]) for kk in state[agents[0]]})
                for i, a in enumerate(agents):
                    act = acts[i]
                    if not info.discrete:  # RLlib's normalized action in [-1, 1] -> the env's box
                        act = info.action_low + (act + 1.0) * 0.5 * (info.action_high - info.action_low)
                    actions[a] = int(act) if info.discrete else act.astype(np.float32)
                    state[a] = {kk: v[i] for kk, v in new.items()}
                    hs[a] = np.concatenate([new[kk][i] for kk in ("h", "h_mu") if kk in new])  # exported h
            steps.append((dict(obs), masks, actions, hs))
            obs, _, term, trunc, _ = env.step(actions)
            done = any(term.values()) or any(trunc.values())
        episodes.append(steps)
    return episodes


def replay(policy, episodes, discrete):
    """The exported policy on the recorded observations and masks, its own state carried."""
    n, h_err = 0, 0.0
    for steps in episodes:
        state = None
        for obs, masks, want, want_h in steps:
            got, state = policy.act(obs, masks, state)
            for a in want:
                if discrete:
                    assert got[a] == want[a], f"step {n}: agent {a} chose {got[a]}, RLlib {want[a]}"
                else:
                    np.testing.assert_allclose(got[a], want[a], atol=1e-5, err_msg=f"step {n}: agent {a}")
                h_err = max(h_err, float(np.abs(state[a]["h"] - want_h[a]).max()))
                n += 1
    assert h_err < 1e-4
    return n


@pytest.fixture(scope="module")
def recorded(trained):
    """About 250 env steps of each env under the trained RLlib modules."""
    return {"discrete": record(TinyCoopEnv(), trained["discrete"][1], n_episodes=50),
            "continuous": record(TinyContinuousEnv(), trained["continuous"][1], n_episodes=50)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_discrete_actors_choose_the_rllib_actions(trained, recorded, backend):
    policy = ExportedPolicy.load(trained["discrete"][2], backend=backend)
    assert policy.agent_modules == {"a0": "scout", "a1": "scout", "b0": "tank"}
    n = replay(policy, recorded["discrete"], discrete=True)
    assert n >= 600  # agent-steps (about 250 env steps x 3 agents)


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuous_actors_choose_the_rllib_actions(trained, recorded, backend):
    policy = ExportedPolicy.load(trained["continuous"][2], backend=backend)
    assert policy.agent_modules == {"l0": "leg", "l1": "leg"}
    assert replay(policy, recorded["continuous"], discrete=False) == 500  # 50 episodes x 5 steps x 2 agents


def test_sampled_actions_respect_masks_and_seed(trained):
    _, _, out = trained["discrete"]
    for backend in BACKENDS:
        actor = ExportedPolicy.load(out, backend=backend).actors["scout"]
        obs = np.random.default_rng(0).standard_normal((400, 4)).astype(np.float32)
        mask = np.ones((400, 3), np.float32)
        mask[:200, 2] = 0.0
        mask[200:, 0] = 0.0
        a1, _ = actor.act(obs, mask, explore=True, rng=np.random.default_rng(7))
        a2, _ = actor.act(obs, mask, explore=True, rng=np.random.default_rng(7))
        np.testing.assert_array_equal(a1, a2)
        assert (mask[np.arange(400), a1] == 1).all() and len(np.unique(a1)) > 1
    cont = ExportedPolicy.load(trained["continuous"][2]).actors["leg"]
    acts, state = cont.act(np.zeros((50, 3), np.float32), explore=True, rng=np.random.default_rng(0))
    assert acts.shape == (50, 2) and (np.abs(acts) <= 1).all() and np.unique(acts).size > 50
    np.testing.assert_array_equal(state["prev_action"], acts)


def _noise(greedy, sampled, low=-1.0, high=1.0):
    """Sampled minus greedy action in [-1, 1] units, where the greedy one is far (> 4 x 0.1) from the clip."""
    g, s = ((np.asarray(a, np.float64) - low) / (high - low) * 2.0 - 1.0 for a in (greedy, sampled))
    assert (np.abs(s) <= 1.0 + 1e-6).all()
    return (s - g)[np.abs(g) < 0.6]


def test_facmac_export_samples_with_facmac_s_action_noise(facmac):
    """FACMAC's sampled evaluation is μ + N(0, 0.1²) in [-1, 1] units, clipped (docs/algorithms/facmac.md),
    not its untrained log_std (0: std 1 before the tanh): the exported policy samples the same way."""
    _, modules, out = facmac
    with open(os.path.join(out, "policy.json")) as f:
        spec = json.load(f)["modules"]["leg"]
    assert spec["exploration"] == {"kind": "gaussian_noise", "std": 0.1}
    obs = np.repeat(np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32), 500, axis=0)
    for backend in BACKENDS:
        actor = ExportedPolicy.load(out, backend=backend).actors["leg"]
        greedy, _ = actor.act(obs)
        sampled, state = actor.act(obs, explore=True, rng=np.random.default_rng(3))
        again, _ = actor.act(obs, explore=True, rng=np.random.default_rng(3))
        np.testing.assert_array_equal(sampled, again)
        np.testing.assert_array_equal(state["prev_action"], sampled)
        d = _noise(greedy, sampled, actor.action_low, actor.action_high)
        assert d.size > 8000 and abs(d.mean()) < 0.005 and abs(d.std() - 0.1) < 0.005, (d.size, d.mean(), d.std())
    # the RLlib module's own sampled evaluation (forward_exploration) draws the same noise around μ
    module = modules["leg"]
    init = {k: np.stack([v.numpy()] * len(obs)) for k, v in module.get_initial_state().items()}
    torch.manual_seed(0)
    d = _noise(_module_step(module, obs, None, init)[0], _module_step(module, obs, None, init, explore=True)[0])
    assert d.size > 8000 and abs(d.mean()) < 0.005 and abs(d.std() - 0.1) < 0.005, (d.size, d.mean(), d.std())


def test_exploration_field_of_the_manifest(trained, tmp_path):
    """Policy-sampling modules say so; a bad rule is refused when the folder is loaded."""
    with open(os.path.join(trained["continuous"][2], "policy.json")) as f:
        assert json.load(f)["modules"]["leg"]["exploration"] == {"kind": "policy"}
    out = str(tmp_path / "bad")
    shutil.copytree(trained["discrete"][2], out)
    path = os.path.join(out, "policy.json")
    with open(path) as f:
        manifest = json.load(f)
    assert manifest["modules"]["scout"]["exploration"] == {"kind": "policy"}
    for bad in ({"kind": "gaussian_noise", "std": 0.1}, {"kind": "eps"}):  # noise on a discrete module; unknown
        manifest["modules"]["scout"]["exploration"] = bad
        with open(path, "w") as f:
            json.dump(manifest, f)
        with pytest.raises(ExportError, match=r"module 'scout': field 'exploration'"):
            ExportedPolicy.load(out)
    del manifest["modules"]["scout"]["exploration"]  # folders exported before the field: the policy's own draws
    with open(path, "w") as f:
        json.dump(manifest, f)
    assert ExportedPolicy.load(out).actors["scout"].exploration == {"kind": "policy"}


def test_manifest_and_bad_inputs(trained, tmp_path):
    ckpt, _, out = trained["discrete"]
    with open(os.path.join(out, "policy.json")) as f:
        manifest = json.load(f)
    assert manifest["algorithm"] == "SIT" and manifest["env"] == "tiny:coop"
    assert set(manifest["modules"]) == {"scout", "tank"} and manifest["skipped_modules"] == {
        "__ardnem__": "ARDNEMTorchRLModule"}
    assert manifest["modules"]["tank"]["files"] == {"torchscript": "tank.pt", "onnx": "tank.onnx"}
    assert "h_parts" not in manifest["modules"]["tank"]  # one GRU state: h is the actor's
    actor = ExportedPolicy.load(out).actors["tank"]
    with pytest.raises(ExportError, match=r"module 'tank': obs has shape \[2, 5\], expected \[2, 4\]"):
        actor.act(np.zeros((2, 5), np.float32))
    with pytest.raises(ExportError, match=r"unknown agent 'zz'"):
        ExportedPolicy.load(out).act({"zz": np.zeros(4)})
    with pytest.raises(FileNotFoundError, match=r"policy\.json: missing"):
        ExportedPolicy.load(str(tmp_path))
    with pytest.raises(FileExistsError, match="already exists"):
        export_checkpoint(ckpt, out)
    with pytest.raises(FileNotFoundError, match=r"learner_group/learner/rl_module: missing; expected an RLlib "
                                                r"algorithm checkpoint"):
        export_checkpoint(str(tmp_path), str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_cli_exports_torchscript_only(trained, tmp_path, capsys):
    ckpt, _, _ = trained["discrete"]
    out = str(tmp_path / "ts")
    assert sit_main(["export", ckpt, "--out", out, "--format", "torchscript"]) == 0
    assert sorted(os.listdir(out)) == ["policy.json", "scout.pt", "tank.pt"]
    assert "scout: scout.pt  (agents: a0, a1)" in capsys.readouterr().out
    assert sit_main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


def test_inference_api_runs_without_ray(trained):
    _, _, out = trained["discrete"]
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # any import of Ray fails\n"
        "import numpy as np\n"
        "from rllib_sit.export import ExportedPolicy\n"
        f"for backend in ('torchscript', 'onnx'):\n"
        f"    policy = ExportedPolicy.load({out!r}, backend=backend)\n"
        "    obs = {a: np.zeros(4, np.float32) for a in policy.agents}\n"
        "    actions, state = policy.act(obs, {'b0': np.array([1, 1, 0])})\n"
        "    actions, state = policy.act(obs, None, state, explore=True)\n"
        "heavy = [m for m, mod in sys.modules.items() if mod is not None\n"
        "         and m.split('.')[0] in ('ray', 'gymnasium', 'pettingzoo', 'pyarrow')]\n"
        "assert not heavy, heavy\n"
        "print('ok', sorted(actions))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok ['a0', 'a1', 'b0']"


# -- MABCQ: the exported policy applies the behaviour filter (discrete BCQ's threshold ζ) -----------

def _rare_action_dataset(path, n_episodes=60, seed=0, p=0.05):
    """``tiny:coop`` episodes where the scouts take action 0 but ``p`` of the time each for 1 and 2
    and the tank takes 1 90% of the time: the behaviour models are peaked, so ζ = 0.3 drops the
    rare actions (scout action 1 earns the team's +1, so Q tends to prefer it)."""
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.data.io import write_dataset

    env, rng = TinyCoopEnv(), np.random.default_rng(seed)

    def policy(e, obs):
        return np.array([*rng.choice(3, size=2, p=[1 - 2 * p, p, p]), 1 if rng.random() < 0.9 else 0], np.int64)

    rows = (rollout_episode(env, policy, seed=k, episode_id=k) for k in range(n_episodes))
    return write_dataset(rows, path, S.DatasetMeta(env=env.info), {"quality": "rare"})


@pytest.fixture(scope="module")
def mabcq(tmp_path_factory):
    """A tiny MABCQ (ζ = 0.3): 40 behaviour-only updates, then 20 BCQ updates; saved and exported."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    register_tiny_env()
    root = tmp_path_factory.mktemp("export_mabcq")
    data = _rare_action_dataset(str(root / "ds"))
    config = case_config("MABCQ", data, None, zeta=0.3, rnn_hidden=16, behaviour_pretrain_updates=40,
                         agent_updates=20, agent_updates_per_iteration=40, behaviour_lr=5e-3, lr=2e-3)
    try:
        ckpt, modules = _train_and_save(config, str(root / "ckpt"))
    finally:
        ray.shutdown()
    return ckpt, modules, export_checkpoint(ckpt, str(root / "exported"))


def _histories(module, n, seed=0):
    """A batch of ``n`` agent steps: observations, previous actions, both GRU states and masks
    (random holes, at least one action available)."""
    rng = np.random.default_rng(seed)
    H = module.actor.hidden
    obs = rng.standard_normal((n, 4)).astype(np.float32)
    state = {"h": rng.uniform(-1, 1, (n, H)).astype(np.float32), "h_mu": rng.uniform(-1, 1, (n, H)).astype(np.float32),
             "prev_action": rng.integers(-1, 3, n).astype(np.int64)}
    mask = (rng.random((n, 3)) < 0.6).astype(np.float32)
    mask[np.arange(n), rng.integers(0, 3, n)] = 1.0
    return obs, mask, state


def _filter_of(module, obs, mask, state):
    """``(allowed [n, 3], unfiltered greedy action [n])`` from the module's own networks."""
    o, m, prev = torch.as_tensor(obs), torch.as_tensor(mask), torch.as_tensor(state["prev_action"])
    with torch.no_grad():
        q, _ = module.actor.step(o, prev, torch.as_tensor(state["h"]), m)  # Q masked to the available actions
        mu, _ = module.behaviour.step(o, prev, torch.as_tensor(state["h_mu"]), m)
        allowed = bcq_action_filter(mu, m, module.zeta)
    return allowed.numpy(), q.argmax(-1).numpy()


def _exported_state(state):
    return {"h": np.concatenate([state["h"], state["h_mu"]], -1), "prev_action": state["prev_action"]}


@pytest.mark.parametrize("module_id", ["scout", "tank"])
def test_mabcq_export_acts_greedily_through_the_behaviour_filter(mabcq, module_id):
    _, modules, out = mabcq
    module = modules[module_id]
    with open(os.path.join(out, "policy.json")) as f:
        spec = json.load(f)["modules"][module_id]
    assert spec["hidden"] == 32 and spec["h_parts"] == [["h", 16], ["h_mu", 16]]
    assert spec["exploration"] == {"kind": "policy"}
    obs, mask, state = _histories(module, 500, seed=1)
    allowed, unfiltered = _filter_of(module, obs, mask, state)
    want, new = _module_step(module, obs, mask, state)
    assert allowed[np.arange(500), want].all() and (mask[np.arange(500), want] == 1).all()
    dropped = ~allowed[np.arange(500), unfiltered]  # the filter removes the Q arg max here
    assert dropped.sum() >= 10, dropped.sum()
    assert (want[dropped] != unfiltered[dropped]).all()
    for backend in BACKENDS:
        actor = ExportedPolicy.load(out, backend=backend).actors[module_id]
        assert actor.h_parts == [("h", 16), ("h_mu", 16)]
        got, st = actor.act(obs, mask, _exported_state(state))
        np.testing.assert_array_equal(got, want, err_msg=backend)
        np.testing.assert_allclose(st["h"], _exported_state(new)["h"], atol=1e-5, err_msg=backend)
        np.testing.assert_array_equal(st["prev_action"], want)


def test_mabcq_export_follows_the_rllib_actions_over_episodes(mabcq):
    """Rollouts under the RLlib modules (masks with holes), replayed by the exported policy, both
    GRU states carried in its ``h``."""
    _, modules, out = mabcq
    episodes = record(TinyCoopEnv(), modules, n_episodes=20)
    for backend in BACKENDS:
        assert replay(ExportedPolicy.load(out, backend=backend), episodes, discrete=True) >= 240


def test_mabcq_export_never_samples_a_filtered_action(mabcq):
    """explore=True draws from softmax(Q) over the kept actions only, as forward_exploration does:
    10,000 draws each (100 per step) never pick a filtered action, and their frequencies are the
    filtered softmax's."""
    _, modules, out = mabcq
    module = modules["scout"]
    n, reps = 100, 100
    obs, mask, state = _histories(module, n, seed=2)
    allowed, unfiltered = _filter_of(module, obs, mask, state)
    assert (~allowed[np.arange(n), unfiltered]).any() and (allowed.sum(-1) >= 2).any()
    with torch.no_grad():
        q, _ = module.actor.step(torch.as_tensor(obs), torch.as_tensor(state["prev_action"]),
                                 torch.as_tensor(state["h"]))
    p = torch.softmax(q.masked_fill(~torch.as_tensor(allowed), -np.inf), -1).numpy()  # the filtered softmax
    obs_r, mask_r = np.repeat(obs, reps, 0), np.repeat(mask, reps, 0)
    state_r = {k: np.repeat(v, reps, 0) for k, v in state.items()}
    torch.manual_seed(0)
    draws = {"rllib": _module_step(module, obs_r, mask_r, state_r, explore=True)[0]}
    for backend in BACKENDS:
        actor = ExportedPolicy.load(out, backend=backend).actors["scout"]
        draws[backend] = actor.act(obs_r, mask_r, _exported_state(state_r), explore=True,
                                   rng=np.random.default_rng(5))[0]
    for name, a in draws.items():
        assert np.repeat(allowed, reps, 0)[np.arange(n * reps), a].all(), name  # never a filtered action
        freq = (a.reshape(n, reps)[..., None] == np.arange(3)).mean(1)
        assert np.abs(freq - p).max() < 0.25 and np.abs((freq - p).mean(0)).max() < 0.02, (name, freq, p)
