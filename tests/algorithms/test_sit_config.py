"""SITConfig: paper defaults (Tables 10–11) and validation messages naming the bad parameter."""

import pytest

from rllib_sit.algorithms.sit import SITConfig


def test_defaults_are_the_papers():
    c = SITConfig()
    assert (c.alpha, c.beta, c.eta, c.ensemble_size) == (0.2, 0.1, 1.0, 5)
    assert tuple(c.priority_range) == (0.0, 20.0)
    assert (c.ardnem_lr, c.actor_lr, c.critic_lr) == (1e-4, 5e-4, 1e-4)
    assert (c.batch_size_episodes, c.target_update_interval, c.ardnem_updates, c.agent_updates) == (32, 100, 20000, 15000)
    assert (c.reward_hidden, c.attention_hidden, c.critic_hidden, c.rnn_hidden) == (64, 64, 32, 64)
    assert (c.grad_clip, c.gamma, c.optimizer) == (10.0, 0.99, "rmsprop")
    assert c.is_offline is False and c.is_online is False


@pytest.mark.parametrize("kwargs, name", [
    (dict(alpha=0.0), "alpha"), (dict(beta=-1.0), "beta"), (dict(eta=0), "eta"),
    (dict(ensemble_size=0), "ensemble_size"), (dict(priority_range=(5, 5)), "priority_range"),
    (dict(target_update_interval=0), "target_update_interval"), (dict(agent_updates=-1), "agent_updates"),
    (dict(decomposition="qmix"), "decomposition"), (dict(optimizer="adam"), "optimizer"),
    (dict(use_gat="yes"), "use_gat"), (dict(uncertainty_floor=0.0), "uncertainty_floor"),
    (dict(stage2_backend="spark"), "stage2_backend"), (dict(batch_size_episodes=0), "batch_size_episodes"),
])
def test_validate_names_parameter_and_value(kwargs, name):
    c = SITConfig().training(**kwargs)
    with pytest.raises(ValueError, match=rf"{name}=.*{'|'.join(repr(v) for v in kwargs.values())}".replace("(", r"\(").replace(")", r"\)")):
        c.validate()


def test_ablation_switches_derive_the_model():
    assert SITConfig().training(ensemble=False).effective_ensemble_size == 1
    assert SITConfig().training(use_attention=False).weight_mode == "none"
    assert SITConfig().training(decomposition="monotonic").weight_mode == "monotonic"
