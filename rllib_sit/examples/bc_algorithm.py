"""A complete offline multi-agent algorithm in one file, on the package's shared base: behaviour
cloning of every agent type's recurrent policy (SIT paper Appendix B, Eq. 11).

It is the worked example of docs/adding_an_algorithm.md (which quotes this file; a test checks the
quotes and trains it for two iterations). A real algorithm splits the same four parts into
``rllib_sit/algorithms/<algo>/`` (``<algo>.py``: config + algorithm; ``torch/``: learner and
module) and registers its run name in ``rllib_sit/algorithms/__init__.py``.

Usage::

    from rllib_sit.examples.bc_algorithm import ExampleBCConfig

    algo = (ExampleBCConfig().environment("smac:2s3z")
            .training(dataset={"quality": "medium", "episodes": 1000}, updates=2000)
            .build_algo())
    algo.train()
"""

from __future__ import annotations

from typing import List

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.losses import behaviour_cloning_nll
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule
from rllib_sit.replay import keys as K

PHASE_BC = "bc"
BC_LOSS = "bc_loss"  # metric: Eq. 11, mean −log π(a^t | τ^t) over the real steps


# -- 1. the config ---------------------------------------------------------------------------------
class ExampleBCConfig(OfflineMARLConfig):
    """Behaviour cloning per agent type; defaults: the SIT paper's Table 11 "Shared" rows."""

    updates = Setting(15000, "SIT paper Table 11 (Shared): 15,000 training epochs (1 epoch = 1 update)")
    updates_per_iteration = Setting(500, "schedule, not a paper setting: updates per train()")
    rnn_hidden = Setting(64, "SIT paper Table 11 (Shared): RNN hidden dimension 64")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or ExampleBC)
        self.lr = 5e-4  # SIT paper Table 11 (Shared): agent network learning rate 5e-4 (RLlib's own setting)

    def validate_settings(self) -> None:  # check and raise; never assign
        self.check_positive(["lr"])
        self.check_int(["updates"], low=0)
        self.check_int(["updates_per_iteration", "rnn_hidden"])

    def get_default_learner_class(self):
        return ExampleBCTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        return self.module_spec(info, ExampleBCModule, rnn_hidden=self.rnn_hidden)


# -- 2. the algorithm: phases ----------------------------------------------------------------------
class ExampleBC(OfflineMARLAlgorithm):
    """One phase, ``bc``: ``updates`` updates, ``updates_per_iteration`` per ``train()``."""

    progress_metrics = (BC_LOSS,)  # learner metrics on `rllib train file`'s progress line

    @classmethod
    def get_default_config(cls) -> ExampleBCConfig:
        return ExampleBCConfig()

    def setup_algorithm(self) -> None:  # after self.store is open
        # Uniform individual trajectories per module, seeded by config.seed. The base checkpoints
        # self.sampler (and self.rng): nothing to add to get_extra_state().
        self.sampler = self.trajectory_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(PHASE_BC, lambda n: self.update_loop(self._batch, n), cfg.updates, cfg.updates_per_iteration)]

    def _batch(self):
        # B trajectories per module with the agent's own observations only (the policy reads o_j,
        # not o_{-j}: N times less data than every agent's OBS_ALL).
        s, B = self.sampler, self.config.batch_size_episodes
        return {m: s.gather(*s.sample_indices(m, B), own_obs_only=True) for m in s.modules}


# -- 3. the learner: losses ------------------------------------------------------------------------
class ExampleBCTorchLearner(OfflineMARLTorchLearner):
    def optimizer_groups(self, module_id, module, config):
        return {"actor": (module.actor.parameters(), config.lr)}

    def compute_losses_for_module(self, *, module_id, config, batch, fwd_out):
        loss = behaviour_cloning_nll(fwd_out[K.LOGP], batch[K.FILLED])  # SIT paper Eq. 11
        self.metrics.log_value((module_id, BC_LOSS), loss.item(), window=1)
        return {"actor": loss}


# -- 4. the module ---------------------------------------------------------------------------------
class ExampleBCModule(RecurrentAgentTorchRLModule):
    def _forward_train(self, batch, **kwargs):
        own, prev, avail = self.own_trajectory(batch)  # t = 0..L-1 of o_j, a_j^{t-1}, availability
        return {K.LOGP: self.log_prob(own, prev, batch[K.ACTIONS], avail)}
