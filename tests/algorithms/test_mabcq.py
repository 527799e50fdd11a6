"""MABCQ (SIT paper Eq. 12, Table 11 ζ = 0.3; discrete and continuous BCQ, Fujimoto et al. 2019).

Eq. 12's filter on hand-made behaviour probabilities (ratio to the most likely *available*
action, renormalised over the available ones), in the TD target and in greedy evaluation with a
case where the Q arg max is a filtered action; the TD and behaviour losses against a NumPy
recomputation from the raw network outputs on a hand-made joint batch; padded steps change
nothing; mixer weights non-negative; the continuous target (best of n perturbed VAE samples) and
BCQ's VAE loss; config defaults/validation, ``run: MABCQ``, the tuned examples; build-train-evaluate
(discrete, continuous), a checkpoint round trip, and a learning check in which the filter decides
the greedy policy. Ray is started once for the module (conftest); torch runs on one thread here.
"""

import glob
import os

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from tiny_fixtures import (TINY_CONT_ENV_ID, TINY_ENV_ID, TinyContinuousEnv, TinyCoopEnv,
                               register_tiny_continuous_env)

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.mabcq import MABCQ, MABCQConfig
from rllib_sit.algorithms.mabcq import mabcq_learner as N
from rllib_sit.algorithms.mabcq.torch.default_mabcq_torch_rl_module import (
    MABCQContinuousAgentTorchRLModule, MABCQDiscreteAgentTorchRLModule, bcq_action_filter)
from rllib_sit.algorithms.mabcq.torch.mabcq_torch_learner import MABCQTorchLearner, bcq_vae_loss
from rllib_sit.data import schema as S
from rllib_sit.data.synthetic import make_random_dataset
from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY
from rllib_sit.models.mixers import StateLinearMixer
from rllib_sit.replay import keys as K
from rllib_sit.replay.samplers import JointEpisodeSampler

TUNED = os.path.join(os.path.dirname(__file__), "..", "..", "tuned_examples")
GAMMA = 0.99


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_mabcq(path, env=TINY_ENV_ID, **training):
    kw = dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8, target_update_interval=2,
              num_torch_threads=1)
    kw.update(training)
    return (MABCQConfig().environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))


# -- NumPy references ------------------------------------------------------------------------------

def np_filter(logits, avail, zeta):
    """Eq. 12's filter, independently: μ = softmax over the available actions, ratio to its max ≥ ζ."""
    z = np.where(avail > 0, logits, -np.inf)
    p = np.exp(z - z.max(-1, keepdims=True))
    p = p / p.sum(-1, keepdims=True)
    return (avail > 0) & (p / p.max(-1, keepdims=True) >= zeta)


def _np(layer):
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


def np_linear_mix(mixer: StateLinearMixer, q, s):
    """Σ_i |hyper_w(s)|_i q_i + hyper_b(s) in NumPy from the mixer's parameters."""
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    (w1, b1), (w2, b2) = _np(mixer.hyper.hyper_w[0]), _np(mixer.hyper.hyper_w[2])
    (v1, c1), (v2, c2) = _np(mixer.hyper.hyper_b[0]), _np(mixer.hyper.hyper_b[2])
    w = np.abs(relu(s @ w1.T + b1) @ w2.T + b2)
    b = (relu(s @ v1.T + c1) @ v2.T + c2)[..., 0]
    return (w * q).sum(-1) + b


# -- Eq. 12's filter on hand-made probabilities -----------------------------------------------------

def test_filter_keeps_actions_within_zeta_of_the_most_likely_available_one():
    probs = torch.tensor([[1.0, 0.1, 0.5, 0.29],   # all available: ratios 1, .1, .5, .29
                          [10.0, 1.0, 0.5, 0.2],   # 0 unavailable: ratios to action 1 are 1, .5, .2
                          [10.0, 1.0, 0.2, 0.5]])  # 0 and 3 unavailable: action 2's ratio .2
    avail = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 0]], dtype=torch.float32)
    got = bcq_action_filter(torch.log(probs), avail, 0.3)
    expected = [[True, False, True, False], [False, True, True, False], [False, True, False, False]]
    assert got.tolist() == expected
    # If the unavailable action counted as the most likely one, row 1 would keep nothing
    # (ratios .1, .05, .02) and row 2 nothing either: the renormalisation is over available actions.
    assert got[1:].any(-1).all()
    # The logits of unavailable actions change nothing.
    louder = torch.log(probs).masked_fill(avail == 0, 50.0)
    assert bcq_action_filter(louder, avail, 0.3).tolist() == expected
    # ζ = 0 keeps every available action, ζ = 1 only the most likely available one.
    assert bcq_action_filter(torch.log(probs), avail, 0.0).tolist() == (avail > 0).tolist()
    assert bcq_action_filter(torch.log(probs), avail, 1.0).tolist() == [[True, False, False, False],
                                                                        [False, True, False, False],
                                                                        [False, True, False, False]]


@pytest.mark.parametrize("zeta", [0.0, 0.3, 0.7])
def test_filter_matches_numpy_on_random_logits(zeta):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 6, generator=g)
    avail = (torch.rand(64, 6, generator=g) < 0.6).float()
    avail[:, 5] = 1.0
    got = bcq_action_filter(logits, avail, zeta).numpy()
    np.testing.assert_array_equal(got, np_filter(logits.double().numpy(), avail.numpy(), zeta))
    assert not (got & (avail.numpy() == 0)).any()


# -- the filter in the TD target and in greedy evaluation (discrete module) --------------------------

def _discrete_module(zeta=0.3, double_q=True, inference_only=False):
    obs_space, act_space = MABCQConfig().spaces(TinyCoopEnv().info)
    mc = dict(obs_dim=4, discrete=True, n_actions=3, act_dim=0, action_low=-1.0, action_high=1.0, rnn_hidden=8,
              zeta=zeta, double_q=double_q)
    torch.manual_seed(0)
    mod = RLModuleSpec(module_class=MABCQDiscreteAgentTorchRLModule, observation_space=obs_space,
                       action_space=act_space, model_config=mc, inference_only=inference_only).build()
    if not inference_only:
        mod.make_target_networks()
    return mod


def _constant(net, values):
    """Make a GRUActor output ``values`` at every step (zero output weights, bias = values)."""
    with torch.no_grad():
        net.fc_out.weight.zero_()
        net.fc_out.bias.copy_(torch.tensor(values, dtype=torch.float32))


# (behaviour probabilities, availability, online Q, target Q, double_q, the action Eq. 12 must pick)
CASES = {
    # Q's arg max (action 1) has ratio 0.1 < ζ: filtered. Double Q: online arg max over {0, 2} = 2.
    "argmax_filtered_double": ([1.0, 0.1, 0.5], [1, 1, 1], [0.0, 5.0, 1.0], [100.0, 50.0, 7.0], True, 2),
    # Without double Q the target's own arg max over the filtered set {0, 2}: action 0.
    "argmax_filtered_target": ([1.0, 0.1, 0.5], [1, 1, 1], [0.0, 5.0, 1.0], [100.0, 50.0, 7.0], False, 0),
    # Unavailable action 0 is the most likely under μ and has the highest Q: renormalised over
    # {1, 2}, action 2's ratio is 0.5 ≥ ζ, so 2 is picked (not 0, and not "nothing allowed").
    "renormalised": ([10.0, 1.0, 0.5], [0, 1, 1], [9.0, 0.0, 5.0], [9.0, 0.0, 5.0], True, 2),
    # Same, but action 2's ratio to the best available action is 0.2 < ζ: only action 1 remains.
    "unavailable_max": ([10.0, 1.0, 0.2], [0, 1, 1], [9.0, 0.0, 5.0], [9.0, 0.0, 5.0], True, 1),
}


def _trajectory_batch(avail_row, B=2, L=3):
    g = torch.Generator().manual_seed(1)
    acts = torch.tensor([[1, 2, 1], [2, 1, 1]])[:B, :L]
    avail = torch.tensor(avail_row, dtype=torch.float32).expand(B, L + 1, 3).clone()
    avail[:, :L].scatter_(-1, acts.unsqueeze(-1), 1.0)  # the data's own actions were available
    return {K.OBS_ALL: torch.randn(B, L + 1, 3, 4, generator=g), K.AGENT_INDEX: torch.tensor([0, 2])[:B],
            K.ACTIONS: acts, K.PREV_ACTIONS: torch.cat([torch.full((B, 1), -1), acts], 1),
            K.AVAIL_ACTIONS: avail, K.FILLED: torch.ones(B, L), K.NEXT_FILLED: torch.ones(B, L)}


@pytest.mark.parametrize("case", list(CASES))
def test_td_target_never_takes_a_filtered_action(case):
    probs, avail, q, tq, double_q, expected = CASES[case]
    mod = _discrete_module(double_q=double_q)
    _constant(mod.behaviour, np.log(probs))
    _constant(mod.actor, q)
    _constant(mod.target_actor, tq)
    out = mod._forward_train(_trajectory_batch(avail))
    assert (out[N.NEXT_ACTION] == expected).all()
    torch.testing.assert_close(out[K.Q_NEXT_TARGET], torch.full((2, 3), tq[expected]))
    kept = np_filter(np.log(probs), np.array(avail), 0.3)
    assert kept[expected] and out[N.ALLOWED_NEXT][0, 0].numpy().astype(bool).tolist() == kept.tolist()
    if case.startswith("argmax_filtered") or case == "unavailable_max":
        assert int(np.argmax(np.where(np.array(avail) > 0, q, -np.inf))) != expected  # the unfiltered choice


def _env_runner_batch(mod, avail_row, B=2):
    g = torch.Generator().manual_seed(2)
    init = mod.get_initial_state()
    state = {k: torch.stack([v] * B) for k, v in init.items()}
    return {Columns.OBS: {OBS_KEY: torch.randn(B, 1, 4, generator=g),
                          ACTION_MASK_KEY: torch.tensor(avail_row, dtype=torch.float32).expand(B, 1, 3)},
            Columns.STATE_IN: state}


@pytest.mark.parametrize("case", ["argmax_filtered_double", "renormalised", "unavailable_max"])
def test_greedy_evaluation_uses_the_same_filter(case):
    probs, avail, q, _, _, expected = CASES[case]
    learner_mod = _discrete_module()
    _constant(learner_mod.behaviour, np.log(probs))
    _constant(learner_mod.actor, q)
    # The EnvRunner's module: built inference-only, weights synced as RLlib does (no target net).
    runner_mod = _discrete_module(inference_only=True)
    runner_mod.set_state(learner_mod.get_state(inference_only=True))
    assert hasattr(runner_mod, "behaviour") and not hasattr(runner_mod, "target_actor")
    batch = _env_runner_batch(runner_mod, avail)
    for _ in range(3):  # a few steps: the behaviour model's own GRU state is carried
        out = runner_mod._forward_inference(batch)
        assert out[Columns.ACTIONS].squeeze(1).tolist() == [expected, expected]
        assert set(out[Columns.STATE_OUT]) == {"h", "h_mu", "prev_action"}
        batch = dict(batch, **{Columns.STATE_IN: out[Columns.STATE_OUT]})
    # Exploration samples softmax(Q) over the same filtered set: never a filtered action.
    kept = np_filter(np.log(probs), np.array(avail), 0.3)
    for _ in range(50):
        a = runner_mod._forward_exploration(batch)[Columns.ACTIONS].squeeze(1)
        assert kept[a.numpy()].all()


# -- the losses against NumPy on a hand-made joint batch ----------------------------------------------

@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    """A dataset of the tiny env only to build learners from (the losses run on hand-made batches)."""
    return make_random_dataset(TinyCoopEnv(), 4, str(tmp_path_factory.mktemp("mabcq") / "ds"), seed=0)


@pytest.fixture(scope="module")
def tiny_cont_path(tmp_path_factory):
    return make_random_dataset(TinyContinuousEnv(), 4, str(tmp_path_factory.mktemp("mabcq_c") / "ds"), seed=0)


def _learner(path, info, **training):
    cfg = MABCQConfig().offline_data(input_=path).training(**training)
    torch.manual_seed(0)
    learner = MABCQTorchLearner(config=cfg, module_spec=cfg.build_module_specs(info))
    learner.build()
    return learner


def _joint_columns(lengths=(4, 2, 3), terminated_at=((1, 1), (2, 2)), seed=0):
    """Episodes of the tiny env's shapes (3 agents, obs 4, state 5, 3 actions; the tank never has
    action 2) with padded tails; episodes 1 and 2 terminate at their last step, 0 is cut by the limit."""
    rng = np.random.default_rng(seed)
    E, T, n = len(lengths), max(lengths), 3
    filled = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.uint8)
    terminated = np.zeros((E, T), np.uint8)
    for k, t in terminated_at:
        terminated[k, t] = 1
    avail = (rng.random((E, T + 1, n, 3)) < 0.6).astype(np.float32)
    avail[..., 0] = 1.0
    avail[:, :, 2, 2] = 0.0
    actions = np.zeros((E, T, n), np.int64)
    for k in range(E):
        for t in range(T):
            for i in range(n):
                actions[k, t, i] = rng.choice(np.flatnonzero(avail[k, t, i]))
    return {S.OBS: rng.normal(size=(E, T + 1, n, 4)).astype(np.float32),
            S.STATE: rng.normal(size=(E, T + 1, 5)).astype(np.float32), S.ACTIONS: actions,
            S.AVAIL_ACTIONS: avail, S.REWARD: rng.normal(size=(E, T)).astype(np.float32),
            S.TERMINATED: terminated, S.FILLED: filled}


def _joint_batch(columns, agent_modules):
    """Every episode once, in order, as ``sample_by_module`` gives them to the learner."""
    sampler = JointEpisodeSampler(columns, 0, agent_modules)
    sampler.sample_indices = lambda n: np.arange(n)
    raw = sampler.sample_by_module(len(columns[S.FILLED]), MIXER_MODULE_ID)
    return {m: {k: torch.as_tensor(np.asarray(v)) for k, v in b.items()} for m, b in raw.items()}


def _perturb_targets(learner, scale=0.3):
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in learner.module.keys():
            mod = learner.module[m].unwrapped()
            for net in (mod.target_actor,) if m != MIXER_MODULE_ID else (mod.target_mixer,):
                for p in net.parameters():
                    p.add_(scale * torch.randn(p.shape, generator=g))


def _numpy_discrete_losses(learner, columns, zeta, gamma, double_q=True):
    """TD loss (Eq. 12) and per-module behaviour NLL (Eq. 11) in NumPy from the raw network outputs."""
    agent_modules = ["scout", "scout", "tank"]
    filled = columns[S.FILLED].astype(np.float64)
    E, L = filled.shape
    acts = columns[S.ACTIONS]
    avail = columns[S.AVAIL_ACTIONS].astype(np.float64)
    q_taken, q_next = np.zeros((E, L, 3)), np.zeros((E, L, 3))
    nll = {"scout": [], "tank": []}
    n_dropped = 0
    for i, m in enumerate(agent_modules):
        mod = learner.module[m].unwrapped()
        own = torch.as_tensor(columns[S.OBS][:, :L + 1, i])
        prev = torch.as_tensor(np.concatenate([np.full((E, 1), -1), acts[:, :, i]], 1))
        with torch.no_grad():
            q = mod.actor(own, prev).double().numpy()          # [E, L+1, 3] raw Q
            tq = mod.target_actor(own, prev).double().numpy()
            mu = mod.behaviour(own, prev).double().numpy()     # unmasked logits
        allowed = np_filter(mu[:, 1:], avail[:, 1:L + 1, i], zeta)
        real_next = np.concatenate([filled[:, 1:], np.zeros((E, 1))], 1) > 0
        n_dropped += int(((avail[:, 1:L + 1, i] > 0) & ~allowed)[real_next].sum())
        chooser = q[:, 1:] if double_q else tq[:, 1:]
        a_star = np.where(allowed, chooser, -np.inf).argmax(-1)
        q_next[:, :, i] = np.take_along_axis(tq[:, 1:], a_star[..., None], -1)[..., 0]
        q_taken[:, :, i] = np.take_along_axis(q[:, :L], acts[:, :, i, None], -1)[..., 0]
        z = np.where(avail[:, :L, i] > 0, mu[:, :L], -np.inf)
        lse = z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
        logp = np.take_along_axis(mu[:, :L], acts[:, :, i, None], -1)[..., 0] - lse
        nll[m] += list(-logp[filled > 0])
    mixer_mod = learner.module[MIXER_MODULE_ID].unwrapped()
    state = columns[S.STATE].astype(np.float64)
    q_tot = np_linear_mix(mixer_mod.mixer, q_taken, state[:, :L])
    q_tot_next = np_linear_mix(mixer_mod.target_mixer, q_next, state[:, 1:L + 1])
    next_filled = np.concatenate([filled[:, 1:], np.zeros((E, 1))], 1)
    y = columns[S.REWARD] + gamma * (1 - columns[S.TERMINATED]) * next_filled * q_tot_next
    td = ((y - q_tot) ** 2 * filled).sum() / filled.sum()
    return td, {m: float(np.mean(v)) for m, v in nll.items()}, n_dropped


@pytest.mark.parametrize("double_q", [True, False])
def test_td_and_behaviour_losses_match_numpy(tiny_path, double_q):
    learner = _learner(tiny_path, TinyCoopEnv().info, zeta=0.3, double_q=double_q)
    _perturb_targets(learner)  # the target nets differ from the online ones
    for m in ("scout", "tank"):  # a peaked behaviour model, so that the filter drops actions
        with torch.no_grad():
            learner.module[m].unwrapped().behaviour.fc_out.weight.mul_(40.0)
    columns = _joint_columns()
    batch = _joint_batch(columns, ["scout", "scout", "tank"])
    terms = learner.compute_joint_losses(batch=batch, fwd_out=learner.module.forward_train(batch))
    td, nll, n_dropped = _numpy_discrete_losses(learner, columns, 0.3, GAMMA, double_q)
    assert n_dropped > 0  # the filter bites in this batch
    assert terms["td"][0].item() == pytest.approx(td, rel=1e-5)
    for m in ("scout", "tank"):
        assert terms[f"{m}/behaviour"][0].item() == pytest.approx(nll[m], rel=1e-5)
    assert terms["td"][1] == [("scout", "q"), ("tank", "q"), (MIXER_MODULE_ID, "mixer")]
    assert terms["scout/behaviour"][1] == [("scout", "behaviour")]


def test_padded_steps_change_nothing(tiny_path):
    learner = _learner(tiny_path, TinyCoopEnv().info)
    columns = _joint_columns()
    batch = _joint_batch(columns, ["scout", "scout", "tank"])
    base = {k: v[0].item() for k, v in learner.compute_joint_losses(
        batch=batch, fwd_out=learner.module.forward_train(batch)).items()}
    rng = np.random.default_rng(9)
    changed = {k: v.copy() for k, v in columns.items()}
    for k, n in enumerate(columns[S.FILLED].sum(1)):  # everything from the episode's end on
        changed[S.OBS][k, n:] += 5.0 * rng.normal(size=changed[S.OBS][k, n:].shape)
        changed[S.STATE][k, n:] += 5.0
        changed[S.ACTIONS][k, n:] = 1
        changed[S.REWARD][k, n:] = 100.0
        changed[S.AVAIL_ACTIONS][k, n + 1:] = 1.0 - changed[S.AVAIL_ACTIONS][k, n + 1:]
    batch2 = _joint_batch(changed, ["scout", "scout", "tank"])
    again = {k: v[0].item() for k, v in learner.compute_joint_losses(
        batch=batch2, fwd_out=learner.module.forward_train(batch2)).items()}
    assert again == pytest.approx(base, rel=1e-6)


def test_mixer_is_one_state_linear_mixer_with_non_negative_weights(tiny_path):
    learner = _learner(tiny_path, TinyCoopEnv().info)
    assert [m for m in learner.module.keys() if m == MIXER_MODULE_ID] == [MIXER_MODULE_ID]
    mix_mod = learner.module[MIXER_MODULE_ID].unwrapped()
    assert isinstance(mix_mod.mixer, StateLinearMixer)
    assert mix_mod.mixer.hyper.hyper_w[0].out_features == 32  # Table 11: mixer hidden 32
    with torch.no_grad():
        mix_mod.mixer.hyper.hyper_w[2].bias.fill_(-3.0)  # pre-activation mostly negative
    s = torch.randn(64, 5)
    w, _ = mix_mod.mixer.weights(s)
    assert (w >= 0).all() and (mix_mod.mixer.hyper.hyper_w(s) < 0).any()
    q = torch.randn(64, 3, requires_grad=True)
    grad = torch.autograd.grad(mix_mod.mix(q, s).sum(), q)[0]
    assert (grad >= 0).all()  # ∂Q_tot/∂Q_i = w_i(s) ≥ 0
    torch.testing.assert_close(grad, w)


# -- continuous (BCQ's VAE + perturbation; this package's per-agent design) ---------------------------

def _continuous_batch(B=2, L=3, A=2, seed=4):
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(B, L, A, generator=g) * 1.6 - 0.8
    return {K.OBS_ALL: torch.randn(B, L + 1, 2, 3, generator=g), K.AGENT_INDEX: torch.tensor([0, 1])[:B],
            K.ACTIONS: acts, K.PREV_ACTIONS: torch.cat([torch.zeros(B, 1, A), acts], 1),
            K.FILLED: torch.tensor([[1.0, 1, 1], [1, 1, 0]])[:B, :L]}


def test_continuous_target_is_the_best_perturbed_vae_sample(tiny_cont_path):
    learner = _learner(tiny_cont_path, TinyContinuousEnv().info, num_sampled_actions=5)
    mod = learner.module["leg"].unwrapped()
    assert isinstance(mod, MABCQContinuousAgentTorchRLModule)
    _perturb_targets_cont(mod)
    latents = {}

    def fixed_latent(lead, like):  # deterministic z per call shape, recorded for the recomputation
        z = torch.linspace(-0.5, 0.5, int(np.prod(lead)) * mod.vae_decoder.latent).reshape(*lead, -1)
        latents[tuple(lead)] = z
        return z

    mod.sample_latent = fixed_latent
    batch = _continuous_batch()
    out = mod._forward_train(batch)
    L = 3
    with torch.no_grad():
        x = torch.cat([batch[K.OBS_ALL][torch.arange(2), :, batch[K.AGENT_INDEX]], batch[K.PREV_ACTIONS]], -1)
        xs = x[:, 1:].unsqueeze(2).expand(2, L, 5, x.shape[-1])
        decoded = mod.vae_decoder(xs, latents[(2, L, 5)])
        cand = mod.target_perturb(xs, decoded)
        h = mod.target_q.trunk(x)[:, 1:].unsqueeze(2).expand(2, L, 5, -1)
        values = mod.target_q.value(h, cand).double().numpy()
    best = values.argmax(-1)
    np.testing.assert_allclose(out[K.Q_NEXT_TARGET].double().numpy(), values.max(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[N.NEXT_ACTION].numpy(),
                               np.take_along_axis(cand.numpy(), best[..., None, None], 2)[:, :, 0], rtol=1e-5, atol=1e-6)
    # |ξ| ≤ Φ = 0.05 (actions in [-1, 1]) and the perturbed actions stay in the box.
    assert (cand - decoded).abs().max() <= 0.05 + 1e-6 and cand.abs().max() <= 1.0


def _perturb_targets_cont(mod, scale=0.3):
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for net in (mod.target_q, mod.target_perturb):
            for p in net.parameters():
                p.add_(scale * torch.randn(p.shape, generator=g))


def test_vae_loss_matches_numpy():
    g = torch.Generator().manual_seed(6)
    recon, acts = torch.rand(2, 3, 2, generator=g) * 2 - 1, torch.rand(2, 3, 2, generator=g) * 2 - 1
    mean, std = torch.randn(2, 3, 4, generator=g), torch.rand(2, 3, 4, generator=g) + 0.1
    filled = torch.tensor([[1.0, 1, 0], [1, 0, 0]])
    r, a, mu, sd, f = (t.double().numpy() for t in (recon, acts, mean, std, filled))
    per_step = ((r - a) ** 2).mean(-1) + 0.5 * (-0.5 * (1 + np.log(sd ** 2) - mu ** 2 - sd ** 2)).mean(-1)
    assert bcq_vae_loss(recon, acts, mean, std, filled).item() == pytest.approx((per_step * f).sum() / f.sum(),
                                                                                rel=1e-5)


def test_continuous_td_and_perturbation_terms_match_numpy(tiny_cont_path):
    learner = _learner(tiny_cont_path, TinyContinuousEnv().info)
    torch.manual_seed(7)
    rng = np.random.default_rng(7)
    E, T = 2, 3
    acts = rng.uniform(-0.8, 0.8, (E, T, 2, 2)).astype(np.float32)
    columns = {S.OBS: rng.normal(size=(E, T + 1, 2, 3)).astype(np.float32),
               S.STATE: rng.normal(size=(E, T + 1, 4)).astype(np.float32), S.ACTIONS: acts,
               S.REWARD: rng.normal(size=(E, T)).astype(np.float32), S.TERMINATED: np.zeros((E, T), np.uint8),
               S.FILLED: np.array([[1, 1, 1], [1, 1, 0]], np.uint8)}
    columns[S.TERMINATED][1, 1] = 1
    batch = _joint_batch(columns, ["leg", "leg"])
    fwd = learner.module.forward_train(batch)
    terms = learner.compute_joint_losses(batch=batch, fwd_out=fwd)
    # NumPy: agents are rows b * 2 + i of the module's batch.
    qt = fwd["leg"][K.Q_TAKEN].detach().double().numpy().reshape(E, 2, T).transpose(0, 2, 1)
    qn = fwd["leg"][K.Q_NEXT_TARGET].double().numpy().reshape(E, 2, T).transpose(0, 2, 1)
    qp = fwd["leg"][N.Q_PERTURBED].detach().double().numpy().reshape(E, 2, T).transpose(0, 2, 1)
    mix = learner.module[MIXER_MODULE_ID].unwrapped()
    s = columns[S.STATE].astype(np.float64)
    f = columns[S.FILLED].astype(np.float64)
    nf = np.concatenate([f[:, 1:], np.zeros((E, 1))], 1)
    y = columns[S.REWARD] + GAMMA * (1 - columns[S.TERMINATED]) * nf * np_linear_mix(mix.target_mixer, qn, s[:, 1:])
    td = (((y - np_linear_mix(mix.mixer, qt, s[:, :T])) ** 2) * f).sum() / f.sum()
    assert terms["td"][0].item() == pytest.approx(td, rel=1e-5)
    pert = -(np_linear_mix(mix.mixer, qp, s[:, :T]) * f).sum() / f.sum()
    assert terms["perturbation"][0].item() == pytest.approx(pert, rel=1e-5)
    assert terms["perturbation"][1] == [("leg", "perturb")] and terms["leg/vae"][1] == [("leg", "vae")]


def test_continuous_greedy_action_is_the_best_candidate(tiny_cont_path):
    learner = _learner(tiny_cont_path, TinyContinuousEnv().info, num_sampled_actions=6)
    mod = learner.module["leg"].unwrapped()
    z = torch.linspace(-0.5, 0.5, 2 * 6 * mod.vae_decoder.latent).reshape(2, 6, -1)
    mod.sample_latent = lambda lead, like: z
    state = {k: torch.stack([v] * 2) for k, v in mod.get_initial_state().items()}
    obs = torch.randn(2, 1, 3)
    with torch.no_grad():
        out = mod._forward_inference({Columns.OBS: {OBS_KEY: obs}, Columns.STATE_IN: state})
        x = torch.cat([obs[:, 0], torch.zeros(2, 2)], -1)
        h = mod.q.step(x, state["h"])
        xs = x.unsqueeze(1).expand(2, 6, -1)
        cand = mod.perturb(xs, mod.vae_decoder(xs, z))
        values = mod.q.value(h.unsqueeze(1).expand(2, 6, -1), cand).numpy()
    np.testing.assert_allclose(out[Columns.ACTIONS][:, 0].numpy(), cand.numpy()[[0, 1], values.argmax(-1)], rtol=1e-5, atol=1e-6)


# -- config, registration, tuned examples --------------------------------------------------------------

def test_defaults_are_table_11():
    cfg = MABCQConfig()
    assert (cfg.zeta, cfg.lr, cfg.behaviour_lr, cfg.gamma, cfg.agent_updates, cfg.target_update_interval,
            cfg.mixer_hidden, cfg.rnn_hidden, cfg.batch_size_episodes, cfg.optimizer, cfg.grad_clip) == \
        (0.3, 5e-4, 5e-4, 0.99, 15000, 100, 32, 64, 32, "rmsprop", 10.0)
    assert (cfg.num_sampled_actions, cfg.perturbation_scale, cfg.double_q) == (10, 0.05, True)  # BCQ


@pytest.mark.parametrize("key, value", [("zeta", 1.5), ("zeta", -0.1), ("lr", 0.0), ("behaviour_lr", -1.0),
                                        ("agent_updates", -1), ("behaviour_pretrain_updates", 1.5),
                                        ("target_update_interval", 0), ("target_update_tau", 0.0),
                                        ("mixer_hidden", 0), ("num_sampled_actions", 0),
                                        ("perturbation_scale", 2.0), ("vae_latent_dim", 0), ("double_q", "yes"),
                                        ("optimizer", "sgd")])
def test_config_validation_names_the_parameter(key, value):
    cfg = MABCQConfig().environment(TINY_ENV_ID).training(**{key: value})
    with pytest.raises(ValueError, match=f"MABCQConfig: {key}="):
        cfg.validate()


def test_every_tuned_example_validates():
    from rllib_sit.cli.rllib_cmd import load_experiments

    files = sorted(glob.glob(os.path.join(TUNED, "mabcq_*.yaml")))
    maps = {os.path.basename(f)[len("sit_"):] for f in glob.glob(os.path.join(TUNED, "sit_*.yaml"))
            if "_quick" not in f and "_sweep" not in f}
    assert {os.path.basename(f)[len("mabcq_"):] for f in files} == maps and len(maps) == 11
    for f in files:
        for exp in load_experiments(f).values():
            assert exp["run"] == "MABCQ"
            MABCQConfig().update_from_dict(dict(exp["config"], env=exp["env"])).validate()


# -- build, train, evaluate, checkpoint ------------------------------------------------------------

def _params(algo, module_id, attr):
    net = getattr(algo.learner_group._learner.module[module_id].unwrapped(), attr)
    return [p.detach().clone() for p in net.parameters()]


def test_train_pretrain_then_bcq_and_evaluate_discrete(dataset):
    algo = tiny_mabcq(dataset, behaviour_pretrain_updates=2).evaluation(evaluation_interval=3).build_algo()
    try:
        q0, mu0 = _params(algo, "tank", "actor"), _params(algo, "tank", "behaviour")
        r1 = algo.train()  # behaviour pre-training: μ moves, Q does not, no TD term
        assert r1["phases"]["behaviour_updates_done"] == 2 and r1["phases"]["current"] == "bcq"
        assert all(torch.equal(a, b) for a, b in zip(q0, _params(algo, "tank", "actor")))
        assert not all(torch.equal(a, b) for a, b in zip(mu0, _params(algo, "tank", "behaviour")))
        assert N.TD_LOSS not in r1["learners"].get(MIXER_MODULE_ID, {})
        algo.train()
        r3 = algo.train()
        assert r3["phases"]["current"] == "done" and r3["phases"]["bcq_updates_done"] == 4
        assert np.isfinite(r3["learners"][MIXER_MODULE_ID][N.TD_LOSS])
        for t in ("scout", "tank"):
            m = r3["learners"][t]
            assert np.isfinite(m[N.BEHAVIOUR_LOSS]) and 0 < m[N.FILTER_KEPT] <= 1
        ev = r3["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"]) and "win_rate" in ev
    finally:
        algo.stop()


def test_train_and_evaluate_continuous(ray_session, tmp_path):
    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = tiny_mabcq(path, env=TINY_CONT_ENV_ID, batch_size_episodes=4, num_sampled_actions=4).build_algo()
    try:
        algo.train()
        r = algo.train()
        assert r["phases"]["bcq_updates_done"] == 4
        for key in (N.TD_LOSS, N.PERTURBATION_LOSS):
            assert np.isfinite(r["learners"][MIXER_MODULE_ID][key])
        assert np.isfinite(r["learners"]["leg"][N.VAE_LOSS])
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


def test_checkpoint_round_trip(dataset, tmp_path):
    algo = tiny_mabcq(dataset).build_algo()
    try:
        algo.train()  # 2 of 4 updates
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        before = {a: _params(algo, "tank", a) for a in ("actor", "behaviour", "target_actor")}
        mixer_before = _params(algo, MIXER_MODULE_ID, "target_mixer")
        next_batch = algo.sampler.sample_by_module(8, MIXER_MODULE_ID)
    finally:
        algo.stop()
    restored = MABCQ.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "bcq" and restored.schedule.done["bcq"] == 2
        for a, ps in before.items():
            for p, q in zip(_params(restored, "tank", a), ps):
                torch.testing.assert_close(p, q)
        for p, q in zip(_params(restored, MIXER_MODULE_ID, "target_mixer"), mixer_before):
            torch.testing.assert_close(p, q)
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        again = restored.sampler.sample_by_module(8, MIXER_MODULE_ID)
        np.testing.assert_array_equal(again[MIXER_MODULE_ID][K.EPISODE_INDEX], next_batch[MIXER_MODULE_ID][K.EPISODE_INDEX])
        r = restored.train()
        assert r["phases"]["bcq_updates_done"] == 4 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


# -- learning: the filter decides the greedy policy ------------------------------------------------

def _rare_action_1_dataset(path, n_episodes=200, seed=0, p1=0.05):
    """``tiny:coop`` episodes where the scouts take the rewarding action 1 only ``p1`` of the time
    (0 otherwise but for ``p1`` of action 2) and the tank 90%: for the scout type, action 1's
    behaviour ratio is ~p1 / (1 − 2 p1) ≪ ζ = 0.3."""
    from rllib_sit.data.episode import rollout_episode
    from rllib_sit.data.io import write_dataset

    env = TinyCoopEnv()
    rng = np.random.default_rng(seed)

    def policy(e, obs):
        scouts = rng.choice(3, size=2, p=[1 - 2 * p1, p1, p1])
        return np.array([*scouts, 1 if rng.random() < 0.9 else 0], np.int64)

    rows = (rollout_episode(env, policy, seed=k, episode_id=k) for k in range(n_episodes))
    return write_dataset(rows, path, S.DatasetMeta(env=env.info), {"quality": "rare-1"})


def _greedy_return_per_step(algo):
    ev = algo.evaluate()["env_runners"]
    return ev["episode_return_mean"] / ev["episode_len_mean"]


def test_filter_keeps_the_greedy_policy_on_familiar_actions(ray_session, tmp_path):
    """Scout action 1 earns +1 but is rare in the data (5%). Without the filter (ζ = 0) Q-learning
    finds it (~1.5 per step: a0 and the tank take 1); with ζ = 0.3 and a trained behaviour model
    the greedy scouts never take it (only the tank does: exactly 0.5 per step). The same runs,
    seeds and data but ζ."""
    path = _rare_action_1_dataset(str(tmp_path / "rare"))
    got, kept = {}, {}
    for zeta in (0.0, 0.3):
        algo = tiny_mabcq(path, zeta=zeta, behaviour_pretrain_updates=100, agent_updates=100,
                          agent_updates_per_iteration=100, behaviour_lr=5e-3, lr=2e-3
                          ).evaluation(evaluation_duration=4).build_algo()
        try:
            while not algo.schedule.finished:  # 100 behaviour-only updates, then 100 BCQ updates
                r = algo.train()
            kept[zeta] = r["learners"]["scout"][N.FILTER_KEPT]
            got[zeta] = _greedy_return_per_step(algo)
        finally:
            algo.stop()
    assert kept[0.0] == 1.0 and kept[0.3] < 0.5, kept  # ζ = 0.3 keeps ~1 of the scouts' 3 actions
    assert got[0.0] > 1.3 and got[0.3] == pytest.approx(0.5), got
