"""SIT ("Learning from Good Trajectories in Offline Multi-Agent RL", Tian et al., AAAI 2023) as an
RLlib (new API stack) offline Algorithm.

Stage I   ARDNEM (Eq. 1–3) through the LearnerGroup, ``ardnem_updates`` updates spread over
          iterations (``ardnem_updates_per_iteration`` per ``train()``).
Stage II  once: r̂, û, p̂ for every (episode, agent) (Eq. 4–7) -> DPER Ray actor (sum tree per type).
Stage III ``agent_updates`` actor/critic updates (Eq. 8–10) on DPER samples through the LearnerGroup.

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
from typing_extensions import Self

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils import force_list
from ray.rllib.utils.metrics import LEARNER_RESULTS

from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.algorithms.sit.evaluation import SITEvaluationCallback
from rllib_sit.data import schema as S
from rllib_sit.algorithms.common.mapping import AgentModuleMapping as AgentTypeMapping

logger = logging.getLogger(__name__)

DECOMPOSITIONS = ("attention", "none", "monotonic")
STAGE2_BACKENDS = ("local", "ray_data")
SIT_STATE_KEY = "sit"


class SITConfig(AlgorithmConfig):
    """Configuration of :class:`SIT`; every default is the paper's value (Tables 10–11)."""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or SIT)
        self._is_online = False  # pure offline: no EnvRunners are created for training
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
        # --- shared (Tables 10–11) ---
        self.batch_size_episodes = 32  # Tables 10–11: batch size 32 (episodes)
        self.optimizer = "rmsprop"  # Tables 10–11: RMSprop
        self.gamma = 0.99  # Table 11: γ = 0.99
        self.grad_clip = 10.0  # Tables 10–11: gradient clipping 10
        self.grad_clip_by = "global_norm"
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
        self.dataset = None  # e.g. {"quality": "low", "episodes": 10000, "seed": 0} -> ensure_dataset
        self.column_cache_dir = None  # memory-mapped column cache root (None: offline_data/cache/columns)
        self.num_torch_threads = None  # torch intra-op threads of the learner process (None: torch/Ray default)
        self.validate_dataset = "full"  # read_dataset(validate=...) on setup
        # Evaluation: RLlib's evaluation EnvRunner(s) on the registered env (a local one by
        # default), greedy actors, team return statistics + win rate (SITEvaluationCallback).
        self.evaluation_duration = 32
        self.evaluation_duration_unit = "episodes"
        self.evaluation_config = {"explore": False}
        self.callbacks_class = SITEvaluationCallback
        # RLlib's env checker steps the env with random actions that ignore the action masks, which
        # the SMAC env rejects ("action 8 of agent 's1' is not available"); the envs have their own tests.
        self.disable_env_checking = True
        self.evaluation_interval = None
        self.num_env_runners = 0
        self.seed = 0

    @property
    def is_offline(self) -> bool:  # noqa: D401
        # SIT reads its multi-agent dataset itself; RLlib's OfflineData refuses multi-agent episodes.
        return False

    @property
    def is_multi_agent(self) -> bool:  # noqa: D401
        # One module per agent type (ids from the dataset's EnvInfo), not RLlib's `policies`.
        return True

    def training(self, *, ardnem_lr=NotProvided, ardnem_updates=NotProvided, ensemble_size=NotProvided,
                 reward_hidden=NotProvided, attention_hidden=NotProvided, alpha=NotProvided,
                 priority_range=NotProvided, beta=NotProvided, eta=NotProvided, actor_lr=NotProvided,
                 critic_lr=NotProvided, agent_updates=NotProvided, target_update_interval=NotProvided,
                 critic_hidden=NotProvided, rnn_hidden=NotProvided, uncertainty_floor=NotProvided,
                 batch_size_episodes=NotProvided, optimizer=NotProvided, decomposition=NotProvided,
                 use_attention=NotProvided, ensemble=NotProvided, use_gat=NotProvided, prioritized=NotProvided,
                 ardnem_updates_per_iteration=NotProvided, agent_updates_per_iteration=NotProvided,
                 ardnem_batch_timesteps=NotProvided,
                 stage2_backend=NotProvided, stage2_batch_episodes=NotProvided, dataset=NotProvided,
                 validate_dataset=NotProvided, column_cache_dir=NotProvided, num_torch_threads=NotProvided,
                 **kwargs) -> Self:
        super().training(**kwargs)
        for name, value in list(locals().items()):
            if name in ("self", "kwargs", "__class__") or value is NotProvided:
                continue
            setattr(self, name, value)
        return self

    def validate(self) -> None:
        super().validate()

        def bad(name, value, expected):
            raise ValueError(f"SITConfig: {name}={value!r} is invalid; expected {expected}")

        for name in ("ardnem_lr", "actor_lr", "critic_lr", "alpha", "beta", "eta", "uncertainty_floor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                bad(name, v, "a number > 0")
        for name in ("ardnem_updates", "agent_updates"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(name, v, "an int >= 0")
        for name in ("ensemble_size", "reward_hidden", "attention_hidden", "critic_hidden", "rnn_hidden",
                     "batch_size_episodes", "target_update_interval", "ardnem_updates_per_iteration",
                     "agent_updates_per_iteration", "stage2_batch_episodes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                bad(name, v, "an int >= 1")
        if self.ardnem_batch_timesteps is not None and (not isinstance(self.ardnem_batch_timesteps, int)
                                                        or self.ardnem_batch_timesteps < 1):
            bad("ardnem_batch_timesteps", self.ardnem_batch_timesteps, "None or an int >= 1")
        if not (0.0 <= float(self.gamma) <= 1.0):
            bad("gamma", self.gamma, "a number in [0, 1]")
        pr = self.priority_range
        if (not isinstance(pr, (list, tuple)) or len(pr) != 2
                or not all(isinstance(x, (int, float)) for x in pr) or not pr[0] < pr[1]):
            bad("priority_range", pr, "(low, high) with low < high, e.g. (0, 20)")
        if str(self.optimizer).lower() != "rmsprop":
            bad("optimizer", self.optimizer, "'rmsprop' (Tables 10-11; other optimizers are not implemented)")
        if self.decomposition not in DECOMPOSITIONS:
            bad("decomposition", self.decomposition, f"one of {DECOMPOSITIONS}")
        if self.stage2_backend not in STAGE2_BACKENDS:
            bad("stage2_backend", self.stage2_backend, f"one of {STAGE2_BACKENDS}")
        for name in ("use_attention", "ensemble", "use_gat", "prioritized"):
            if not isinstance(getattr(self, name), bool):
                bad(name, getattr(self, name), "True or False")
        if self.grad_clip is not None and not float(self.grad_clip) > 0:
            bad("grad_clip", self.grad_clip, "a number > 0 or None")
        if self.dataset is not None and not isinstance(self.dataset, dict):
            bad("dataset", self.dataset, "a dict like {'quality': 'low', 'episodes': 10000, 'seed': 0}")
        if self.num_torch_threads is not None and (not isinstance(self.num_torch_threads, int)
                                                   or isinstance(self.num_torch_threads, bool)
                                                   or self.num_torch_threads < 1):
            bad("num_torch_threads", self.num_torch_threads, "None or an int >= 1")
        if self.column_cache_dir is not None and not isinstance(self.column_cache_dir, str):
            bad("column_cache_dir", self.column_cache_dir, "None or a folder path string")
        if self.validate_dataset not in ("full", "schema", "none"):
            bad("validate_dataset", self.validate_dataset, "'full', 'schema' or 'none'")
        if not self.ensemble and self.ensemble_size != 1:
            self.ensemble_size = 1  # "w/o ensemble": a single reward network
        # Agents map to the module of their type unless the user gave a policy_mapping_fn.
        if isinstance(self.env, str) and (self.policy_mapping_fn is AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN
                                          or isinstance(self.policy_mapping_fn, AgentTypeMapping)):
            self.policy_mapping_fn = AgentTypeMapping(self.env, self.env_config)
        # Greedy evaluation unless the evaluation_config says otherwise (a user's dict replaces ours).
        if not self.in_evaluation and (self.evaluation_config is None or isinstance(self.evaluation_config, dict)):
            self.evaluation_config = {"explore": False, **(self.evaluation_config or {})}
        # RLlib's episode metrics (e.g. episode_len_mean) cover the last `metrics_num_episodes_for_smoothing`
        # episodes of an EnvRunner; the only EnvRunners here are evaluation ones: cover all of an evaluation.
        if isinstance(self.evaluation_duration, int) and self.evaluation_duration_unit == "episodes":
            self.metrics_num_episodes_for_smoothing = max(self.metrics_num_episodes_for_smoothing,
                                                          self.evaluation_duration)
        # The evaluation metrics (team return, win rate) need SIT's callback beside the user's.
        callbacks = force_list(self.callbacks_class)
        if not any(isinstance(c, type) and issubclass(c, SITEvaluationCallback) for c in callbacks):
            self.callbacks_class = [SITEvaluationCallback] + callbacks

    # -- derived ---------------------------------------------------------------------------------
    @property
    def effective_ensemble_size(self) -> int:
        return int(self.ensemble_size) if self.ensemble else 1

    @property
    def weight_mode(self) -> str:
        if self.decomposition == "monotonic":
            return "monotonic"
        return "attention" if self.use_attention else "none"

    def get_default_learner_class(self):
        from rllib_sit.algorithms.sit.torch.sit_torch_learner import SITTorchLearner

        return SITTorchLearner

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only=False, **kwargs) -> MultiRLModuleSpec:
        from rllib_sit.algorithms.sit.data import dataset_env_info, resolve_dataset_path

        info = dataset_env_info(resolve_dataset_path(self))
        spec = build_sit_module_spec(info, self)
        if inference_only:  # EnvRunners: the agents' actors only (ARDNEM is learner-only)
            spec.remove_modules([m for m, s in spec.rl_module_specs.items() if s.learner_only])
            for s in spec.rl_module_specs.values():
                s.inference_only = True
        return spec

    def get_default_rl_module_spec(self) -> MultiRLModuleSpec:
        return self.get_multi_rl_module_spec()

    @property
    def _model_config_auto_includes(self):
        return {}


def build_sit_module_spec(info, config: SITConfig) -> MultiRLModuleSpec:
    """One agent module per agent type (module id = type name) + the ARDNEM module."""
    import gymnasium as gym

    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import (
        ARDNEMTorchRLModule, SITAgentTorchRLModule)

    from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY

    # The agents' observation space on the RLlib env (RLlibCoopEnv): {"obs"(, "action_mask")}.
    obs_spaces = {OBS_KEY: gym.spaces.Box(-np.inf, np.inf, (info.obs_dim,), np.float32)}
    if info.discrete:
        obs_spaces[ACTION_MASK_KEY] = gym.spaces.Box(0.0, 1.0, (info.n_actions,), np.float32)
        act_space = gym.spaces.Discrete(info.n_actions)
    else:
        act_space = gym.spaces.Box(info.action_low, info.action_high, (info.act_dim,), np.float32)
    obs_space = gym.spaces.Dict(obs_spaces)
    common = dict(obs_dim=info.obs_dim, n_agents=info.n_agents, discrete=info.discrete, n_actions=info.n_actions,
                  act_dim=info.act_dim, action_low=info.action_low, action_high=info.action_high)
    specs = {}
    for t in info.type_names():
        specs[t] = RLModuleSpec(module_class=SITAgentTorchRLModule, observation_space=obs_space,
                                action_space=act_space,
                                model_config=dict(common, rnn_hidden=config.rnn_hidden,
                                                  critic_hidden=config.critic_hidden, use_gat=config.use_gat))
    specs[K.ARDNEM_MODULE_ID] = RLModuleSpec(
        module_class=ARDNEMTorchRLModule, observation_space=obs_space, action_space=act_space, learner_only=True,
        model_config=dict(common, state_dim=info.state_dim, ensemble_size=config.effective_ensemble_size,
                          reward_hidden=config.reward_hidden, attention_hidden=config.attention_hidden,
                          weight_mode=config.weight_mode))
    return MultiRLModuleSpec(rl_module_specs=specs)


class SIT(Algorithm):
    """The three stages of SIT on RLlib's LearnerGroup; see the module docstring."""

    @classmethod
    def get_default_config(cls) -> SITConfig:
        return SITConfig()

    @classmethod
    def _should_create_evaluation_env_runners(cls, eval_config) -> bool:
        # Always (given an env): RLlib creates them only with an evaluation_interval, but
        # `algo.evaluate()` and `rllib evaluate` must work on any SIT (there are no training
        # EnvRunners to fall back on). evaluation_num_env_runners=0: one local EnvRunner.
        return bool(eval_config.env)

    @classmethod
    def default_resource_request(cls, config):
        from ray.tune.execution.placement_groups import PlacementGroupFactory

        cf = config if isinstance(config, AlgorithmConfig) else cls.get_default_config().update_from_dict(config)
        bundles = [{"CPU": float(cf.num_cpus_for_main_process or 1)}]
        # Remote evaluation EnvRunner i takes bundle i (EnvRunnerGroup's pg_offset is 0): right after the main one.
        for _ in range(int(cf.evaluation_num_env_runners or 0)):
            bundles.append({"CPU": float(cf.num_cpus_per_env_runner), "GPU": float(cf.num_gpus_per_env_runner or 0)})
        per_learner = cf.num_cpus_per_learner if cf.num_cpus_per_learner != "auto" else 1
        for _ in range(int(cf.num_learners or 0)):
            bundles.append({"CPU": float(per_learner), "GPU": float(cf.num_gpus_per_learner or 0)})
        return PlacementGroupFactory(bundles, strategy=cf.placement_strategy)

    # ------------------------------------------------------------------------------------------
    def setup(self, config) -> None:
        from rllib_sit.algorithms.sit.data import open_episode_columns, resolve_dataset_path
        from rllib_sit.envs.registry import register_rllib_envs

        # The evaluation EnvRunner creates config.env through Tune's registry: make the package's
        # "family:scenario" ids resolvable without asking users to call rllib_sit.register_all().
        register_rllib_envs()
        # Find (or generate) the dataset before RLlib's setup builds the evaluation EnvRunners and
        # the learners, whose module specs come from its metadata.
        self.dataset_path = resolve_dataset_path(config)
        super().setup(config)

        cfg = self.config
        if cfg.num_torch_threads is not None:
            import torch

            torch.set_num_threads(int(cfg.num_torch_threads))
        t0 = time.time()
        # Memory maps of the dataset's column cache: the DPER actor opens the same files, so the
        # episodes exist once (in the OS page cache), whatever the dataset size.
        info, self.episodes, self._columns_dir = open_episode_columns(
            self.dataset_path, validate=cfg.validate_dataset, cache_root=cfg.column_cache_dir, progress=True)
        self.env_info = info
        self.num_episodes = int(self.episodes[S.FILLED].shape[0])
        logger.info("SIT: loaded %d episodes from %s in %.1fs", self.num_episodes, self.dataset_path, time.time() - t0)
        self.rng = np.random.default_rng(cfg.seed)
        self.stage = K.STAGE_ARDNEM if cfg.decomposition != "none" and cfg.ardnem_updates > 0 else K.STAGE_DPER
        self.ardnem_updates_done = 0
        self.agent_updates_done = 0
        self.dper = None
        self.dper_summary: Dict[str, Dict[str, float]] = {}
        self.r_hat_mean_per_agent: Optional[List[float]] = None
        self.stage2_seconds: Optional[float] = None

    # -- Stage I ---------------------------------------------------------------------------------
    def _ardnem_batch(self) -> MultiAgentBatch:
        from rllib_sit.algorithms.sit.data import flatten_filled

        n_ts = self.config.ardnem_batch_timesteps
        if n_ts:
            if getattr(self, "_filled_steps", None) is None:
                self._filled_steps = np.nonzero(self.episodes[S.FILLED])
            pick = self.rng.integers(0, len(self._filled_steps[0]), n_ts)
            k, t = self._filled_steps[0][pick], self._filled_steps[1][pick]
            ep = self.episodes
            flat = {S.OBS: ep[S.OBS][k, t], S.ACTIONS: ep[S.ACTIONS][k, t], S.STATE: ep[S.STATE][k, t],
                    S.REWARD: ep[S.REWARD][k, t].astype(np.float32)}
        else:
            idx = self.rng.integers(0, self.num_episodes, self.config.batch_size_episodes)
            flat = flatten_filled(self.episodes, idx)
        b = SampleBatch({K.OBS: flat[S.OBS], K.ACTIONS: flat[S.ACTIONS], K.STATE: flat[S.STATE],
                         K.REWARD_TOT: flat[S.REWARD]})
        return MultiAgentBatch({K.ARDNEM_MODULE_ID: b}, env_steps=len(b))

    def _run_stage1(self) -> None:
        n = min(self.config.ardnem_updates_per_iteration, self.config.ardnem_updates - self.ardnem_updates_done)
        results = None
        for _ in range(n):
            results = self.learner_group.update(batch=self._ardnem_batch())
            self.ardnem_updates_done += 1
        if results is not None:
            self.metrics.aggregate(results, key=LEARNER_RESULTS)
        if self.ardnem_updates_done >= self.config.ardnem_updates:
            self.stage = K.STAGE_DPER

    # -- Stage II --------------------------------------------------------------------------------
    def _ardnem_local(self):
        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import build_ardnem

        spec = build_sit_module_spec(self.env_info, self.config).rl_module_specs[K.ARDNEM_MODULE_ID]
        state = self.learner_group.get_state(components=f"learner/rl_module/{K.ARDNEM_MODULE_ID}")
        module_state = state["learner"]["rl_module"][K.ARDNEM_MODULE_ID]
        sd = {k[len("ardnem."):]: v for k, v in module_state.items() if k.startswith("ardnem.")}
        net = build_ardnem(spec.model_config)
        import torch

        net.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in sd.items()})
        net.eval()
        return net, spec.model_config, sd

    def _run_stage2(self) -> None:
        from rllib_sit.algorithms.sit import stage2
        from rllib_sit.replay.dper import make_dper_actor

        cfg = self.config
        t0 = time.time()
        decompose = cfg.decomposition != "none"
        if decompose and cfg.stage2_backend == "ray_data":
            _, mc, sd = self._ardnem_local()
            res = stage2.decompose_with_ray_data(self.dataset_path, mc, {k: np.asarray(v) for k, v in sd.items()},
                                                 cfg.gamma, self.episodes[S.EPISODE_ID], cfg.stage2_batch_episodes,
                                                 use_uncertainty=cfg.ensemble, decompose=decompose)
        else:
            net = self._ardnem_local()[0] if decompose else None
            res = stage2.decompose_episodes(net, self.episodes, cfg.gamma, cfg.stage2_batch_episodes,
                                            use_uncertainty=cfg.ensemble, decompose=decompose)
        self.stage2_seconds = time.time() - t0
        if self.dper is None:
            self.dper = make_dper_actor(self._columns_dir, self.env_info.agent_types, seed=cfg.seed)
        self.dper_summary = ray.get(self.dper.load.remote(res[stage2.R_HAT], res[stage2.U_HAT], res[stage2.PRIORITY],
                                                          cfg.alpha, tuple(cfg.priority_range), cfg.prioritized))
        self._set_r_hat_stats(res[stage2.R_HAT])
        self.stage = K.STAGE_AGENTS if cfg.agent_updates > 0 else K.STAGE_DONE

    def _set_r_hat_stats(self, r_hat: np.ndarray) -> None:
        filled = self.episodes[S.FILLED]
        n = max(1, int(filled.sum()))
        self.r_hat_mean_per_agent = [float(r_hat[..., i][filled].sum() / n) for i in range(r_hat.shape[-1])]

    # -- Stage III -------------------------------------------------------------------------------
    def _agent_batch(self, sample: Dict[str, Dict[str, np.ndarray]]) -> MultiAgentBatch:
        pol = {t: SampleBatch(dict(b)) for t, b in sample.items()}
        return MultiAgentBatch(pol, env_steps=sum(len(b) for b in pol.values()))

    def _run_stage3(self) -> None:
        cfg = self.config
        n = min(cfg.agent_updates_per_iteration, cfg.agent_updates - self.agent_updates_done)
        results = None
        pending = self.dper.sample.remote(cfg.batch_size_episodes) if n > 0 else None
        for i in range(n):
            sample = ray.get(pending)
            if i + 1 < n:  # prefetch the next batch while this one trains
                pending = self.dper.sample.remote(cfg.batch_size_episodes)
            results = self.learner_group.update(batch=self._agent_batch(sample))
            self.agent_updates_done += 1
        if results is not None:
            self.metrics.aggregate(results, key=LEARNER_RESULTS)
        if self.agent_updates_done >= cfg.agent_updates:
            self.stage = K.STAGE_DONE

    # -- the iteration ---------------------------------------------------------------------------
    def training_step(self) -> None:
        t0 = time.time()
        if self.stage == K.STAGE_ARDNEM:
            self._run_stage1()
        if self.stage == K.STAGE_DPER:
            self._run_stage2()
        elif self.stage == K.STAGE_AGENTS:
            self._run_stage3()
        self._log_sit_metrics(time.time() - t0)

    def _log_sit_metrics(self, seconds: float) -> None:
        m = {
            K.STAGE: float(self.stage),
            "stage_name": K.STAGE_NAMES[self.stage],
            "ardnem_updates_done": float(self.ardnem_updates_done),
            "agent_updates_done": float(self.agent_updates_done),
            "training_step_seconds": seconds,
        }
        if self.stage2_seconds is not None:
            m["stage2_seconds"] = self.stage2_seconds
        if self.r_hat_mean_per_agent is not None:
            m["r_hat_mean_per_agent"] = {a: v for a, v in zip(self.env_info.agents, self.r_hat_mean_per_agent)}
        if self.dper_summary:
            m["dper"] = self.dper_summary
        self._sit_results = m

    def _compile_iteration_results(self, *, train_results, eval_results):
        from ray.rllib.utils.metrics import EVALUATION_RESULTS

        results = super()._compile_iteration_results(train_results=train_results, eval_results=eval_results)
        results[SIT_STATE_KEY] = dict(getattr(self, "_sit_results", {}))
        # In an iteration without evaluation, RLlib's reduced metrics still carry the evaluation
        # EnvRunner's own statistics (episode_return_* summed over the agents, N times the team
        # return, which SITEvaluationCallback replaces only in evaluating iterations). Report the
        # last evaluation's team numbers instead, and nothing before the first evaluation.
        if eval_results:
            self._last_evaluation = results.get(EVALUATION_RESULTS)
        elif getattr(self, "_last_evaluation", None) is not None:
            results[EVALUATION_RESULTS] = self._last_evaluation
        else:
            results.pop(EVALUATION_RESULTS, None)
        return results

    # -- checkpointing ---------------------------------------------------------------------------
    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        state[SIT_STATE_KEY] = {
            "stage": self.stage,
            "ardnem_updates_done": self.ardnem_updates_done,
            "agent_updates_done": self.agent_updates_done,
            "rng": self.rng.bit_generator.state,
            "dper": ray.get(self.dper.get_state.remote()) if self.dper is not None else None,
            "dper_summary": self.dper_summary,
            "stage2_seconds": self.stage2_seconds,
        }
        return state

    def set_state(self, state) -> None:
        # Algorithm.set_state syncs weights to the training EnvRunners, which an offline algorithm
        # doesn't have (env_runner_group is None); only the evaluation EnvRunners get them here.
        from ray.rllib.core import COMPONENT_LEARNER_GROUP, COMPONENT_METRICS_LOGGER
        from ray.tune.result import TRAINING_ITERATION

        if COMPONENT_LEARNER_GROUP in state:
            self.learner_group.set_state(state[COMPONENT_LEARNER_GROUP])
            self._sync_eval_weights()
        if COMPONENT_METRICS_LOGGER in state:
            self.metrics.set_state(state[COMPONENT_METRICS_LOGGER])
        if TRAINING_ITERATION in state:
            self._iteration = state[TRAINING_ITERATION]
        sit = state.get(SIT_STATE_KEY)
        if sit:
            self.stage = sit["stage"]
            self.ardnem_updates_done = sit["ardnem_updates_done"]
            self.agent_updates_done = sit["agent_updates_done"]
            self.rng.bit_generator.state = sit["rng"]
            self.dper_summary = sit.get("dper_summary") or {}
            self.stage2_seconds = sit.get("stage2_seconds")
            if sit.get("dper") is not None:
                from rllib_sit.replay.dper import make_dper_actor

                if self.dper is None:
                    self.dper = make_dper_actor(self._columns_dir, self.env_info.agent_types, seed=self.config.seed)
                ray.get(self.dper.set_state.remote(sit["dper"]))
                self._set_r_hat_stats(sit["dper"]["r_hat"])

    def restore_from_path(self, path, *args, **kwargs):
        # Algorithm.restore_from_path syncs the training EnvRunners (None here -> AttributeError);
        # skip that part. set_state syncs the evaluation EnvRunners (and evaluate() does, always).
        from ray.rllib.utils.checkpoints import Checkpointable

        Checkpointable.restore_from_path(self, path, *args, **kwargs)
        self._sync_eval_weights()  # the LearnerGroup was restored as a subcomponent, not via set_state

    def _sync_eval_weights(self) -> None:
        if self.eval_env_runner_group is not None:
            self.eval_env_runner_group.sync_weights(from_worker_or_learner_group=self.learner_group,
                                                    inference_only=True)

    def cleanup(self) -> None:
        if getattr(self, "dper", None) is not None:
            try:
                ray.kill(self.dper)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
            self.dper = None
        super().cleanup()
