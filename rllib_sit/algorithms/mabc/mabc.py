"""MABC: multi-agent behaviour cloning (the "BC" baseline of the SIT paper, Appendix B, Eq. 11) as
an offline RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

For each agent type (module), maximise Σ log π(a_j^t | τ_j^t) over the real steps of individual
trajectories of the agents j of that type, drawn uniformly from the dataset; GRU actor on
τ_j^t = (o_j^t, a_j^{t-1}), logits masked to the available actions (discrete) or a tanh-Gaussian
(continuous). One phase, ``bc``: ``agent_updates`` updates, ``agent_updates_per_iteration`` per
``train()``.

Usage::

    config = (MABCConfig().environment("smac:2s3z")
              .training(dataset={"quality": "medium", "episodes": 10000, "seed": 0})
              .evaluation(evaluation_interval=5, evaluation_duration=32))
    algo = config.build_algo()
    algo.train()
"""

from __future__ import annotations

from typing import List

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.mabc.mabc_learner import BC_LOSS, GREEDY_ACCURACY, PHASE_BC


class MABCConfig(OfflineMARLConfig):
    """Configuration of :class:`MABC`; defaults are the SIT paper's "Shared" rows of Table 11.

    From the base (same Table 11 values): ``batch_size_episodes=32``, ``optimizer="rmsprop"``,
    ``grad_clip=10``. ``lr`` is RLlib's own training setting (one optimizer per agent module).
    """

    rnn_hidden = Setting(64, 'Table 11 (Shared): RNN hidden dimension 64')
    agent_updates = Setting(15000, 'Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update, as SIT)')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MABC)
        self.lr = 5e-4  # Table 11 (Shared): agent network learning rate 5e-4 (RMSprop)

    def validate_settings(self) -> None:
        self.check_positive(["lr"])
        self.check_int(["agent_updates"], low=0)
        self.check_int(["rnn_hidden", "agent_updates_per_iteration"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.mabc.torch.mabc_torch_learner import MABCTorchLearner

        return MABCTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.mabc.torch.default_mabc_torch_rl_module import MABCAgentTorchRLModule

        return self.module_spec(info, MABCAgentTorchRLModule, rnn_hidden=self.rnn_hidden)


class MABC(OfflineMARLAlgorithm):
    """Behaviour cloning of every agent module on uniformly sampled individual trajectories."""

    progress_metrics = (BC_LOSS, GREEDY_ACCURACY)

    @classmethod
    def get_default_config(cls) -> MABCConfig:
        return MABCConfig()

    def setup_algorithm(self) -> None:
        # In-process, uniform: B individual trajectories per module (agent type) and update.
        self.sampler = self.trajectory_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_BC, self._run_bc, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _bc_batch(self):
        # = self.sampler.sample(B) (same draws), with agent j's own observations only: the actor
        # needs no o_{-j} (N times less to copy). Local: sample() has no own_obs_only flag yet.
        s, B = self.sampler, self.config.batch_size_episodes
        return {m: s.gather(*s.sample_indices(m, B), own_obs_only=True) for m in s.modules}

    def _run_bc(self, n: int):
        return self.update_loop(self._bc_batch, n)

