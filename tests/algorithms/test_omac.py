"""OMAC: Eq. 2/5/6/8 against NumPy recomputations, coupled credit assignment (Eq. 3) positivity and
coupling, the two phases, evaluation and checkpoints on the tiny env (Ray once per module)."""

import numpy as np
import pytest
import torch

from tiny_fixtures import TINY_ENV_ID

from rllib_sit.algorithms.omac import OMAC, OMACConfig
from rllib_sit.algorithms.omac.torch.omac_torch_learner import (advantage_weighted_actor_loss, coupled_factorization,
                                                                coupled_td_loss, expectile_value_loss)

RNG = np.random.default_rng(0)


def _t(x):
    return torch.as_tensor(np.asarray(x, np.float32))


def test_expectile_value_loss_eq5():
    q, v = RNG.normal(size=(3, 5)), RNG.normal(size=(3, 5))
    filled = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.float32)
    u = q - v
    expected = (np.abs(0.7 - (u < 0)) * u ** 2 * filled).sum() / filled.sum()
    got = expectile_value_loss(_t(q), _t(v), _t(filled), 0.7)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    # a padded step changes nothing, whatever its values
    q2 = q.copy()
    q2[0, 4] = 1e6
    assert expectile_value_loss(_t(q2), _t(v), _t(filled), 0.7).item() == pytest.approx(got.item(), rel=1e-6)
    # τ > 0.5 pushes V up: the loss of an under-estimate exceeds that of an equal over-estimate
    assert expectile_value_loss(_t([[1.0]]), _t([[0.0]]), _t([[1.0]]), 0.7) > \
        expectile_value_loss(_t([[0.0]]), _t([[1.0]]), _t([[1.0]]), 0.7)


def test_coupled_factorization_and_td_eq2_eq6():
    B, L, N = 2, 4, 3
    v, q = RNG.normal(size=(B, L, N)), RNG.normal(size=(B, L, N))
    w_v, w_q, vs = np.abs(RNG.normal(size=(B, L, N))), np.abs(RNG.normal(size=(B, L, N))), RNG.normal(size=(B, L))
    v_tot, q_tot = coupled_factorization(_t(v), _t(q), _t(w_v), _t(w_q), _t(vs))
    ev_tot = (w_v * v).sum(-1) + vs
    np.testing.assert_allclose(v_tot.numpy(), ev_tot, rtol=1e-5)
    np.testing.assert_allclose(q_tot.numpy(), ev_tot + (w_q * (q - v)).sum(-1), rtol=1e-5)
    r, vn = RNG.normal(size=(B, L)), RNG.normal(size=(B, L))
    term = np.array([[0, 0, 1, 0], [0, 0, 0, 0]], np.float32)
    filled = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.float32)
    nf = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    y = r + 0.9 * (1 - term) * nf * vn
    expected = (((y - q_tot.numpy()) ** 2) * filled).sum() / filled.sum()
    got = coupled_td_loss(q_tot, _t(vn), _t(r), _t(term), _t(nf), _t(filled), 0.9)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)


def test_property1_q_tot_never_exceeds_v_tot_when_v_is_the_max():
    q_all = RNG.normal(size=(5, 3, 4))  # [n, N, A]
    v = q_all.max(-1)
    a = RNG.integers(0, 4, size=(5, 3))
    q = np.take_along_axis(q_all, a[..., None], -1)[..., 0]
    w_v, w_q, vs = np.abs(RNG.normal(size=(5, 3))), np.abs(RNG.normal(size=(5, 3))), RNG.normal(size=5)
    v_tot, q_tot = coupled_factorization(_t(v), _t(q), _t(w_v), _t(w_q), _t(vs))
    assert (q_tot <= v_tot + 1e-6).all()


def test_advantage_weighted_actor_loss_eq8_with_clip():
    logp, q, v = RNG.normal(size=(2, 3)) - 2, RNG.normal(size=(2, 3)) * 3, RNG.normal(size=(2, 3))
    filled = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
    w = np.minimum(np.exp(2.0 * (q - v)), 5.0)
    expected = -(w * logp * filled).sum() / filled.sum()
    got = advantage_weighted_actor_loss(_t(logp), _t(q), _t(v), _t(filled), beta=2.0, exp_max=5.0)
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    lp, qt = _t(logp).requires_grad_(True), _t(q).requires_grad_(True)
    advantage_weighted_actor_loss(lp, qt, _t(v), _t(filled), 2.0, 5.0).backward()
    assert lp.grad is not None and qt.grad is None  # only π moves: Q_i and V_i are fixed (Eq. 8)


def _config(dataset, **kw):
    train = dict(value_updates=4, policy_updates=4, value_updates_per_iteration=2, policy_updates_per_iteration=2,
                 batch_size_episodes=8, hidden=16, cca_hidden=8)
    train.update(kw)
    return (OMACConfig().environment(TINY_ENV_ID).offline_data(input_=dataset).training(**train)
            .evaluation(evaluation_duration=2).debugging(seed=0))


def test_cca_weights_are_nonnegative_and_coupled(dataset):
    from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
    from rllib_sit.data.episode_store import dataset_env_info

    spec = _config(dataset).extra_module_specs(dataset_env_info(dataset))[MIXER_MODULE_ID]
    mixer = spec.build()
    obs, acts = torch.randn(6, 3, 4), torch.randint(0, 3, (6, 3))
    w_v, w_q, _ = mixer.weights(obs, acts)
    assert (w_v >= 0).all() and (w_q >= 0).all() and w_v.shape == w_q.shape == (6, 3)
    # coupling (Eq. 3): training w^q moves the shared encoder of w^v
    w_q.sum().backward()
    assert mixer.f_v1[0].weight.grad is not None and mixer.f_v1[0].weight.grad.abs().sum() > 0


def test_two_phases_train_evaluate_and_restore(dataset, tmp_path):
    algo = _config(dataset).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"]["current"] == "value" and np.isfinite(r1["learners"]["__mixer__"]["q_loss"])
        mixer_before = {k: v.clone() for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items()}
        algo.train()  # value phase done
        r3 = algo.train()  # policy phase: the mixer and Q_i stay fixed
        assert r3["phases"]["current"] == "policy" and np.isfinite(r3["learners"]["tank"]["actor_loss"])
        mixer_mid = {k: v.clone() for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items()}
        assert any(not torch.equal(mixer_before[k], v) for k, v in mixer_mid.items())
        algo.train()
        for k, v in algo.learner_group._learner.module["__mixer__"].state_dict().items():
            torch.testing.assert_close(v, mixer_mid[k])
        ev = algo.evaluate()["env_runners"]
        assert ev["num_episodes"] == 2 and np.isfinite(ev["episode_return_mean"])
        ckpt = algo.save_to_path(str(tmp_path / "omac"))
    finally:
        algo.stop()
    restored = OMAC.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "done" and restored.schedule.done == {"value": 4, "policy": 4}
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev["episode_return_mean"]
    finally:
        restored.stop()


@pytest.mark.parametrize("kwargs, name", [(dict(expectile=1.0), "expectile"), (dict(beta=0), "beta"),
                                          (dict(target_update_tau=2.0), "target_update_tau"),
                                          (dict(value_updates=-1), "value_updates")])
def test_validation_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OMACConfig().training(**kwargs).validate()


