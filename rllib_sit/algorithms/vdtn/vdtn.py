"""VD+TN: offline *decentralized* MARL with value deviation and transition normalization (Jiang &
Lu, "Offline Decentralized Multi-Agent Reinforcement Learning", papers/offline_decentralized_marl_vd_tn.md)
on three offline RL algorithms: ``VDTN_BCQ`` (the paper's MABCQ, §3.4), ``VDTN_CQL`` (its MACQL) and
``VDTN_TD3BC`` (its MATD3+BC).

Fully decentralized: one module per agent (``module_mapping="agent_id"``), each trained only on
its own transitions (o_i, a_i, r, o_i′, done) sliced from the dataset — no other agent's action
or observation ever reaches its learner. Per sample, the TD loss (Eq. 1) and the
policy-improvement term (Eq. 2) are weighted by λ_tn λ_vd:

* λ_vd = clip(1 + (V*(s′) − E V*(s′)) / |E V*(s′)|, 1 − ε, 1 + ε), E V*(s′) = (Q̂(s, a_i) − r)/γ
  from the target networks (§3.1, §3.4; ε = ``optimism``);
* λ_tn = ρ_N(μ¹)/ρ_N(μ²) from two VAEs on (s, a_i) and (s, a_i, s′) (§3.2, §3.4), or exactly
  1/P̂(s′|s, a_i) from counts (``tn_estimator="count"``, for tabular observations).

Phases: ``fit`` (Algorithm 1 line 4: the VAEs and BCQ's behaviour models; ``fit_updates``) then
``td`` (``td_updates``). Switches ``use_value_deviation`` / ``use_transition_normalization`` give
the paper's ablation rows (BCQ, BCQ w/ λ_vd, BCQ w/ λ_tn, MABCQ).

Usage::

    algo = (VDTNBCQConfig().environment("smac:8m")
            .training(dataset={"quality": "vdtn-medium", "episodes": 10000, "seed": 0}, optimism=0.99)
            .evaluation(evaluation_interval=5, evaluation_duration=32)
            .build_algo())
    algo.train()

See docs/algorithms/vdtn.md.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_sit.algorithms.common.algorithm import OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.vdtn import vdtn_learner as V


class VDTNConfig(OfflineMARLConfig):
    """Settings shared by the three VD+TN algorithms. Paper: Appendix B and Table 12.

    From the base: ``gamma`` (0.99, Appendix B), ``optimizer`` (Adam here), ``grad_clip`` (None
    here), ``seed``, evaluation (greedy, 32 episodes). ``lr`` is the Q-network learning rate.
    """

    use_value_deviation = Setting(True, 'λ_vd (§3.1); False: the "w/o λ_vd" ablation rows (Table 5)')
    use_transition_normalization = Setting(True, 'λ_tn (§3.2); False: the "w/o λ_tn" rows')
    optimism = Setting(0.9, 'ε, Appendix B: 0.99 SMAC, 0.9 MPE, 0.48-0.80 MuJoCo (tuned examples set them)')
    vd_terminal = Setting("outcome", "λ_vd without s′: the matrix game's reading (see value_deviation_weights)")
    vd_min_denominator = Setting(1e-6, 'floor of |E V*(s′)| (this package: division by ~0)')
    tn_estimator = Setting("vae", '§3.4\'s VAE latent-mean densities; "count": exact 1/P̂ (tabular)')
    tn_include_reward = Setting(True, 'this package: the outcome s′ of a transition includes r (matrix game)')
    vae_latent_dim = Setting(10, 'Table 12: VAE hidden space 10')
    vae_lr = Setting(1e-4, 'Table 12: learning rate of G 1e-4')
    vae_kl_weight = Setting(0.5, 'BCQ (Fujimoto et al. 2019): recon + 0.5 KL')
    hidden = Setting([256, 256], 'Appendix B: MLP units (256, 256) in SMAC and DG; (64, 64) in MuJoCo')
    batch_size = Setting(100, 'Appendix B: batch size 100 in SMAC and DG; 1024 in MuJoCo')
    fit_updates = Setting(10000, 'not in the paper: Algorithm 1 line 4 "fit the VAEs" (length unstated)')
    td_updates = Setting(100000, 'not in the paper (training length unstated)')
    updates_per_iteration = Setting(1000, 'schedule only')
    bootstrap_truncated = Setting(True, 'Time-limit ends are not terminations: bootstrap from o[length] there (the '
                                  "BCQ / TD3+BC code's not_done = 1 - terminal; MPE's DG and CN never terminate). "
                                  'False: y = r at the cut.')
    normalize_obs = Setting(False, '(o − mean) / (std + 1e-3) per agent over its own dataset, in every network '
                            "(TD3+BC's code does; the BCQ and CQL code do not): VDTN_TD3BC turns it on.")
    double_q = Setting(False, 'Eq. 1: π̂ induced by the target Q̂ (True: online arg max, discrete BCQ code)')
    agent_datasets = Setting(None, "The paper's per-agent datasets B_i: a folder of ``<agent>/`` datasets (what "
                             '``rllib-sit data generate --decentralize [independent]`` writes) or ``{agent: '
                             'path}``; None: slice the joint dataset.')

    algo_name = "VDTN"

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        self.module_mapping = "agent_id"  # fully decentralized: one module per agent (§2)
        self.optimizer = "adam"  # BCQ / CQL / TD3+BC code (Adam); the paper names none
        self.grad_clip = None  # BCQ / TD3+BC code: no clipping
        self.target_update_tau = 0.005  # BCQ / TD3: Polyak τ = 0.005 (the paper names none)
        self.target_update_interval = 1  # used only when target_update_tau is None (hard copies)

    def validate_settings(self) -> None:
        if self.module_mapping != "agent_id":
            self.bad("module_mapping", self.module_mapping, "'agent_id' (VD+TN is fully decentralized: one "
                     "module per agent, trained on its own data only)")
        self.check_bool(["use_value_deviation", "use_transition_normalization", "tn_include_reward", "double_q",
                         "bootstrap_truncated", "normalize_obs"])
        self.check_range("optimism", 0.0, 1.0)
        self.check_choice("vd_terminal", V.VD_TERMINAL)
        self.check_choice("tn_estimator", V.TN_ESTIMATORS)
        self.check_positive(["vd_min_denominator", "lr", "vae_lr", "vae_kl_weight"])
        self.check_int(["vae_latent_dim", "batch_size", "updates_per_iteration"])
        self.check_int(["fit_updates", "td_updates"], low=0)
        if not (isinstance(self.hidden, (list, tuple)) and self.hidden
                and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in self.hidden)):
            self.bad("hidden", self.hidden, "a non-empty list of positive ints, e.g. [256, 256]")
        if self.agent_datasets is not None and not (
                isinstance(self.agent_datasets, str)
                or (isinstance(self.agent_datasets, dict) and self.agent_datasets
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in self.agent_datasets.items()))):
            self.bad("agent_datasets", self.agent_datasets, "None, a folder of <agent>/ datasets or {agent: path}")

    # -- the paper's per-agent datasets ------------------------------------------------------------
    def agent_dataset_paths(self) -> Dict[str, str]:
        """``{agent: dataset path}`` of ``agent_datasets`` (empty when the joint dataset is sliced)."""
        if self.agent_datasets is None:
            return {}
        if isinstance(self.agent_datasets, dict):
            return dict(self.agent_datasets)
        import os

        root = self.agent_datasets
        if not os.path.isdir(root):
            self.bad("agent_datasets", root, "a folder holding one dataset folder per agent (<agent>/card.json)")
        paths = {d: os.path.join(root, d) for d in sorted(os.listdir(root))
                 if os.path.exists(os.path.join(root, d, "card.json"))}
        if not paths:
            self.bad("agent_datasets", root, "a folder holding one dataset folder per agent (<agent>/card.json)")
        return paths

    def dataset_path(self) -> str:
        paths = self.agent_dataset_paths()
        return next(iter(paths.values())) if paths else super().dataset_path()

    def dataset_info(self):
        """With ``agent_datasets``: the joint EnvInfo of the per-agent datasets (one agent each, same env)."""
        paths = self.agent_dataset_paths()
        if not paths:
            return super().dataset_info()
        import dataclasses

        from rllib_sit.data.episode_store import dataset_env_info

        infos = {a: dataset_env_info(p) for a, p in paths.items()}
        first = next(iter(infos.values()))
        for a, info in infos.items():
            if info.agents != [a]:
                self.bad("agent_datasets", paths[a], f"the dataset of agent {a!r} alone (its agents are {info.agents})")
            same = dataclasses.replace(info, agents=first.agents, agent_types=first.agent_types)
            if same != first:
                self.bad("agent_datasets", paths[a], f"a dataset of the same env as the others ({first.env_id}, "
                         f"obs_dim {first.obs_dim}, ...); got {info}")
        order = list(infos)
        if isinstance(self.env, str):  # the env's agent order (and every agent present)
            from rllib_sit.envs.registry import make_env

            env = make_env(self.env, **(self.env_config or {}))
            env_agents = list(env.info.agents)
            env.close()
            if sorted(env_agents) != sorted(order):
                self.bad("agent_datasets", self.agent_datasets, f"one dataset per agent of {self.env}: {env_agents}")
            order = env_agents
        return dataclasses.replace(first, agents=order, agent_types=[infos[a].agent_types[0] for a in order])

    @property
    def uses_tn_vae(self) -> bool:
        return self.use_transition_normalization and self.tn_estimator == "vae"

    def needs_fit(self) -> bool:
        """Whether the ``fit`` phase has anything to train (the density VAEs; BCQ's behaviour models)."""
        return self.uses_tn_vae

    def module_class(self, info):
        raise NotImplementedError

    def module_model_config(self, info) -> Dict:
        return dict(self.env_model_config(info), hidden=list(self.hidden), tn_vae=self.uses_tn_vae,
                    tn_include_reward=self.tn_include_reward, vae_latent_dim=self.vae_latent_dim,
                    double_q=self.double_q)

    def agent_module_spec(self, info, module_id, agents) -> RLModuleSpec:
        return self.module_spec(info, self.module_class(info), **self.module_model_config(info))


class VDTN(OfflineMARLAlgorithm):
    """The ``fit`` then ``td`` phases on per-agent uniform transitions (see the module docstring)."""

    progress_metrics = (V.TD_LOSS, V.LAMBDA_VD_MEAN, V.Q_MEAN)

    def setup_algorithm(self) -> None:
        cfg = self.config
        paths = cfg.agent_dataset_paths()
        if paths:  # the paper's B_i: one dataset (store, sampler) per agent
            from rllib_sit.data.episode_store import EpisodeStore

            self.env_info = cfg.dataset_info()
            stores = {a: EpisodeStore.open(p, validate=cfg.validate_dataset, cache_root=cfg.column_cache_dir)
                      for a, p in paths.items()}
            samplers = {a: V.AgentTransitionSampler(stores[a].columns, [a], seed=cfg.seed + i,
                                                    bootstrap_truncated=cfg.bootstrap_truncated)
                        for i, a in enumerate(self.env_info.agents)}
            self.sampler = V.PerAgentSamplers(samplers)
        else:  # one joint dataset, each agent's columns sliced out
            samplers = {None: V.AgentTransitionSampler(self.store.columns, cfg.agent_module_order(self.env_info),
                                                       seed=cfg.seed, bootstrap_truncated=cfg.bootstrap_truncated)}
            self.sampler = samplers[None]
        if cfg.normalize_obs:
            self._set_obs_stats(samplers.values())
        if cfg.use_transition_normalization and cfg.tn_estimator == "count":
            for s in samplers.values():
                s.set_step_values({V.TN_LOG_WEIGHT: V.count_transition_log_weights(
                    s, include_reward=cfg.tn_include_reward)})

    def _set_obs_stats(self, samplers) -> None:
        """``normalize_obs``: every agent's module normalises by its own dataset's moments (TD3+BC's
        ``(s − mean) / (std + 1e-3)``), set on the learners' modules; evaluation syncs them."""
        stats = {}
        for s in samplers:
            for m in s.agent_modules:
                mean, std = s.obs_moments(s.index[m])
                stats[m] = (mean, std + V.OBS_STD_FLOOR)

        def apply(learner):
            for m, (mean, std) in stats.items():
                learner.module[m].unwrapped().set_obs_stats(mean, std)

        self.learner_group.foreach_learner(apply)

    def build_phases(self) -> List[Phase]:
        cfg = self.config
        self._td_batches = 0  # TD batches drawn so far (TD3+BC's actor delay; checkpointed)
        fit = cfg.fit_updates if cfg.needs_fit() else 0
        return [Phase(V.PHASE_FIT, lambda n: self.update_loop(lambda: self._batch(False), n), fit,
                      cfg.updates_per_iteration),
                Phase(V.PHASE_TD, lambda n: self.update_loop(lambda: self._batch(True), n), cfg.td_updates,
                      cfg.updates_per_iteration)]

    def _batch(self, td: bool):
        batch = self.sampler.sample(self.config.batch_size)
        if td:
            delay = int(getattr(self.config, "policy_delay", 1))
            actor = float(self._td_batches % delay == 0)  # TD3's delayed actor: every `delay`-th TD batch
            self._td_batches += 1
            for b in batch.values():
                b[V.TD_PHASE] = np.ones(len(b[V.REWARD]), np.float32)
                if delay > 1:
                    b[V.ACTOR_UPDATE] = np.full(len(b[V.REWARD]), actor, np.float32)
        return batch

    def get_extra_state(self):
        return {"td_batches": self._td_batches}

    def set_extra_state(self, state) -> None:
        self._td_batches = int(state.get("td_batches", 0))


# ---------------------------------------------------------------------------------------------
# VDTN_BCQ (the paper's MABCQ)
# ---------------------------------------------------------------------------------------------

class VDTNBCQConfig(VDTNConfig):
    """MABCQ (§3.4, Algorithm 1). Table 12, BCQ columns."""

    bcq_threshold = Setting(0.6, 'Table 12: threshold 0.6 (discrete BCQ: μ(a|s)/max μ ≥ τ)')
    generator_lr = Setting(1e-4, 'Table 12: learning rate of G 1e-4 (G¹; discrete: the behaviour model)')
    perturb_lr = Setting(1e-4, 'Table 12: learning rate of ξ 1e-4')
    perturbation_scale = Setting(0.05, 'Table 12: Φ = 0.05 (actions scaled to [-1, 1])')
    num_sampled_actions = Setting(10, 'Table 12: n = 10')
    algo_name = "VDTN_BCQ"

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or VDTN_BCQ)
        self.lr = 1e-4  # Table 12: learning rate of Q, discrete BCQ 1e-4 (continuous BCQ 1e-3: MuJoCo examples)

    def validate_settings(self) -> None:
        super().validate_settings()
        self.check_range("bcq_threshold", 0.0, 1.0)
        self.check_range("perturbation_scale", 0.0, 1.0)
        self.check_positive(["generator_lr", "perturb_lr"])
        self.check_int(["num_sampled_actions"])

    def needs_fit(self) -> bool:
        return True  # the behaviour model / G¹ is always fitted first

    def get_default_learner_class(self):
        from rllib_sit.algorithms.vdtn.torch.vdtn_torch_learner import VDTNBCQTorchLearner

        return VDTNBCQTorchLearner

    def module_class(self, info):
        from rllib_sit.algorithms.vdtn.torch import default_vdtn_torch_rl_module as M

        return M.VDTNDiscreteBCQModule if info.discrete else M.VDTNContinuousBCQModule

    def module_model_config(self, info) -> Dict:
        return dict(super().module_model_config(info), bcq_threshold=self.bcq_threshold,
                    perturbation_scale=self.perturbation_scale, num_sampled_actions=self.num_sampled_actions)


class VDTN_BCQ(VDTN):  # noqa: N801 - the registered run name
    progress_metrics = VDTN.progress_metrics + (V.BEHAVIOUR_LOSS, V.FILTER_KEPT)

    @classmethod
    def get_default_config(cls) -> VDTNBCQConfig:
        return VDTNBCQConfig()


# ---------------------------------------------------------------------------------------------
# VDTN_CQL (the paper's MACQL)
# ---------------------------------------------------------------------------------------------

class VDTNCQLConfig(VDTNConfig):
    """MACQL (§5.3). Table 12, CQL column."""

    cql_alpha = Setting(0.2, "Table 12: α = 0.2 (CQL's conservative weight)")
    actor_lr = Setting(1e-4, 'Table 12: learning rate of π (CQL) 1e-4 (continuous actions)')
    entropy_coeff = Setting(0.2, "not in Table 12: SAC's fixed temperature 0.2 (continuous actor)")
    num_sampled_actions = Setting(10, 'CQL code: 10 uniform + 10 policy actions (continuous)')
    algo_name = "VDTN_CQL"

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or VDTN_CQL)
        self.lr = 1e-4  # Table 12: learning rate of Q (CQL) 1e-4

    def validate_settings(self) -> None:
        super().validate_settings()
        self.check_positive(["actor_lr"])
        self.check_range("cql_alpha", 0.0, 1e6)
        self.check_range("entropy_coeff", 0.0, 1e6)
        self.check_int(["num_sampled_actions"])

    def get_default_learner_class(self):
        from rllib_sit.algorithms.vdtn.torch.vdtn_torch_learner import VDTNCQLTorchLearner

        return VDTNCQLTorchLearner

    def module_class(self, info):
        from rllib_sit.algorithms.vdtn.torch import default_vdtn_torch_rl_module as M

        return M.VDTNDiscreteCQLModule if info.discrete else M.VDTNContinuousCQLModule

    def module_model_config(self, info) -> Dict:
        return dict(super().module_model_config(info), num_sampled_actions=self.num_sampled_actions)


class VDTN_CQL(VDTN):  # noqa: N801
    progress_metrics = VDTN.progress_metrics + (V.CQL_PENALTY,)

    @classmethod
    def get_default_config(cls) -> VDTNCQLConfig:
        return VDTNCQLConfig()


# ---------------------------------------------------------------------------------------------
# VDTN_TD3BC (the paper's MATD3+BC)
# ---------------------------------------------------------------------------------------------

class VDTNTD3BCConfig(VDTNConfig):
    """MATD3+BC (§5.4-5.5). Table 12, TD3+BC column; TD3 (Fujimoto et al. 2018) for the rest.
    Continuous actions only: building on a discrete-action dataset raises ``ValueError``."""

    actor_lr = Setting(3e-4, 'Table 12: learning rate of π (TD3+BC) 3e-4')
    td3_alpha = Setting(2.5, "Table 12: λ = 2.5 (TD3+BC's α: κ = α / mean |Q|)")
    policy_noise = Setting(0.2, 'TD3: target policy smoothing σ = 0.2 (actions in [-1, 1])')
    noise_clip = Setting(0.5, 'TD3: noise clipped at 0.5')
    policy_delay = Setting(2, 'TD3: actor updated every 2 critic updates')
    bc_units = Setting("env", "The BC term (π(s) − a)² in the env's action units, averaged over action dimensions: "
                       "the TD3+BC code's F.mse_loss(max_action·tanh, a) (DG's speeds are in [-0.1, 0.1]: a 100x "
                       'weaker constraint than in [-1, 1]). "unit": in the [-1, 1] scale of the actor\'s tanh.')
    algo_name = "VDTN_TD3BC"
    action_spaces = ("continuous",)  # the base rejects a discrete dataset before building modules
    action_space_hint = ("TD3+BC differentiates a deterministic actor through the critic; use VDTN_BCQ or "
                         "VDTN_CQL for discrete actions")

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or VDTN_TD3BC)
        self.lr = 3e-4  # Table 12: learning rate of Q (TD3+BC) 3e-4
        self.normalize_obs = True  # TD3+BC's code: states normalised by the dataset's mean and std

    def validate_settings(self) -> None:
        super().validate_settings()
        self.check_positive(["actor_lr", "td3_alpha"])
        self.check_range("policy_noise", 0.0, 10.0)
        self.check_range("noise_clip", 0.0, 10.0)
        self.check_int(["policy_delay"])
        self.check_choice("bc_units", ("env", "unit"))

    def get_default_learner_class(self):
        from rllib_sit.algorithms.vdtn.torch.vdtn_torch_learner import VDTNTD3BCTorchLearner

        return VDTNTD3BCTorchLearner

    def module_class(self, info):
        from rllib_sit.algorithms.vdtn.torch import default_vdtn_torch_rl_module as M

        return M.VDTNTD3BCModule

    def module_model_config(self, info) -> Dict:
        return dict(super().module_model_config(info), policy_noise=self.policy_noise, noise_clip=self.noise_clip)


class VDTN_TD3BC(VDTN):  # noqa: N801
    progress_metrics = VDTN.progress_metrics + (V.ACTOR_LOSS,)

    @classmethod
    def get_default_config(cls) -> VDTNTD3BCConfig:
        return VDTNTD3BCConfig()
