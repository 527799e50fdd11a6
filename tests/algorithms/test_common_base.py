"""The shared offline base: config (pure validate, derived mapping/callbacks, round trip), the phase
schedule, and the torch learner (one loss per optimizer, joint losses, absent modules, target
networks), each checked against values computed another way."""

import copy

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

from tiny_fixtures import TINY_ENV_ID, register_tiny_env

from rllib_sit.algorithms.common import AgentModuleMapping, Phase, PhaseSchedule, TeamMetricsCallback
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.sit import SITConfig
from rllib_sit.models.recurrent_agent import TargetNetworksMixin

# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------


def test_validate_checks_without_rewriting_the_users_values():
    cfg = SITConfig().environment(TINY_ENV_ID).training(ensemble=False, ensemble_size=5, priority_scale="minmax")
    before = copy.deepcopy(cfg.to_dict())
    cfg.validate()
    after = cfg.to_dict()
    rllib_own = {"simple_optimizer"}  # RLlib's AlgorithmConfig.validate() sets this one itself
    assert {k: v for k, v in after.items() if k not in rllib_own} == \
        {k: v for k, v in before.items() if k not in rllib_own}
    assert cfg.ensemble_size == 5 and cfg.effective_ensemble_size == 1  # derived, not rewritten


@pytest.mark.parametrize("kwargs, name", [
    (dict(module_mapping="per_team"), "module_mapping"), (dict(optimizer="sgd"), "optimizer"),
    (dict(dataset={"quality": "low", "episodez": 3}), "episodez"), (dict(dataset={"episodes": 0}), "episodes"),
    (dict(dataset="low"), "dataset"), (dict(validate_dataset="some"), "validate_dataset"),
    (dict(num_torch_threads=0), "num_torch_threads"), (dict(batch_size_episodes=0), "batch_size_episodes"),
])
def test_base_settings_are_validated_by_name(kwargs, name):
    cfg = SITConfig().training(**kwargs)
    with pytest.raises(ValueError, match=name):
        cfg.validate()


def test_module_mapping_by_type_or_by_agent_id():
    register_tiny_env()
    by_type = SITConfig().environment(TINY_ENV_ID)
    assert isinstance(by_type.policy_mapping_fn, AgentModuleMapping)
    assert [by_type.policy_mapping_fn(a) for a in ("a0", "a1", "b0")] == ["scout", "scout", "tank"]
    by_id = SITConfig().environment(TINY_ENV_ID).training(module_mapping="agent_id")
    assert [by_id.policy_mapping_fn(a) for a in ("a0", "a1", "b0")] == ["a0", "a1", "b0"]
    with pytest.raises(ValueError, match="unknown agent id 'zz'"):
        by_id.policy_mapping_fn("zz")

    def mine(agent_id, episode=None, **kw):
        return "shared"

    user = SITConfig().environment(TINY_ENV_ID).multi_agent(policy_mapping_fn=mine)
    assert user.policy_mapping_fn is mine  # a user's mapping wins
    # RLlib's default (also after a to_dict/from_dict round trip) means "derive it"
    rt = SITConfig.from_dict(SITConfig().environment(TINY_ENV_ID).to_dict())
    assert isinstance(rt.policy_mapping_fn, AgentModuleMapping)
    assert SITConfig().environment(TINY_ENV_ID).multi_agent(
        policy_mapping_fn=AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN).policy_mapping_fn == by_type.policy_mapping_fn


def test_team_metrics_callback_runs_beside_the_users():
    class Mine(RLlibCallback):
        pass

    assert SITConfig().callbacks_class is TeamMetricsCallback
    assert SITConfig().callbacks(Mine).callbacks_class == [TeamMetricsCallback, Mine]
    assert SITConfig().callbacks([TeamMetricsCallback, Mine]).callbacks_class == [TeamMetricsCallback, Mine]
    assert SITConfig.from_dict(SITConfig().callbacks(Mine).to_dict()).callbacks_class == [TeamMetricsCallback, Mine]
    # a user's evaluation_config is merged with the greedy default, not replacing it
    cfg = SITConfig().evaluation(evaluation_config={"env_config": {"x": 1}})
    assert cfg.evaluation_config == {"explore": False, "env_config": {"x": 1}}


# ------------------------------------------------------------------------------------------------
# phases
# ------------------------------------------------------------------------------------------------


def test_phase_schedule_chunks_one_shots_and_resume():
    log = []

    def upd(name):
        def run(n):
            log.append((name, n))
            return {name: n}
        return run

    def make():
        return PhaseSchedule([Phase("a", upd("a"), updates=5, per_iteration=2),
                              Phase("b", lambda n: log.append(("b", n)), one_shot=True),
                              Phase("c", upd("c"), updates=3, per_iteration=2),
                              Phase("d", upd("d"), updates=0)])

    s = make()
    assert s.run_iteration() == {"a": 2} and s.current_name == "a"
    s.run_iteration()
    state = s.get_state()
    s.run_iteration()  # a: last 1 update, then the one-shot b in the same iteration
    assert log[-2:] == [("a", 1), ("b", 1)] and s.current_name == "c"
    s.run_iteration()
    s.run_iteration()
    assert s.finished and s.current_name == "done" and s.done == {"a": 5, "b": 1, "c": 3, "d": 0}
    assert s.run_iteration() is None
    # resumed from the mid-"a" state: the same remaining work
    log.clear()
    r = make()
    r.set_state(state)
    while not r.finished:
        r.run_iteration()
    assert log == [("a", 1), ("b", 1), ("c", 2), ("c", 1)]
    with pytest.raises(ValueError, match="unique"):
        PhaseSchedule([Phase("x", upd("x")), Phase("x", upd("x"))])


# ------------------------------------------------------------------------------------------------
# torch learner: toy modules and configs
# ------------------------------------------------------------------------------------------------


class ActorCritic(TargetNetworksMixin, TorchRLModule):
    """actor: a = tanh(W s); critic: Q(s, a) = v·[s, a]; the actor's loss goes *through* the critic."""

    target_networks = ("critic",)

    def setup(self):
        self.actor = torch.nn.Linear(3, 1)
        self.critic = torch.nn.Linear(4, 1)

    def _forward_train(self, batch, **kw):
        s, a = batch["s"], batch["a"]
        pi = torch.tanh(self.actor(s))
        return {"q_data": self.critic(torch.cat([s, a], -1)).squeeze(-1),
                "q_pi": self.critic(torch.cat([s, pi], -1)).squeeze(-1)}


class QNet(TorchRLModule):
    def setup(self):
        self.q = torch.nn.Linear(3, 1)

    def _forward_train(self, batch, **kw):
        return {"q": self.q(batch["s"]).squeeze(-1)}


class Mixer(TorchRLModule):
    def setup(self):
        self.w = torch.nn.Linear(2, 2)

    def _forward_train(self, batch, **kw):
        return {"w": torch.abs(self.w(batch["s2"]))}


class ToyConfig(OfflineMARLConfig):

    def __init__(self):
        super().__init__()
        self.target_update_interval = 2
        self.target_update_tau = None
        self.optimizer = "adam"
        self.toy_spec = None

    def get_multi_rl_module_spec(self, **kwargs):
        return self.toy_spec  # no dataset: the test hands the modules over


class PerOptimizerLearner(OfflineMARLTorchLearner):
    def optimizer_groups(self, module_id, module, config):
        return {"actor": (module.actor.parameters(), 1e-2), "critic": (module.critic.parameters(), 1e-2)}

    def compute_losses_for_module(self, *, module_id, config, batch, fwd_out):
        return {"critic": ((fwd_out["q_data"] - batch["r"]) ** 2).mean(), "actor": -fwd_out["q_pi"].mean()}


class JointLearner(OfflineMARLTorchLearner):
    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        return {"main": (module.parameters(), 1e-2)}

    def compute_joint_losses(self, *, batch, fwd_out):
        w = fwd_out["mixer"]["w"]
        q_tot = w[:, 0] * fwd_out["a"]["q"] + w[:, 1] * fwd_out["b"]["q"]
        loss = ((q_tot - batch["mixer"]["y"]) ** 2).mean()
        return {"td": (loss, [("a", "main"), ("b", "main"), ("mixer", "main")])}


def _build(learner_cls, specs, **cfg):
    import gymnasium as gym

    config = ToyConfig().training(**cfg)
    space = gym.spaces.Box(-1, 1, (1,))
    spec = MultiRLModuleSpec(rl_module_specs={m: RLModuleSpec(module_class=c, observation_space=space,
                                                              action_space=space) for m, c in specs.items()})
    config.toy_spec = spec
    torch.manual_seed(0)
    learner = learner_cls(config=config, module_spec=spec)
    learner.build()
    return learner


def _tensors(batch):
    return {m: {k: torch.as_tensor(v) for k, v in b.items()} for m, b in batch.items()}


def _grads(learner, batch):
    """The learner's own gradients for ``batch`` as ``{(module, param name): grad}``."""
    tb = _tensors(batch)
    fwd = learner.module.forward_train(tb)
    grads = learner.compute_gradients(learner.compute_losses(fwd_out=fwd, batch=tb))
    out = {}
    for mid in learner.module.keys():
        for name, p in learner.module[mid].named_parameters():
            pid = learner.get_param_ref(p)
            if pid in grads:
                out[(mid, name)] = grads[pid]
    return out


def test_each_loss_moves_only_its_own_optimizer():
    """The actor loss -Q(s, π(s)) goes through the critic, yet the critic's gradient is the critic
    loss's alone, and the actor's is the actor loss's alone (recomputed on a copy with autograd)."""
    learner = _build(PerOptimizerLearner, {"ac": ActorCritic})
    rng = np.random.default_rng(0)
    batch = {"ac": {"s": rng.normal(size=(8, 3)).astype(np.float32), "a": rng.normal(size=(8, 1)).astype(np.float32),
                    "r": rng.normal(size=8).astype(np.float32)}}
    got = _grads(learner, batch)
    ref = copy.deepcopy(learner.module["ac"])
    b = _tensors(batch)["ac"]
    s, a, r = b["s"], b["a"], b["r"]
    critic_loss = ((ref.critic(torch.cat([s, a], -1)).squeeze(-1) - r) ** 2).mean()
    actor_loss = -ref.critic(torch.cat([s, torch.tanh(ref.actor(s))], -1)).mean()
    crit_g = torch.autograd.grad(critic_loss, list(ref.critic.parameters()), retain_graph=True)
    act_g = torch.autograd.grad(actor_loss, list(ref.actor.parameters()), retain_graph=True)
    for (name, _), g in zip(ref.critic.named_parameters(), crit_g):
        torch.testing.assert_close(got[("ac", f"critic.{name}")], g)
    for (name, _), g in zip(ref.actor.named_parameters(), act_g):
        torch.testing.assert_close(got[("ac", f"actor.{name}")], g)
    # and what a single summed backward would give differs (the switch has an effect)
    both = torch.autograd.grad(critic_loss + actor_loss, list(ref.critic.parameters()))
    assert not torch.allclose(both[0], crit_g[0])


def test_joint_loss_reaches_every_module_it_names():
    learner = _build(JointLearner, {"a": QNet, "b": QNet, "mixer": Mixer})
    rng = np.random.default_rng(1)
    s = rng.normal(size=(6, 3)).astype(np.float32)
    batch = {"a": {"s": s}, "b": {"s": s[::-1].copy()},
             "mixer": {"s2": rng.normal(size=(6, 2)).astype(np.float32), "y": rng.normal(size=6).astype(np.float32)}}
    got = _grads(learner, batch)
    qa, qb, mx = (copy.deepcopy(learner.module[m]) for m in ("a", "b", "mixer"))
    tb = _tensors(batch)
    w = torch.abs(mx.w(tb["mixer"]["s2"]))
    q_tot = w[:, 0] * qa.q(tb["a"]["s"]).squeeze(-1) + w[:, 1] * qb.q(tb["b"]["s"]).squeeze(-1)
    loss = ((q_tot - tb["mixer"]["y"]) ** 2).mean()
    params = [("a", "q." + n, p) for n, p in qa.q.named_parameters()] + \
             [("b", "q." + n, p) for n, p in qb.q.named_parameters()] + \
             [("mixer", "w." + n, p) for n, p in mx.w.named_parameters()]
    expected = torch.autograd.grad(loss, [p for _, _, p in params])
    for (m, n, _), g in zip(params, expected):
        torch.testing.assert_close(got[(m, n)], g)


def test_absent_modules_are_not_updated_and_targets_follow_the_schedule():
    learner = _build(PerOptimizerLearner, {"x": ActorCritic, "y": ActorCritic}, target_update_interval=2)
    rng = np.random.default_rng(2)

    def batch():
        return MultiAgentBatch({"x": SampleBatch({"s": rng.normal(size=(8, 3)).astype(np.float32),
                                                  "a": rng.normal(size=(8, 1)).astype(np.float32),
                                                  "r": rng.normal(size=8).astype(np.float32)})}, env_steps=8)

    x, y = learner.module["x"], learner.module["y"]
    y0 = {k: v.clone() for k, v in y.state_dict().items()}
    t0 = {k: v.clone() for k, v in x.target_critic.state_dict().items()}
    learner.update(batch=batch())  # update 1 of x: target frozen
    for k, v in x.target_critic.state_dict().items():
        torch.testing.assert_close(v, t0[k])
    assert any(not torch.equal(v, t0[k]) for k, v in x.critic.state_dict().items())
    learner.update(batch=batch())  # update 2: hard copy
    for k, v in x.target_critic.state_dict().items():
        torch.testing.assert_close(v, x.critic.state_dict()[k])
    for k, v in y.state_dict().items():  # y never in a batch: untouched, no updates counted
        torch.testing.assert_close(v, y0[k])
    assert learner.module_updates("x") == 2 and learner.module_updates("y") == 0
    assert all(not p.requires_grad for p in x.target_critic.parameters())
    assert learner.get_state()["module_updates"] == {"x": 2}


def test_polyak_target_update():
    learner = _build(PerOptimizerLearner, {"x": ActorCritic}, target_update_tau=0.1)
    x = learner.module["x"]
    t0 = {k: v.clone() for k, v in x.target_critic.state_dict().items()}
    rng = np.random.default_rng(3)
    learner.update(batch=MultiAgentBatch({"x": SampleBatch({
        "s": rng.normal(size=(8, 3)).astype(np.float32), "a": rng.normal(size=(8, 1)).astype(np.float32),
        "r": rng.normal(size=8).astype(np.float32)})}, env_steps=8))
    for k, v in x.target_critic.state_dict().items():
        torch.testing.assert_close(v, 0.1 * x.critic.state_dict()[k] + 0.9 * t0[k])


def test_total_loss_booked_per_module_or_under_all_modules():
    """RLlib logs a ``total_loss`` per key of compute_losses' dict: a term that trains one module is
    booked under it, a joint term (several modules) under ALL_MODULES, whatever the modules are called."""
    from ray.rllib.utils.metrics import ALL_MODULES

    joint = _build(JointLearner, {"a": QNet, "b": QNet, "mixer": Mixer})
    rng = np.random.default_rng(1)
    s = rng.normal(size=(6, 3)).astype(np.float32)
    tb = _tensors({"a": {"s": s}, "b": {"s": s[::-1].copy()},
                   "mixer": {"s2": rng.normal(size=(6, 2)).astype(np.float32), "y": rng.normal(size=6).astype(np.float32)}})
    per_key = joint.compute_losses(fwd_out=joint.module.forward_train(tb), batch=tb)
    assert set(per_key) == {ALL_MODULES}
    torch.testing.assert_close(per_key[ALL_MODULES], joint._loss_terms["td"][0])
    single = _build(PerOptimizerLearner, {"ac": ActorCritic})
    tb = _tensors({"ac": {"s": rng.normal(size=(8, 3)).astype(np.float32), "a": rng.normal(size=(8, 1)).astype(np.float32),
                          "r": rng.normal(size=8).astype(np.float32)}})
    per_key = single.compute_losses(fwd_out=single.module.forward_train(tb), batch=tb)
    assert set(per_key) == {"ac"}
    terms = single._loss_terms
    torch.testing.assert_close(per_key["ac"], terms["ac/critic"][0] + terms["ac/actor"][0])
