"""OMAC ("Offline Multi-Agent RL with Coupled Value Factorization", Wang et al., AAMAS 2023) on the
package's offline base: coupled value factorization (Eq. 2) with coupled credit assignment (Eq. 3),
in-sample local values by expectile regression (Eq. 5), a global TD loss (Eq. 6), and
advantage-weighted policy extraction (Eq. 8) — Algorithm 1's two loops as two phases:

Phase ``value``   ``value_updates`` updates of V_i (Eq. 5) and of Q_i, w^v, w^q, V_share (Eq. 6).
Phase ``policy``  ``policy_updates`` updates of every π_i (Eq. 8) with Q_i and V_i fixed.

Discrete actions (SMAC, MPE) as in the paper; continuous actions (MAMuJoCo) with Q_i(τ_i, a_i) taking
the action as input and a tanh-Gaussian π_i — this package's design (the paper evaluates SMAC only),
see docs/algorithms/omac.md. Usage::

    config = OMACConfig().environment("smac:2s3z").training(dataset={"quality": "medium", "episodes": 1000})
    algo = config.build_algo()
"""

from __future__ import annotations

from typing import Dict, List

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting

PHASE_VALUE, PHASE_POLICY = "value", "policy"


class OMACConfig(OfflineMARLConfig):
    """Configuration of :class:`OMAC`; defaults from the OMAC paper's Table 2 (appendix A.3)."""

    action_spaces = ("discrete", "continuous")
    critic_lr = Setting(5e-4, 'Table 2: value network learning rate 5e-4 (Q_i, V_i, CCA, V_share)')
    expectile = Setting(0.7, 'Table 2 / A.3: expectile τ = 0.7')
    beta = Setting(1.0, 'Table 2 / A.3: temperature β = 1 (0.5 on the good/medium data of 2 maps)')
    exp_adv_max = Setting(100.0, "not in the paper: exp(β·A) clipped at 100 (IQL's clip), see the doc")
    hidden = Setting(256, 'Table 2: hidden dimension 256 (local value and policy networks)')
    cca_hidden = Setting(64, 'Table 2: CCA network hidden dimension 64')
    value_updates = Setting(10000, "not in the paper: Algorithm 1's max-value-iteration")
    policy_updates = Setting(10000, "not in the paper: Algorithm 1's max-policy-iteration")
    value_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 20 iterations')
    policy_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 20 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or OMAC)
        self.optimizer = "adam"  # Table 2: Adam
        self.lr = 5e-4  # Table 2: policy network learning rate 5e-4
        self.target_update_tau = 0.005  # Table 2: target update rate 0.005 (soft update of Q̄_i)
        self.gamma = 0.99  # Table 2: discount 0.99
        self.batch_size_episodes = 32  # Table 2: batch 128 transitions; here 32 episodes (recurrent nets)
        self.grad_clip = 10.0

    def validate_settings(self) -> None:
        self.check_positive(["lr", "critic_lr", "beta", "exp_adv_max"])
        self.check_range("expectile", 0.0, 1.0)
        if not 0.0 < self.expectile < 1.0:
            self.bad("expectile", self.expectile, "a number in (0, 1)")
        self.check_int(["value_updates", "policy_updates"], low=0)
        self.check_int(["hidden", "cca_hidden", "value_updates_per_iteration", "policy_updates_per_iteration"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.omac.torch.omac_torch_learner import OMACTorchLearner

        return OMACTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.omac.torch.default_omac_torch_rl_module import OMACAgentTorchRLModule

        return self.module_spec(info, OMACAgentTorchRLModule, rnn_hidden=self.hidden)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        from rllib_sit.algorithms.omac.torch.default_omac_torch_rl_module import CCAMixerTorchRLModule

        return {MIXER_MODULE_ID: self.module_spec(info, CCAMixerTorchRLModule, cca_hidden=self.cca_hidden,
                                                  hidden=self.hidden, agent_modules=self.agent_module_order(info))}


class OMAC(OfflineMARLAlgorithm):
    """Algorithm 1 of the OMAC paper as two phases; see the module docstring."""

    progress_metrics = ("value_loss", "q_loss", "actor_loss")

    @classmethod
    def get_default_config(cls) -> OMACConfig:
        return OMACConfig()

    def setup_algorithm(self) -> None:
        self.sampler = self.joint_sampler()

    def _value_batch(self):
        return self.sampler.sample_by_module(self.config.batch_size_episodes, MIXER_MODULE_ID)

    def _policy_batch(self):
        batch = self._value_batch()
        batch.pop(MIXER_MODULE_ID)  # Eq. 8 needs only each agent's own trajectory
        return batch

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_VALUE, lambda n: self.update_loop(self._value_batch, n), cfg.value_updates,
                      cfg.value_updates_per_iteration),
                Phase(PHASE_POLICY, lambda n: self.update_loop(self._policy_batch, n), cfg.policy_updates,
                      cfg.policy_updates_per_iteration)]

