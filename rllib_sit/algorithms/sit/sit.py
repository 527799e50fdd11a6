"""SIT ("Learning from Good Trajectories in Offline Multi-Agent RL", Tian et al., AAAI 2023) as an
offline RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Phase ``ardnem`` (Stage I)  ARDNEM (Eq. 1–3), ``ardnem_updates`` updates, uniform timesteps.
Phase ``dper``   (Stage II) once: r̂, û, p̂ for every (episode, agent) (Eq. 4–7) -> the DPER: an
                            individual-trajectory sampler (Ray actor) with Eq. 7 probabilities per type.
Phase ``agents`` (Stage III) ``agent_updates`` actor/critic updates (Eq. 8–10) on DPER samples.

Usage::

    config = (SITConfig().environment("smac:2s3z")
              .offline_data(input_="offline_data/datasets/smac_2s3z/low")
              .training(alpha=0.2, beta=0.1, eta=1.0)
              .evaluation(evaluation_interval=10, evaluation_duration=32))
    algo = config.build_algo()
    algo.train()
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional

import numpy as np
import ray

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import ALGORITHM_RESULTS, OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.data import schema as S
from rllib_sit.replay import keys as B
from rllib_sit.replay.samplers import IndividualTrajectorySampler, make_sampler_actor

logger = logging.getLogger(__name__)

DECOMPOSITIONS = ("attention", "none", "monotonic")
STAGE2_BACKENDS = ("local", "ray_data")


class SITConfig(OfflineMARLConfig):
    """Configuration of :class:`SIT`; every default is the paper's value (Tables 10–11)."""

    _training_keys = OfflineMARLConfig._training_keys + (
        "ardnem_lr", "ardnem_updates", "ensemble_size", "reward_hidden", "attention_hidden", "alpha",
        "priority_range", "beta", "eta", "actor_lr", "critic_lr", "agent_updates", "target_update_interval",
        "critic_hidden", "rnn_hidden", "uncertainty_floor", "decomposition", "use_attention", "ensemble",
        "use_gat", "prioritized", "ardnem_updates_per_iteration", "agent_updates_per_iteration",
        "ardnem_batch_timesteps", "stage2_backend", "stage2_batch_episodes")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or SIT)
        # --- Stage I: ARDNEM (Table 10) ---
        self.ardnem_lr = 1e-4  # Table 10: learning rate 1e-4 (RMSprop)
        self.ardnem_updates = 20000  # Table 10: 20,000 training epochs (1 epoch = 1 update of 32 episodes)
        self.ensemble_size = 5  # Table 10: ensemble M = 5
        self.reward_hidden = 64  # Table 10: reward network hidden 64
        self.attention_hidden = 64  # Table 10: attention hidden 64
        # --- Stage II: DPER (Eq. 7, Table 11) ---
        self.alpha = 0.2  # Table 11: softmax temperature α = 0.2
        self.priority_range = (0.0, 20.0)  # Table 11 / §DPER: priorities linearly rescaled to [0, 20]
        # --- Stage III: agents (Table 11) ---
        self.beta = 0.1  # Table 11: CRR temperature β = 0.1
        self.eta = 1.0  # Table 11: uncertainty weight η = 1
        self.actor_lr = 5e-4  # Table 11: actor learning rate 5e-4 (RMSprop)
        self.critic_lr = 1e-4  # Table 11: critic learning rate 1e-4 (RMSprop)
        self.agent_updates = 15000  # Table 11: 15,000 training epochs
        self.target_update_interval = 100  # Table 11: target update interval d = 100
        self.critic_hidden = 32  # Table 11: critic hidden 32
        self.rnn_hidden = 64  # Table 11: RNN hidden 64
        self.uncertainty_floor = 1e-2  # not in the paper: û clamped from below (specs/sit_notes.md)
        # --- shared (Tables 10–11): batch 32 episodes, RMSprop, γ 0.99, clip 10 (the base's defaults) ---
        self.gamma = 0.99  # Table 11: γ = 0.99
        # --- ablations (Figure 4a/b, Appendix E.1) ---
        self.decomposition = "attention"  # "attention" | "none" (critic on r_tot) | "monotonic" (E.1)
        self.use_attention = True  # False: λ ≡ 1 (Figure 4a "w/o attention")
        self.ensemble = True  # False: M = 1, û ≡ 1 (Figure 4a "w/o ensemble")
        self.use_gat = True  # False: no global embedding in the critic (Figure 4a "w/o GAT")
        self.prioritized = True  # False: uniform sampling in Stage III (Figure 4b)
        # --- schedule / plumbing (not paper settings) ---
        self.ardnem_updates_per_iteration = 1000
        # Stage I batch: None = all real timesteps of `batch_size_episodes` uniformly drawn episodes
        # (specs/sit_notes.md); an int = that many timesteps drawn uniformly over all real steps.
        self.ardnem_batch_timesteps = None
        self.agent_updates_per_iteration = 500
        self.stage2_backend = "local"  # "local" | "ray_data" (Ray Data map_batches pass)
        self.stage2_batch_episodes = 256

    def validate_settings(self) -> None:
        self.check_positive(["ardnem_lr", "actor_lr", "critic_lr", "alpha", "beta", "eta", "uncertainty_floor"])
        self.check_int(["ardnem_updates", "agent_updates"], low=0)
        self.check_int(["ensemble_size", "reward_hidden", "attention_hidden", "critic_hidden", "rnn_hidden",
                        "target_update_interval", "ardnem_updates_per_iteration", "agent_updates_per_iteration",
                        "stage2_batch_episodes"])
        if self.ardnem_batch_timesteps is not None:
            self.check_int(["ardnem_batch_timesteps"])
        pr = self.priority_range
        if (not isinstance(pr, (list, tuple)) or len(pr) != 2
                or not all(isinstance(x, (int, float)) for x in pr) or not pr[0] < pr[1]):
            self.bad("priority_range", pr, "(low, high) with low < high, e.g. (0, 20)")
        if self.optimizer != "rmsprop":
            self.bad("optimizer", self.optimizer, "'rmsprop' (SIT Tables 10-11)")
        self.check_choice("decomposition", DECOMPOSITIONS)
        self.check_choice("stage2_backend", STAGE2_BACKENDS)
        self.check_bool(["use_attention", "ensemble", "use_gat", "prioritized"])

    # -- derived ---------------------------------------------------------------------------------
    @property
    def effective_ensemble_size(self) -> int:
        """M, or 1 for the "w/o ensemble" ablation (``ensemble=False``)."""
        return int(self.ensemble_size) if self.ensemble else 1

    @property
    def weight_mode(self) -> str:
        if self.decomposition == "monotonic":
            return "monotonic"
        return "attention" if self.use_attention else "none"

    def get_default_learner_class(self):
        from rllib_sit.algorithms.sit.torch.sit_torch_learner import SITTorchLearner

        return SITTorchLearner

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import SITAgentTorchRLModule

        obs_space, act_space = self.spaces(info)
        return RLModuleSpec(module_class=SITAgentTorchRLModule, observation_space=obs_space, action_space=act_space,
                            model_config=dict(self.env_model_config(info), rnn_hidden=self.rnn_hidden,
                                              critic_hidden=self.critic_hidden, use_gat=self.use_gat))

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import ARDNEMTorchRLModule

        obs_space, act_space = self.spaces(info)
        return {K.ARDNEM_MODULE_ID: RLModuleSpec(
            module_class=ARDNEMTorchRLModule, observation_space=obs_space, action_space=act_space,
            model_config=dict(self.env_model_config(info), ensemble_size=self.effective_ensemble_size,
                              reward_hidden=self.reward_hidden, attention_hidden=self.attention_hidden,
                              weight_mode=self.weight_mode))}


class SIT(OfflineMARLAlgorithm):
    """The three stages of SIT as phases of the shared base; see the module docstring."""

    progress_metrics = (K.ARDNEM_LOSS, K.CRITIC_LOSS, K.ACTOR_LOSS)

    @classmethod
    def get_default_config(cls) -> SITConfig:
        return SITConfig()

    def setup_algorithm(self) -> None:
        self.dper = None  # the individual-trajectory sampler actor, made in Stage II
        self.dper_summary: Dict[str, Dict[str, float]] = {}
        self.r_hat_mean_per_agent: Optional[List[float]] = None
        self.stage2_seconds: Optional[float] = None
        self.dper_restarts = 0  # DPER actors rebuilt after dying (see _rebuild_dper)
        self.agent_modules = list(self.config.agent_module_ids(self.env_info).values())

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        ardnem = cfg.ardnem_updates if cfg.decomposition != "none" else 0
        return [Phase(K.PHASE_ARDNEM, self._run_stage1, ardnem, cfg.ardnem_updates_per_iteration),
                Phase(K.PHASE_DPER, lambda n: self._run_stage2(), one_shot=True),
                Phase(K.PHASE_AGENTS, self._run_stage3, cfg.agent_updates, cfg.agent_updates_per_iteration)]

    # -- Stage I ---------------------------------------------------------------------------------
    def _ardnem_batch(self) -> Dict[str, Dict[str, np.ndarray]]:
        n_ts = self.config.ardnem_batch_timesteps
        if n_ts:
            k_all, t_all = self.store.filled_steps()
            pick = self.rng.integers(0, len(k_all), n_ts)
            flat = self.store.flat_steps(k_all[pick], t_all[pick])
        else:
            flat = self.store.flatten_filled(self.rng.integers(0, self.store.num_episodes,
                                                               self.config.batch_size_episodes))
        return {K.ARDNEM_MODULE_ID: {B.OBS: flat[S.OBS], B.ACTIONS: flat[S.ACTIONS], B.STATE: flat[S.STATE],
                                     B.REWARD: flat[S.REWARD]}}

    def _run_stage1(self, n: int):
        return self.update_loop(self._ardnem_batch, n)

    # -- Stage II --------------------------------------------------------------------------------
    def _ardnem_local(self):
        import torch

        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import build_ardnem

        spec = self.config.extra_module_specs(self.env_info)[K.ARDNEM_MODULE_ID]
        state = self.learner_group.get_state(components=f"learner/rl_module/{K.ARDNEM_MODULE_ID}")
        module_state = state["learner"]["rl_module"][K.ARDNEM_MODULE_ID]
        sd = {k[len("ardnem."):]: v for k, v in module_state.items() if k.startswith("ardnem.")}
        net = build_ardnem(spec.model_config)
        net.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in sd.items()})
        net.eval()
        return net, spec.model_config, sd

    def _run_stage2(self) -> None:
        from rllib_sit.algorithms.sit import stage2

        cfg = self.config
        t0 = time.time()
        decompose = cfg.decomposition != "none"
        if decompose and cfg.stage2_backend == "ray_data":
            _, mc, sd = self._ardnem_local()
            res = stage2.decompose_with_ray_data(self.dataset_path, mc, {k: np.asarray(v) for k, v in sd.items()},
                                                 cfg.gamma, self.store[S.EPISODE_ID], cfg.stage2_batch_episodes,
                                                 use_uncertainty=cfg.ensemble, decompose=decompose)
        else:
            net = self._ardnem_local()[0] if decompose else None
            res = stage2.decompose_episodes(net, self.store.columns, cfg.gamma, cfg.stage2_batch_episodes,
                                            use_uncertainty=cfg.ensemble, decompose=decompose)
        self.stage2_seconds = time.time() - t0
        probs, self.dper_summary = K.dper_distribution(res[stage2.PRIORITY], self.agent_modules, cfg.alpha,
                                                       tuple(cfg.priority_range), cfg.prioritized)
        self._start_dper()
        ray.get([self.dper.set_step_values.remote({K.REWARD_HAT: res[stage2.R_HAT], K.UNCERTAINTY: res[stage2.U_HAT]}),
                 self.dper.set_probabilities.remote(probs)])
        self._set_r_hat_stats(res[stage2.R_HAT])

    def _start_dper(self) -> None:
        if self.dper is None:
            seed = self.config.seed if not self.dper_restarts else [self.config.seed, self.dper_restarts]
            self.dper = self.own_actor(make_sampler_actor(IndividualTrajectorySampler, self.store.cache_dir,
                                                          self.agent_modules, seed=seed))

    def _set_r_hat_stats(self, r_hat: np.ndarray) -> None:
        filled = self.store[S.FILLED]
        n = max(1, int(filled.sum()))
        self.r_hat_mean_per_agent = [float(r_hat[..., i][filled].sum() / n) for i in range(r_hat.shape[-1])]

    # -- Stage III -------------------------------------------------------------------------------
    def _run_stage3(self, n: int):
        results = None
        pending = self.dper.sample.remote(self.config.batch_size_episodes)
        for i in range(n):
            try:
                sample = ray.get(pending)
            except ray.exceptions.RayActorError:
                self._rebuild_dper()
                sample = ray.get(self.dper.sample.remote(self.config.batch_size_episodes))
            if i + 1 < n:  # prefetch the next batch while this one trains (never past this iteration)
                pending = self.dper.sample.remote(self.config.batch_size_episodes)
            results = self.update_learners(sample)
        return results

    def _rebuild_dper(self) -> None:
        """The DPER actor died (its process was killed, its node lost): r̂, û and the Eq. 7
        probabilities are a deterministic function of the trained ARDNEM and the dataset, so
        Stage II runs again into a new actor. Its sampling RNG starts from ``(seed, restarts)``:
        the batches after a rebuild differ from an uninterrupted run's (checkpoints restore the
        exact stream)."""
        logger.warning("SIT: the DPER actor died; rebuilding it from the ARDNEM (Stage II again)")
        self._owned_actors = [a for a in self._owned_actors if a is not self.dper]
        self.dper = None
        self.dper_restarts += 1
        self._run_stage2()

    # -- metrics and state -----------------------------------------------------------------------
    def log_algorithm_metrics(self) -> None:
        m = self.metrics
        if self.stage2_seconds is not None:
            m.log_value((ALGORITHM_RESULTS, "stage2_seconds"), self.stage2_seconds, window=1)
        m.log_value((ALGORITHM_RESULTS, "dper_restarts"), float(self.dper_restarts), window=1)
        if self.r_hat_mean_per_agent is not None:
            for agent, v in zip(self.env_info.agents, self.r_hat_mean_per_agent):
                m.log_value((ALGORITHM_RESULTS, "r_hat_mean_per_agent", agent), v, window=1)
        for module, summary in self.dper_summary.items():
            for key, v in summary.items():
                m.log_value((ALGORITHM_RESULTS, "dper", module, key), v, window=1)

    def get_extra_state(self):
        return {"dper": ray.get(self.dper.get_state.remote()) if self.dper is not None else None,
                "dper_summary": self.dper_summary, "stage2_seconds": self.stage2_seconds,
                "dper_restarts": self.dper_restarts}

    def set_extra_state(self, state) -> None:
        self.dper_summary = state.get("dper_summary") or {}
        self.stage2_seconds = state.get("stage2_seconds")
        self.dper_restarts = int(state.get("dper_restarts", 0))
        if state.get("dper") is not None:
            self._start_dper()
            ray.get(self.dper.set_state.remote(state["dper"]))
            self._set_r_hat_stats(state["dper"]["step_values"][K.REWARD_HAT])
