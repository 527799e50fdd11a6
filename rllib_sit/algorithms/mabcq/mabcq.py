"""MABCQ: the multi-agent BCQ baseline of the SIT paper (Appendix B, Eq. 12; Table 11: ζ = 0.3) as
an offline RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Per-agent recurrent Q-networks shared by agent type, mixed by ICQ's linear decomposition
Q_tot = Σ_i w_i(s) Q_i + b(s) (``StateLinearMixer``, w ≥ 0; one mixer module) and trained on
uniformly drawn joint episodes with

    L = E[(r + γ max_ã Q'_tot(τ', ã) − Q_tot(τ, a))²]                                     (Eq. 12)

where the max runs, per agent, only over actions the behaviour model μ_i deems familiar:

* discrete (Fujimoto et al. 2019, "BCQ for discrete actions"): a ∈ A_i(τ') with
  μ_i(a|τ') / max_{a' available} μ_i(a'|τ') ≥ ζ, μ_i renormalised over the available actions;
  the arg max of the online Q over that set, valued by the target Q (double Q). μ_i is a GRU
  policy trained by behaviour cloning (Eq. 11) on the same batches, with its own optimizer.
  **Greedy evaluation uses the same filter.**
* continuous (this package's design): BCQ's VAE on the agent's step input (o_i^t, a_i^{t-1}) and
  perturbation model ξ_i (|ξ| ≤ Φ = 0.05), the best of n = 10 perturbed VAE samples.

Phases: ``behaviour`` (``behaviour_pretrain_updates`` updates of μ_i/VAE alone; 0 by default),
then ``bcq`` (``agent_updates`` updates of everything).

Usage::

    config = (MABCQConfig().environment("smac:2s3z")
              .training(dataset={"quality": "low", "episodes": 10000, "seed": 0}, zeta=0.3)
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
from rllib_sit.algorithms.mabcq import mabcq_learner as N


class MABCQConfig(OfflineMARLConfig):
    """Configuration of :class:`MABCQ`. Defaults: SIT paper Table 11 ("Shared" rows and the MABCQ
    row); continuous settings from BCQ (Fujimoto, Meger, Precup 2019) or marked as this package's.

    From the base (Table 11 values): ``batch_size_episodes=32``, ``optimizer="rmsprop"``,
    ``grad_clip=10``, ``gamma=0.99``. ``lr`` is RLlib's own setting (Q-networks, mixer, ξ).
    """

    zeta = Setting(0.3, 'Table 11 (MABCQ): ζ = 0.3')
    behaviour_lr = Setting(5e-4, 'Table 11 (Shared): agent network lr 5e-4 (μ_i / VAE; no own row)')
    agent_updates = Setting(15000, 'Table 11 (Shared): training epoch 15000 (1 epoch = 1 update)')
    mixer_hidden = Setting(32, 'Table 11 (Shared): mixer/critic hidden dimension 32')
    rnn_hidden = Setting(64, 'Table 11 (Shared): RNN hidden dimension 64')
    double_q = Setting(True, 'discrete BCQ code (Fujimoto et al. 2019): online arg max, target value')
    behaviour_pretrain_updates = Setting(0, 'not in Table 11: μ_i-only updates before Q-learning')
    agent_updates_per_iteration = Setting(500, 'schedule, not a paper setting: 30 iterations')
    num_sampled_actions = Setting(10, "Continuous actions (MAMuJoCo): BCQ's generative model and perturbation. BCQ: "
                                  'n = 10 sampled actions')
    perturbation_scale = Setting(0.05, 'BCQ: Φ = 0.05 (|ξ| ≤ Φ·max_action; actions scaled to [-1, 1])')
    vae_hidden = Setting(64, "this package: BCQ uses 750; Table 11's RNN width 64 instead")
    vae_latent_dim = Setting(None, 'BCQ: 2 × action dimension')
    perturb_hidden = Setting(64, "this package: BCQ uses (400, 300); 64 as Table 11's networks")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or MABCQ)
        self.lr = 5e-4  # Table 11 (Shared): agent network learning rate 5e-4 (Q-networks, mixer, ξ)
        self.gamma = 0.99  # Table 11 (Shared): discount factor 0.99
        self.target_update_interval = 100  # Table 11 (Shared): parameters update interval 100 (hard copy)
        self.target_update_tau = None  # None: hard copies (Table 11); a float: Polyak averaging (BCQ: 0.005)

    def validate_settings(self) -> None:
        self.check_range("zeta", 0.0, 1.0)
        self.check_positive(["lr", "behaviour_lr"])
        self.check_int(["agent_updates", "behaviour_pretrain_updates"], low=0)
        self.check_int(["mixer_hidden", "rnn_hidden", "agent_updates_per_iteration", "num_sampled_actions",
                        "vae_hidden", "perturb_hidden"])
        self.check_range("perturbation_scale", 0.0, 1.0)
        if self.vae_latent_dim is not None:
            self.check_int(["vae_latent_dim"])
        self.check_bool(["double_q"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.mabcq.torch.mabcq_torch_learner import MABCQTorchLearner

        return MABCQTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.mabcq.torch.default_mabcq_torch_rl_module import (
            MABCQContinuousAgentTorchRLModule, MABCQDiscreteAgentTorchRLModule)

        if info.discrete:
            return self.module_spec(info, MABCQDiscreteAgentTorchRLModule, rnn_hidden=self.rnn_hidden, zeta=self.zeta,
                                    double_q=self.double_q)
        return self.module_spec(info, MABCQContinuousAgentTorchRLModule, rnn_hidden=self.rnn_hidden,
                                num_sampled_actions=self.num_sampled_actions,
                                perturbation_scale=self.perturbation_scale, vae_hidden=self.vae_hidden,
                                vae_latent_dim=self.vae_latent_dim, perturb_hidden=self.perturb_hidden)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        # One StateLinearMixer (ICQ's Σ w_i(s) Q_i + b(s), the SIT paper's decomposition for MABCQ).
        return self.mixer_module_spec(info, "linear", hidden=self.mixer_hidden)


class MABCQ(OfflineMARLAlgorithm):
    """BCQ-filtered Q-learning through the linear mixer on uniformly drawn joint episodes."""

    progress_metrics = (N.TD_LOSS, N.BEHAVIOUR_LOSS, N.FILTER_KEPT, N.VAE_LOSS)

    @classmethod
    def get_default_config(cls) -> MABCQConfig:
        return MABCQConfig()

    def setup_algorithm(self) -> None:
        # In-process, uniform over episodes: the joint episode for the mixer, split into every
        # agent's individual trajectory for its (shared, per type) module.
        self.sampler = self.joint_sampler()

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        return [Phase(N.PHASE_BEHAVIOUR, self._run_behaviour, cfg.behaviour_pretrain_updates,
                      cfg.agent_updates_per_iteration),
                Phase(N.PHASE_BCQ, self._run_bcq, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    def _sample(self, with_mixer: bool):
        batch = self.sampler.sample_by_module(self.config.batch_size_episodes, MIXER_MODULE_ID)
        if not with_mixer:  # behaviour pre-training: the agent modules alone (no TD term)
            del batch[MIXER_MODULE_ID]
        return batch

    def _run_behaviour(self, n: int):
        return self.update_loop(lambda: self._sample(False), n)

    def _run_bcq(self, n: int):
        return self.update_loop(lambda: self._sample(True), n)

