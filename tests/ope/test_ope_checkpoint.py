"""``rllib-sit ope CHECKPOINT``: a MABC checkpoint on the tiny env — the policy's actions over the
dataset's histories (checked against the module's own unroll), log-probabilities, the CLI (text,
JSON, PDWIS on a dataset with behaviour probabilities) and its bad-input messages.
Ray is started once for the module."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from rllib_sit.cli.sit_cmd import main as sit_main
from rllib_sit.data import schema as S

pytestmark = pytest.mark.usefixtures("ray_session")


def train_and_save(cfg, path: str) -> str:
    """One training iteration of ``cfg``'s algorithm, saved to ``path``; the algorithm stopped."""
    algo = cfg.build_algo()
    try:
        algo.train()
        return str(algo.save_to_path(path))
    finally:
        algo.stop()


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    """(checkpoint, dataset, uniform-behaviour copy with behaviour_logp, other env's dataset)."""
    from tiny_fixtures import TinyContinuousEnv, make_tiny_dataset, register_tiny_continuous_env

    from rllib_sit.algorithms.mabc import MABCConfig
    from rllib_sit.data.synthetic import make_random_dataset
    from rllib_sit.ope.data import uniform_behaviour_logp, with_behaviour_logp

    root = tmp_path_factory.mktemp("ope")
    ds = make_tiny_dataset(str(root / "ds"), n_episodes=24, seed=0)
    cfg = (MABCConfig().environment("tiny:coop").offline_data(input_=ds)
           .training(agent_updates=6, agent_updates_per_iteration=6, batch_size_episodes=8, rnn_hidden=8)
           .evaluation(evaluation_duration=2).debugging(seed=0))
    ckpt = train_and_save(cfg, str(root / "ckpt"))
    with_mu = with_behaviour_logp(ds, str(root / "ds_mu"), uniform_behaviour_logp,
                                  how="uniform over available actions (make_random_dataset)")
    register_tiny_continuous_env()
    other = make_random_dataset(TinyContinuousEnv(), 4, str(root / "other"), seed=0)
    return str(ckpt), ds, with_mu, other


def _policy_and_data(trained):
    from rllib_sit.ope.data import OPEData
    from rllib_sit.ope.policy import CheckpointPolicy

    ckpt, ds, _, _ = trained
    data = OPEData.open(ds)
    return CheckpointPolicy(ckpt, data.info), data


def test_greedy_actions_follow_the_dataset_history(trained):
    """π_i's action at every t = 0..length equals the module's arg max over its own unroll on
    τ_i^t = (o_i^0, a_i^0, ..., o_i^t) of the data (the recurrent state is carried, a^{t-1} is the data's)."""
    policy, data = _policy_and_data(trained)
    pa = policy.actions(data.columns, data.lengths, explore=False)
    assert pa.actions.shape == (data.num_episodes, data.T + 1, 1, 3) and pa.num_samples == 1
    c = data.columns
    for module_id, members in policy.members.items():
        actor = policy.modules[module_id].actor
        for i in members:
            obs = torch.from_numpy(np.array(c[S.OBS][:, :, i], np.float32))
            acts = torch.from_numpy(np.asarray(c[S.ACTIONS][:, :, i]))
            prev = torch.cat([torch.full_like(acts[:, :1], -1), acts], 1)  # a^{t-1}, t = 0..T
            avail = torch.from_numpy(np.asarray(c[S.AVAIL_ACTIONS][:, :, i], np.float32))
            with torch.no_grad():
                want = actor(obs, prev, avail).argmax(-1).numpy()
            for k in range(data.num_episodes):
                L = data.lengths[k] + 1
                np.testing.assert_array_equal(pa.actions[k, :L, 0, i], want[k, :L])


def test_sampled_actions_are_available_and_logp_is_consistent(trained):
    policy, data = _policy_and_data(trained)
    pa = policy.actions(data.columns, data.lengths, explore=True, num_samples=4, seed=1)
    assert pa.actions.shape[2] == 4
    k, t = data.k, data.t
    avail = np.asarray(data.columns[S.AVAIL_ACTIONS])[k, t]  # [n, N, A]
    for m in range(4):
        chosen = np.take_along_axis(avail, pa.actions[k, t, m][..., None], -1)  # [n, N, 1]
        assert (chosen > 0).all()
    assert (pa.actions[k, t, 0] != pa.actions[k, t, 1]).any()  # draws differ
    lp = policy.log_probs(data.columns, data.lengths, explore=True)
    assert lp.shape == (data.num_episodes, data.T, 3) and (lp[k, t] <= 1e-6).all() and (lp[k, t] > -20).all()
    greedy = policy.log_probs(data.columns, data.lengths, explore=False)
    g = policy.actions(data.columns, data.lengths, explore=False).actions[k, t, 0]
    a = np.asarray(data.columns[S.ACTIONS])[k, t]
    np.testing.assert_array_equal(greedy[k, t] == 0, a == g)  # log 1[a = arg max]


def test_cli_json_and_text(trained, capsys):
    ckpt, ds, with_mu, _ = trained
    assert sit_main(["ope", ckpt, "--dataset", ds, "--json", "--updates", "40"]) == 0
    out = json.loads(capsys.readouterr().out)
    f = out["fqe"]
    assert out["algorithm"] == "MABC" and out["explore"] is False and out["dataset"] == os.path.abspath(ds)
    assert np.isfinite(f["estimate"]) and f["ci_low"] <= f["estimate"] <= f["ci_high"] and f["gamma"] == 1.0
    assert f["num_episodes"] == 24 and len(f["diagnostics"]["td_loss_curve"]) == 1
    assert out["wis"] is None and "no behaviour_logp" in out["wis_skipped"]
    # sampled policy on the copy with behaviour probabilities: PDWIS too (default dataset: the checkpoint's own)
    assert sit_main(["ope", ckpt, "--dataset", with_mu, "--explore", "--updates", "40"]) == 0
    text = capsys.readouterr().out
    assert "FQE estimate (γ=1, undiscounted episode return)" in text and "sampled policy" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("PDWIS estimate"))
    assert "ESS" in line and "of 24 episodes" in line
    assert sit_main(["ope", ckpt, "--json", "--updates", "20"]) == 0  # --dataset defaults to the training data
    assert json.loads(capsys.readouterr().out)["dataset"] == os.path.abspath(ds)
    assert sit_main(["ope", ckpt, "--updates", "20", "--conservative-weight", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "conservative FQE (α=0.5; pessimistic, for ranking) estimate (γ=1" in text


@pytest.mark.parametrize("argv,message", [
    ([], "expected CHECKPOINT (a checkpoint folder) or --results DIR"),
    (["/no/such/ckpt"], "CHECKPOINT: /no/such/ckpt: no such folder"),
    (["{empty}"], "class_and_ctor_args.pkl: missing; expected an RLlib algorithm checkpoint"),
    (["{ckpt}", "--results", "{empty}"], "give either CHECKPOINT or --results DIR, not both"),
    (["--results", "/no/such/dir"], "--results: /no/such/dir: no such folder"),
    (["--results", "{empty}"], "results.csv: missing; expected a benchmark output folder"),
    (["{ckpt}", "--score"], "--score needs --results DIR"),
    (["--results", "{empty}", "--max-td-ratio", "10"], "--max-td-ratio: only used with --results DIR --score"),
    (["--results", "{empty}", "--score", "--max-td-ratio", "0"], "--max-td-ratio: 0.0 is invalid; expected a finite"),
    (["{ckpt}", "--dataset", "nowhere"], "--dataset: 'nowhere' is neither a dataset folder/URI nor MAP/QUALITY"),
    (["{ckpt}", "--config", "{bad"], "--config: not valid JSON"),
    (["{ckpt}", "--config", '{"hiden": 3}'], "FQEConfig: unknown setting 'hiden'; did you mean 'hidden'?"),
    (["{ckpt}", "--updates", "0"], "FQEConfig: updates=0 is invalid; expected an int >= 1"),
    (["{ckpt}", "--conservative-weight", "-1"], "FQEConfig: conservative_weight=-1.0 is invalid; expected a finite"),
    (["{ckpt}", "--dataset", "{other}"], "recorded in 'tinycont:coop', but the checkpoint was trained on env 'tiny:coop'"),
])
def test_bad_input_is_one_clear_line(trained, tmp_path, capsys, argv, message):
    ckpt, _, _, other = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    subs = {"{ckpt}": ckpt, "{empty}": str(empty), "{other}": other}
    argv = [subs.get(a, a) for a in argv]
    assert sit_main(["ope", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rllib-sit: error: ") and message in err, err


def test_imported_dataset(trained, tmp_path, capsys):
    """``rllib-sit ope`` on a dataset imported from a pymarl HDF5 file (h5py writes it in pymarl's
    ``EpisodeBatch`` layout) of the checkpoint's env: FQE reads the imported episodes."""
    from import_writers import write_pymarl

    from rllib_sit.data.importers import import_dataset
    from rllib_sit.envs.registry import make_env

    ckpt = trained[0]
    info = make_env("tiny:coop").info
    lengths = [info.episode_limit, max(1, info.episode_limit - 1), info.episode_limit]
    h5 = str(tmp_path / "tiny_coop.h5")
    write_pymarl(h5, info, lengths, [True, True, False], info.episode_limit, seed=3)
    ds = import_dataset([h5], "tiny:coop", str(tmp_path / "imported"))
    assert sit_main(["ope", ckpt, "--dataset", ds, "--json", "--updates", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == os.path.abspath(ds) and out["fqe"]["num_episodes"] == 3
    assert np.isfinite(out["fqe"]["estimate"])


def test_continuous_checkpoint(trained, tmp_path):
    """A continuous MABC checkpoint: box actions of the tanh-Gaussian actor (greedy = tanh(mean)
    mapped onto the box), FQE on them, and PDWIS skipped for the greedy policy (no density)."""
    from tiny_fixtures import TINY_CONT_ENV_ID

    from rllib_sit.algorithms.mabc import MABCConfig
    from rllib_sit.ope.api import evaluate
    from rllib_sit.ope.data import OPEData
    from rllib_sit.ope.fitted_q import FQEConfig
    from rllib_sit.ope.policy import CheckpointError, CheckpointPolicy

    other = trained[3]  # 4 random episodes of tinycont:coop
    ckpt = train_and_save(MABCConfig().environment(TINY_CONT_ENV_ID).offline_data(input_=other)
                          .training(agent_updates=3, agent_updates_per_iteration=3, batch_size_episodes=4, rnn_hidden=8)
                          .evaluation(evaluation_duration=1).debugging(seed=0), str(tmp_path / "ckpt"))
    data = OPEData.open(other)
    policy = CheckpointPolicy(str(ckpt), data.info)
    pa = policy.actions(data.columns, data.lengths)
    assert pa.actions.shape == (4, 6, 1, 2, 2) and np.abs(pa.actions).max() <= 1.0
    actor = policy.modules["leg"].actor
    obs = torch.from_numpy(np.asarray(data.columns[S.OBS][:, :, 0], np.float32))
    acts = torch.from_numpy(np.asarray(data.columns[S.ACTIONS][:, :, 0], np.float32))
    prev = torch.cat([torch.zeros_like(acts[:, :1]), acts], 1)
    with torch.no_grad():
        want = torch.tanh(actor(obs, prev)).numpy()  # box [-1, 1]: the unit action is the box action
    np.testing.assert_allclose(pa.actions[:, :, 0, 0], want, atol=1e-5)
    with pytest.raises(CheckpointError, match="greedy continuous policy is undefined"):
        policy.log_probs(data.columns, data.lengths, explore=False)
    out = evaluate(str(ckpt), data, config=FQEConfig(updates=20, ci_resamples=50))
    assert np.isfinite(out["fqe"]["estimate"]) and out["wis"] is None


def test_stateless_per_agent_checkpoint(trained, tmp_path):
    """VD+TN: one MLP module per agent (``module_mapping="agent_id"``), no recurrent state, its own
    observation normalisation: actions come from the module's forward_inference, PDWIS is skipped."""
    from rllib_sit.algorithms.vdtn import VDTNCQLConfig
    from rllib_sit.ope.api import evaluate
    from rllib_sit.ope.data import OPEData
    from rllib_sit.ope.fitted_q import FQEConfig
    from rllib_sit.ope.policy import CheckpointPolicy

    _, ds, with_mu, _ = trained
    ckpt = train_and_save(VDTNCQLConfig().environment("tiny:coop").offline_data(input_=ds)
                          .training(hidden=[8, 8], batch_size=8, fit_updates=2, td_updates=2, updates_per_iteration=4,
                                    num_torch_threads=1, vae_latent_dim=3, num_sampled_actions=3)
                          .evaluation(evaluation_duration=1).debugging(seed=0), str(tmp_path / "ckpt"))
    data = OPEData.open(with_mu)
    policy = CheckpointPolicy(str(ckpt), data.info)
    assert policy.members == {"a0": [0], "a1": [1], "b0": [2]}
    pa = policy.actions(data.columns, data.lengths)
    module = policy.modules["b0"]
    obs = torch.from_numpy(np.array(data.columns[S.OBS][:, 0, 2], np.float32))
    avail = torch.from_numpy(np.array(data.columns[S.AVAIL_ACTIONS][:, 0, 2], np.float32))
    with torch.no_grad():
        want = module.act(module.norm(obs), avail, False).numpy()
    np.testing.assert_array_equal(pa.actions[:, 0, 0, 2], want)
    out = evaluate(str(ckpt), data, config=FQEConfig(updates=20, ci_resamples=50))
    assert np.isfinite(out["fqe"]["estimate"]) and out["wis"] is None and "VDTN" in out["wis_skipped"]
