"""MACQL: multi-agent CQL (Kumar et al. 2020) with the SIT paper's value decomposition (Appendix B,
Eq. 13; Table 11: β_CQL = 2.0) as an offline RLlib Algorithm on the package's shared base
(:mod:`rllib_sit.algorithms.common`).

Per-agent recurrent Q networks Q_i(τ_i, a_i), one per agent type (shared by its agents), mixed by
ICQ's ``Q_tot(s, a) = Σ_i w_i(s) Q_i + b(s)`` (w ≥ 0, one learner-only mixer module); trained on
whole joint episodes drawn uniformly with

    L = β_CQL · E[penalty] + ½ E[(y − Q_tot(s, a_data))²],   y = r + γ (1 − d) Q'_tot(s', a'),

``cql_variant="per_agent"`` (Eq. 13, the default): penalty = Σ_i [log Σ_{a_i available}
exp(w_i Q_i(τ_i, a_i)) − w_i Q_i(τ_i, a_i^data)]; ``"joint"``: logsumexp over sampled joint actions
of Q_tot minus Q_tot at the data. Continuous actions (MAMuJoCo): a SAC actor and CQL(H)'s sampled,
importance-corrected logsumexp (our design; ``docs/algorithms/macql.md``).

Usage::

    config = (MACQLConfig().environment("smac:2s3z")
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
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common import joint
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.macql.macql_learner import (CQL_AGENT_WEIGHTS, CQL_PENALTY, CQL_VARIANTS, MIXER_WEIGHTS,
                                                      PER_AGENT, PHASE_CQL, TD_LOSS)
from rllib_sit.replay import keys as K


class MACQLConfig(OfflineMARLConfig):
    """Configuration of :class:`MACQL`; defaults are the SIT paper's Table 11 ("Shared" + "MACQL").

    From the base (same Table 11 values): ``batch_size_episodes=32``, ``optimizer="rmsprop"``,
    ``grad_clip=10``, ``gamma=0.99``. ``lr`` is RLlib's own setting: the Q networks / critics and
    the mixer.
    """

    cql_beta = Setting(2.0, 'Table 11 (MACQL): β_CQL = 2.0')
    cql_variant = Setting(PER_AGENT, 'Eq. 13: Σ_i log Σ_{a_i} exp(w_i Q_i + b) — a per-agent logsumexp')
    cql_agent_weights = Setting(MIXER_WEIGHTS, 'Eq. 13: w_i(s)·Q_i inside the logsumexp')
    cql_bias_per_agent = Setting(False, "True: Eq. 13 as printed, b(s) in every agent's term (doc: diverges)")
    cql_num_samples = Setting(10, 'CQL code (Kumar et al. 2020): 10 samples per proposal (joint / continuous)')
    double_q = Setting(True, "pymarl's QMIX target (the code base the SIT paper's baselines follow)")
    rnn_hidden = Setting(64, 'Table 11 (Shared): RNN hidden dimension 64')
    mixer_hidden = Setting(32, 'Table 11 (Shared): mixer/critic hidden dimension 32')
    critic_hidden = Setting(32, 'Table 11 (Shared): mixer/critic hidden 32 (continuous critic head)')
    actor_lr = Setting(5e-4, 'continuous only: Table 11 (Shared) agent network learning rate')
    alpha_lr = Setting(3e-4, 'continuous only: SAC (Haarnoja et al. 2018, Table 1) temperature learning rate')
    initial_alpha = Setting(1.0, 'continuous only: SAC/CQL code start at log α = 0')
    target_entropy = Setting(None, 'continuous only: None = −action dim (SAC)')
    agent_updates = Setting(15000, 'Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update, as SIT)')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MACQL)
        self.lr = 5e-4  # Table 11 (Shared): agent network learning rate 5e-4 (RMSprop); also the mixer's
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100
        self.target_update_tau = None  # None: hard copies (Table 11); a float: Polyak averaging instead

    def validate_settings(self) -> None:
        self.check_positive(["lr", "actor_lr", "alpha_lr", "initial_alpha"])
        if isinstance(self.cql_beta, bool) or not isinstance(self.cql_beta, (int, float)) or not self.cql_beta >= 0:
            self.bad("cql_beta", self.cql_beta, "a number >= 0")
        self.check_choice("cql_variant", CQL_VARIANTS)
        self.check_choice("cql_agent_weights", CQL_AGENT_WEIGHTS)
        self.check_bool(["cql_bias_per_agent", "double_q"])
        if self.cql_bias_per_agent and (self.cql_variant != PER_AGENT or self.cql_agent_weights != MIXER_WEIGHTS):
            self.bad("cql_bias_per_agent", self.cql_bias_per_agent,
                     "False unless cql_variant='per_agent' and cql_agent_weights='mixer' (b(s) is Eq. 13's mixer bias)")
        self.check_int(["agent_updates"], low=0)
        self.check_int(["cql_num_samples", "rnn_hidden", "mixer_hidden", "critic_hidden",
                        "agent_updates_per_iteration"])
        if self.target_entropy is not None and (isinstance(self.target_entropy, bool)
                                                or not isinstance(self.target_entropy, (int, float))):
            self.bad("target_entropy", self.target_entropy, "None or a number")

    def get_default_learner_class(self):
        from rllib_sit.algorithms.macql.torch.macql_torch_learner import MACQLTorchLearner

        return MACQLTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.macql.torch.default_macql_torch_rl_module import MACQLAgentTorchRLModule

        return self.module_spec(info, MACQLAgentTorchRLModule, rnn_hidden=self.rnn_hidden,
                                critic_hidden=self.critic_hidden, cql_num_samples=self.cql_num_samples,
                                initial_alpha=self.initial_alpha)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        # One learner-only mixer: ICQ's Q_tot = Σ_i w_i(s) Q_i + b(s) (the SIT paper's decomposition
        # for MABCQ/MACQL/ICQ). It carries the agent -> module order the learner stacks values in.
        return self.mixer_module_spec(info, "linear", hidden=self.mixer_hidden)


# What the learner reads: the agents' own trajectories (decentralised Q networks / actors / critics
# read o_i only) and the mixer's joint columns.
AGENT_KEYS = (K.OBS_ALL, K.AGENT_INDEX, K.ACTIONS, K.PREV_ACTIONS, K.FILLED)
JOINT_KEYS = joint.JOINT_KEYS + (K.ACTIONS, K.AVAIL_ACTIONS, K.EPISODE_INDEX)
# ``joint_batch(sampler, batch_size)``: B joint episodes split by module, own observations only.
joint_batch = functools.partial(joint.joint_batch, agent_keys=AGENT_KEYS, joint_keys=JOINT_KEYS)


class MACQL(OfflineMARLAlgorithm):
    """Conservative Q-learning of the agent modules and the mixer on uniformly drawn joint episodes."""

    progress_metrics = (TD_LOSS, CQL_PENALTY)

    @classmethod
    def get_default_config(cls) -> MACQLConfig:
        return MACQLConfig()

    def setup_algorithm(self) -> None:
        # In-process, uniform: B joint episodes per update, split into every module's individual
        # trajectories beside the joint episode (state, team reward, joint actions) for the mixer.
        self.sampler = self.joint_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_CQL, self._run_cql, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _run_cql(self, n: int):
        return self.update_loop(lambda: joint_batch(self.sampler, self.config.batch_size_episodes), n)

