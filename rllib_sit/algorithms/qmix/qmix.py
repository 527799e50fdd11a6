"""QMIX (Rashid et al. 2018) trained naively on offline data: the SIT paper's "online algorithm
without offline correction" baseline for discrete actions (Table 1, column QMIX), as an offline
RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Per agent type, a recurrent Q-network Q_i(τ_i, ·) on τ_i = (o_i^t, a_i^{t-1}) (shared by the agents
of the type); QMIX's monotonic hypernetwork mixer Q_tot = f(Q_1..Q_N; s); the TD(0) target
r + γ (1 − terminated) Q'_tot(s', max over the **available** actions of the target networks at
t+1) (double-Q by default, as pymarl's ``qmix.yaml``). Nothing keeps the arg max inside the data's
support — that is the point of the baseline (SIT paper §Experiments: "the online algorithm QMIX
or FacMAC cannot handle the extrapolation error in offline scenarios"). Batches are whole joint
episodes drawn uniformly (:class:`~rllib_sit.replay.samplers.JointEpisodeSampler`). One phase,
``td``: ``agent_updates`` updates, ``agent_updates_per_iteration`` per ``train()``.

Usage::

    config = (QMIXConfig().environment("smac:2s3z")
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
from rllib_sit.algorithms.qmix.qmix_learner import PHASE_TD, Q_TOT_MEAN, TD_LOSS
from rllib_sit.replay import keys as K

# What the learner reads from an agent module's batch (the joint keys: the mixer TD loss's, joint.JOINT_KEYS).
AGENT_KEYS = (K.OBS_ALL, K.AGENT_INDEX, K.ACTIONS, K.PREV_ACTIONS, K.AVAIL_ACTIONS, K.FILLED)
# ``joint_batch(sampler, batch_size)``: B joint episodes split by module, own observations only.
joint_batch = functools.partial(joint.joint_batch, agent_keys=AGENT_KEYS)


class QMIXConfig(OfflineMARLConfig):
    """Configuration of :class:`QMIX`; defaults: the SIT paper's Table 11 "Shared" rows, and
    pymarl's ``src/config/algs/qmix.yaml`` where Table 11 says nothing.

    From the base (Table 11 "Shared"): ``batch_size_episodes=32``, ``optimizer="rmsprop"``
    (pymarl's α 0.99, eps 1e-5), ``gamma=0.99``, ``grad_clip=10``. ``lr`` is RLlib's own training
    setting (the Q-networks and the mixer).
    """

    action_spaces = ("discrete",)
    action_space_hint = "QMIX is the discrete baseline; run: FACMAC is the continuous one"
    rnn_hidden = Setting(64, 'Table 11 (Shared): RNN hidden dimension 64')
    mixing_embed_dim = Setting(32, 'Table 11 (Shared): mixer hidden dimension 32; pymarl qmix.yaml mixing_embed_dim 32')
    hypernet_embed = Setting(64, 'pymarl qmix.yaml: hypernet_layers 2, hypernet_embed 64 (not in Table 11)')
    double_q = Setting(True, 'pymarl qmix.yaml: double_q True (not in Table 11)')
    agent_updates = Setting(15000, 'Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update, as SIT)')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or QMIX)
        self.lr = 5e-4  # Table 11 (Shared): agent network learning rate 5e-4 (RMSprop); pymarl lr 0.0005
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100 (pymarl: 200 episodes)

    def validate_settings(self) -> None:
        self.check_positive(["lr"])
        self.check_int(["agent_updates"], low=0)
        self.check_int(["rnn_hidden", "mixing_embed_dim", "hypernet_embed", "agent_updates_per_iteration"])
        self.check_bool(["double_q"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.qmix.torch.qmix_torch_learner import QMIXTorchLearner

        return QMIXTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.qmix.torch.default_qmix_torch_rl_module import QMIXAgentTorchRLModule

        return self.module_spec(info, QMIXAgentTorchRLModule, rnn_hidden=self.rnn_hidden)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        return self.mixer_module_spec(info, "qmix", embed=self.mixing_embed_dim, hyper_hidden=self.hypernet_embed)


class QMIX(OfflineMARLAlgorithm):
    """TD learning of QMIX on uniformly drawn joint episodes; see the module docstring."""

    progress_metrics = (TD_LOSS, Q_TOT_MEAN)

    @classmethod
    def get_default_config(cls) -> QMIXConfig:
        return QMIXConfig()

    def setup_algorithm(self) -> None:
        self.sampler = self.joint_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_TD, self._run_td, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _run_td(self, n: int):
        return self.update_loop(lambda: joint_batch(self.sampler, self.config.batch_size_episodes), n)

