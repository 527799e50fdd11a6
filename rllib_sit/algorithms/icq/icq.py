"""ICQ — implicit constraint Q-learning for offline multi-agent RL (Yang et al., NeurIPS 2021,
"Believe what you see"; the ICQ baseline of the SIT paper, Appendix B Eq. 14) as an offline RLlib
Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Per update, ``batch_size_episodes`` joint episodes drawn uniformly
(:class:`~rllib_sit.replay.samplers.JointEpisodeSampler`): each agent module (one per agent type)
gets its agents' individual trajectories, the mixer module the joint episodes with the state.

* Critic: recurrent Q_i(τ_i, a_i) per agent type mixed by ``StateLinearMixer`` (Q_tot = Σ w_i(s)
  Q_i + b(s), w ≥ 0) and trained on the implicit-constraint λ-return (only the dataset's next
  actions are ever evaluated; weights softmax over the mini-batch of Q'_tot/β_c, Eq. 55–56).
* Actor: the base's recurrent policy per agent type, trained by −w_i(s) exp(A_i/β_a)/Z_i log π_i.

One phase, ``icq``: ``agent_updates`` updates, ``agent_updates_per_iteration`` per ``train()``.

Usage::

    config = (ICQConfig().environment("smac:2s3z")
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
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.icq.icq_learner import ACTOR_LOSS, CRITIC_LOSS, PHASE_ICQ, SOFTMAX_OVER


class ICQConfig(OfflineMARLConfig):
    """Configuration of :class:`ICQ`. Defaults: SIT paper Table 11 ("Shared" rows and the ICQ
    rows), where the ICQ paper's Table 4 or its authors' code differ, noted per setting.

    From the base (Table 11 "Shared"): ``batch_size_episodes=32``, ``optimizer="rmsprop"``,
    ``grad_clip=10``, ``gamma=0.99``.
    """

    actor_lr = Setting(5e-4, 'Table 11 (Shared): agent network lr 5e-4; ICQ Table 4: policy lr 5e-4')
    critic_lr = Setting(1e-4, 'Table 11 (ICQ): critic lr 1e-4; ICQ Table 4: value lr 1e-4 (mixer too, as ICQ code)')
    critic_beta = Setting(0.1, 'Table 11 (ICQ): β_ICQ = 0.1. ICQ Table 4: α = 1000 or 100; ICQ code: 1000')
    actor_beta = Setting(0.1, 'Table 11 (ICQ): β_ICQ = 0.1; ICQ code: 0.1 (actor softmax of A/0.1)')
    td_lambda = Setting(0.8, 'Table 11 (ICQ): λ_ICQ = 0.8; ICQ Table 4: λ = 0.8')
    softmax_over = Setting("batch", 'Eq. 56: Z over the mini-batch; "episodes": per step (the ICQ code)')
    agent_updates = Setting(15000, 'Table 11 (Shared): training epoch 15000 (1 epoch = 1 update)')
    rnn_hidden = Setting(64, 'Table 11 (Shared) / ICQ Table 4: RNN hidden dimension 64 (actor and critic GRUs)')
    mixer_hidden = Setting(32, 'Table 11 (Shared): mixer/critic hidden 32; ICQ Table 4: mixer dimension 32')
    critic_hidden = Setting(32, "Table 11 (Shared): critic hidden 32 (continuous critic's action head)")
    n_action_samples = Setting(10, 'not in the papers: continuous baseline, actions drawn from π per step')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or ICQ)
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100; ICQ Table 4: 600

    def validate_settings(self) -> None:
        self.check_positive(["actor_lr", "critic_lr", "critic_beta", "actor_beta"])
        self.check_range("td_lambda", 0.0, 1.0)
        self.check_choice("softmax_over", SOFTMAX_OVER)
        self.check_int(["agent_updates"], low=0)
        self.check_int(["agent_updates_per_iteration", "rnn_hidden", "mixer_hidden", "critic_hidden",
                        "n_action_samples"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.icq.torch.icq_torch_learner import ICQTorchLearner

        return ICQTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.icq.torch.default_icq_torch_rl_module import ICQAgentTorchRLModule

        return self.module_spec(info, ICQAgentTorchRLModule, rnn_hidden=self.rnn_hidden,
                                critic_hidden=self.critic_hidden, n_action_samples=self.n_action_samples)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        return self.mixer_module_spec(info, "linear", hidden=self.mixer_hidden)


class ICQ(OfflineMARLAlgorithm):
    """Implicit constraint Q-learning: joint-episode batches, one ``icq`` phase."""

    progress_metrics = (CRITIC_LOSS, ACTOR_LOSS)

    @classmethod
    def get_default_config(cls) -> ICQConfig:
        return ICQConfig()

    def setup_algorithm(self) -> None:
        self.sampler = self.joint_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_ICQ, self._run_icq, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _run_icq(self, n: int):
        B = self.config.batch_size_episodes
        return self.update_loop(lambda: self.sampler.sample_by_module(B, MIXER_MODULE_ID), n)

