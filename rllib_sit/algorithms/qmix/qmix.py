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

from typing import Dict, List


from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.qmix.qmix_learner import PHASE_TD, Q_TOT_MEAN, TD_LOSS
from rllib_sit.replay import keys as K
from rllib_sit.replay.samplers import JointEpisodeSampler

# What the learner reads from a joint batch (the rest of the sampler's output is not sent).
AGENT_KEYS = (K.OBS_ALL, K.AGENT_INDEX, K.ACTIONS, K.PREV_ACTIONS, K.AVAIL_ACTIONS, K.FILLED)
JOINT_KEYS = (K.STATE, K.REWARD, K.TERMINATED, K.FILLED)


class QMIXConfig(OfflineMARLConfig):
    """Configuration of :class:`QMIX`; defaults: the SIT paper's Table 11 "Shared" rows, and
    pymarl's ``src/config/algs/qmix.yaml`` where Table 11 says nothing.

    From the base (Table 11 "Shared"): ``batch_size_episodes=32``, ``optimizer="rmsprop"``
    (pymarl's α 0.99, eps 1e-5), ``gamma=0.99``, ``grad_clip=10``. ``lr`` is RLlib's own training
    setting (the Q-networks and the mixer).
    """

    action_spaces = ("discrete",)
    action_space_hint = "QMIX is the discrete baseline; run: FACMAC is the continuous one"
    _training_keys = OfflineMARLConfig._training_keys + (
        "rnn_hidden", "mixing_embed_dim", "hypernet_embed", "double_q", "target_update_interval",
        "agent_updates", "agent_updates_per_iteration")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or QMIX)
        self.lr = 5e-4  # Table 11 (Shared): agent network learning rate 5e-4 (RMSprop); pymarl lr 0.0005
        self.rnn_hidden = 64  # Table 11 (Shared): RNN hidden dimension 64
        self.mixing_embed_dim = 32  # Table 11 (Shared): mixer hidden dimension 32; pymarl qmix.yaml mixing_embed_dim 32
        self.hypernet_embed = 64  # pymarl qmix.yaml: hypernet_layers 2, hypernet_embed 64 (not in Table 11)
        self.double_q = True  # pymarl qmix.yaml: double_q True (not in Table 11)
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100 (pymarl: 200 episodes)
        self.agent_updates = 15000  # Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update, as SIT)
        self.agent_updates_per_iteration = 500  # schedule, not a paper setting: 30 iterations

    def validate_settings(self) -> None:
        self.check_positive(["lr"])
        self.check_int(["agent_updates"], low=0)
        self.check_int(["rnn_hidden", "mixing_embed_dim", "hypernet_embed", "target_update_interval",
                        "agent_updates_per_iteration"])
        self.check_bool(["double_q"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.qmix.torch.qmix_torch_learner import QMIXTorchLearner

        return QMIXTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.qmix.torch.default_qmix_torch_rl_module import QMIXAgentTorchRLModule

        obs_space, act_space = self.spaces(info)
        return RLModuleSpec(module_class=QMIXAgentTorchRLModule, observation_space=obs_space, action_space=act_space,
                            model_config=dict(self.env_model_config(info), rnn_hidden=self.rnn_hidden))

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        return self.mixer_module_spec(info, "qmix", embed=self.mixing_embed_dim, hyper_hidden=self.hypernet_embed)


def joint_batch(sampler: JointEpisodeSampler, batch_size: int, agent_keys=AGENT_KEYS, joint_keys=JOINT_KEYS):
    """``batch_size`` joint episodes split by module, with only the keys the learner reads; the
    agents' ``OBS_ALL`` holds their own observations only (decentralised Q-networks)."""
    return sampler.sample_by_module(batch_size, MIXER_MODULE_ID, agent_keys=agent_keys, joint_keys=joint_keys,
                                    own_obs_only=True)


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

