"""FacMAC (Peng et al. 2021) trained naively on offline data: the SIT paper's "online algorithm
without offline correction" baseline for continuous actions (Table 1, MAMuJoCo column FacMAC), as
an offline RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Per agent type: a deterministic recurrent actor μ_i(τ_i) (tanh of the base's Gaussian GRU actor's
mean, on τ_i = (o_i^t, a_i^{t-1})) and a critic Q_i(τ_i, a_i); QMIX's monotonic mixer over the
Q_i with the state; the critic learns by TD(0) against the target actors/critics/mixer, the actors
by the centralised policy gradient −Q_tot(s, μ_1(τ_1), .., μ_N(τ_N)) through the mixer. The
target actions μ'(τ') are unconstrained by the data — the extrapolation error the SIT paper's
FacMAC row shows. Batches are whole joint episodes drawn uniformly. One phase, ``actor_critic``:
``agent_updates`` updates, ``agent_updates_per_iteration`` per ``train()``.

Usage::

    config = (FACMACConfig().environment("mamujoco:halfcheetah_2l")
              .training(dataset={"quality": "low", "episodes": 10000, "seed": 0})
              .evaluation(evaluation_interval=5, evaluation_duration=32))
    algo = config.build_algo()
    algo.train()
"""

from __future__ import annotations

import functools
from typing import Dict, List

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common import joint
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.facmac.facmac_learner import ACTOR_LOSS, CRITIC_LOSS, PHASE_ACTOR_CRITIC
from rllib_sit.replay import keys as K

# What the learner reads from an agent module's batch (the joint keys: the mixer TD loss's, joint.JOINT_KEYS).
AGENT_KEYS = (K.OBS_ALL, K.AGENT_INDEX, K.ACTIONS, K.PREV_ACTIONS, K.FILLED)
# ``joint_batch(sampler, batch_size)``: B joint episodes split by module, own observations only.
joint_batch = functools.partial(joint.joint_batch, agent_keys=AGENT_KEYS)


class FACMACConfig(OfflineMARLConfig):
    """Configuration of :class:`FACMAC`. Network sizes, batch, updates and γ: the SIT paper's Table 11
    "Shared" rows (every baseline of the paper shares them); optimisation (Adam, learning rates,
    gradient clip, Polyak targets, action regulariser): FacMAC's MAMuJoCo config
    (oxwhirl/facmac ``src/config/algs/facmac_mamujoco.yaml``) and learner.
    """

    action_spaces = ("continuous",)
    action_space_hint = "FACMAC is the continuous baseline; run: QMIX is the discrete one"
    actor_lr = Setting(1e-3, 'facmac_mamujoco.yaml: lr 0.001 (Table 11 Shared: 5e-4)')
    critic_lr = Setting(1e-3, 'facmac_mamujoco.yaml: critic_lr 0.001 (critics and mixer)')
    action_reg = Setting(1e-3, 'facmac_learner.py: pg_loss = -Q_tot.mean() + (pi**2).mean() * 1e-3')
    # --- networks and data: SIT paper Table 11 (Shared) ---
    rnn_hidden = Setting(64, 'Table 11 (Shared): RNN hidden dimension 64 (FacMAC MAMuJoCo: MLP actor, 400)')
    critic_hidden = Setting(32, 'Table 11 (Shared): critic hidden dimension 32 (FacMAC MAMuJoCo: 400)')
    mixing_embed_dim = Setting(32, 'Table 11 (Shared): mixer hidden dimension 32 (FacMAC MAMuJoCo: 64)')
    hypernet_embed = Setting(64, 'facmac_mamujoco.yaml: hypernet_layers 2, hypernet_embed 64 (not in Table 11)')
    agent_updates = Setting(15000, 'Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update, as SIT)')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or FACMAC)
        # --- optimisation: FacMAC facmac_mamujoco.yaml ---
        self.optimizer = "adam"  # facmac_mamujoco.yaml: optimizer adam (Table 11 Shared: RMSprop)
        self.optimizer_eps = 0.01  # facmac_mamujoco.yaml: optimizer_epsilon 0.01
        self.grad_clip = 0.5  # facmac_mamujoco.yaml: grad_norm_clip 0.5 (Table 11 Shared: 10)
        self.target_update_tau = 0.001  # facmac_mamujoco.yaml: target_update_mode soft, target_update_tau 0.001
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100 (only if tau=None)
        # gamma 0.99, batch_size_episodes 32: the base's (Table 11 Shared; FacMAC gamma 0.99 too)

    def validate_settings(self) -> None:
        self.check_positive(["actor_lr", "critic_lr", "optimizer_eps"])
        if isinstance(self.action_reg, bool) or not isinstance(self.action_reg, (int, float)) or self.action_reg < 0:
            self.bad("action_reg", self.action_reg, "a number >= 0")
        self.check_int(["agent_updates"], low=0)
        self.check_int(["rnn_hidden", "critic_hidden", "mixing_embed_dim", "hypernet_embed",
                        "agent_updates_per_iteration"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.facmac.torch.facmac_torch_learner import FACMACTorchLearner

        return FACMACTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.facmac.torch.default_facmac_torch_rl_module import FACMACAgentTorchRLModule

        return self.module_spec(info, FACMACAgentTorchRLModule, rnn_hidden=self.rnn_hidden,
                                critic_hidden=self.critic_hidden)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        return self.mixer_module_spec(info, "qmix", embed=self.mixing_embed_dim, hyper_hidden=self.hypernet_embed)


class FACMAC(OfflineMARLAlgorithm):
    """FacMAC's critic and actor updates on uniformly drawn joint episodes; see the module docstring."""

    progress_metrics = (CRITIC_LOSS, ACTOR_LOSS)

    @classmethod
    def get_default_config(cls) -> FACMACConfig:
        return FACMACConfig()

    def setup_algorithm(self) -> None:
        self.sampler = self.joint_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_ACTOR_CRITIC, self._run_updates, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _run_updates(self, n: int):
        return self.update_loop(lambda: joint_batch(self.sampler, self.config.batch_size_episodes), n)

