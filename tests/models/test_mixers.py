"""Mixers: values against NumPy recomputations, monotonicity, the RLModule's target copy."""

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.models.mixers import MixerTorchRLModule, QMixer, StateLinearMixer


def _np(layer):
    return layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()


def test_state_linear_mixer_is_sum_of_nonnegative_weights_times_q_plus_bias():
    torch.manual_seed(0)
    m = StateLinearMixer(5, 3, hidden=8)
    q, s = torch.randn(4, 6, 3), torch.randn(4, 6, 5)
    (w1, b1), (w2, b2) = _np(m.hyper.hyper_w[0]), _np(m.hyper.hyper_w[2])
    (v1, c1), (v2, c2) = _np(m.hyper.hyper_b[0]), _np(m.hyper.hyper_b[2])
    sn = s.double().numpy()
    w = np.abs(np.maximum(sn @ w1.T + b1, 0) @ w2.T + b2)
    b = (np.maximum(sn @ v1.T + c1, 0) @ v2.T + c2)[..., 0]
    np.testing.assert_allclose(m(q, s).detach().numpy(), (w * q.double().numpy()).sum(-1) + b, rtol=1e-5, atol=1e-6)
    assert (m.weights(s)[0] >= 0).all()


def test_qmixer_matches_numpy_and_is_monotonic():
    torch.manual_seed(1)
    m = QMixer(5, 3, embed=4, hyper_hidden=8)
    q, s = torch.randn(7, 3), torch.randn(7, 5)
    sn, qn = s.double().numpy(), q.double().numpy()
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    (a1, a2), (b1, b2) = _np(m.hyper_w1[0]), _np(m.hyper_w1[2])
    W1 = np.abs(relu(sn @ a1.T + a2) @ b1.T + b2).reshape(7, 3, 4)
    hb1 = sn @ _np(m.hyper_b1)[0].T + _np(m.hyper_b1)[1]
    x = np.einsum("na,nae->ne", qn, W1) + hb1
    hidden = np.where(x > 0, x, np.expm1(x))
    (c1, c2), (d1, d2) = _np(m.hyper_w2[0]), _np(m.hyper_w2[2])
    w2 = np.abs(relu(sn @ c1.T + c2) @ d1.T + d2)
    (e1, e2), (f1, f2) = _np(m.v[0]), _np(m.v[2])
    v = (relu(sn @ e1.T + e2) @ f1.T + f2)[:, 0]
    np.testing.assert_allclose(m(q, s).detach().numpy(), (hidden * w2).sum(-1) + v, rtol=1e-5, atol=1e-6)
    q.requires_grad_(True)
    grad = torch.autograd.grad(m(q, s).sum(), q)[0]
    assert (grad >= 0).all()  # ∂Q_tot/∂Q_i ≥ 0


def test_mixer_module_target_is_a_frozen_copy():
    space = gym.spaces.Box(-1, 1, (1,))
    mod = RLModuleSpec(module_class=MixerTorchRLModule, observation_space=space, action_space=space,
                       model_config={"mixer": "qmix", "state_dim": 5, "n_agents": 3}).build()
    mod.make_target_networks()
    q, s = torch.randn(2, 3), torch.randn(2, 5)
    torch.testing.assert_close(mod.mix_target(q, s), mod.mix(q, s))
    assert all(not p.requires_grad for p in mod.target_mixer.parameters())
