"""``OfflineMARLConfig``: what every offline multi-agent algorithm of the package configures.

A subclass declares its own settings as attributes in ``__init__`` (one comment each: the paper
table the default comes from) and lists their names in ``_training_keys``; ``training()`` sets
them (keyword-only, ``NotProvided`` = unchanged) beside RLlib's own training settings, and
``validate_settings()`` checks them with the helpers below. Nothing here rewrites a user's value:
the agent -> module mapping and the evaluation callbacks are *derived* (properties) from what
the user set.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from typing_extensions import Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils import force_list

from rllib_sit.algorithms.common.evaluation import TeamMetricsCallback
from rllib_sit.algorithms.common.mapping import MODULE_MAPPINGS, AgentModuleMapping, module_ids_by_agent
from rllib_sit.data.episode_store import check_dataset_spec, dataset_env_info, resolve_dataset
from rllib_sit.envs.base import EnvInfo

OPTIMIZERS = ("rmsprop", "adam")
PRECISIONS = ("fp32", "bf16")  # the learner's autocast (rllib_sit.algorithms.common.torch_learner)
VALIDATE_DATASET = ("full", "schema", "none")


def _bad(owner: str, name: str, value: Any, expected: str):
    raise ValueError(f"{owner}: {name}={value!r} is invalid; expected {expected}")


class OfflineMARLConfig(AlgorithmConfig):
    """Base configuration of the package's offline multi-agent algorithms.

    Shared settings (set through ``training()``):

    * ``dataset``: ``{"quality", "episodes", "seed"}`` generated on first use, when
      ``offline_data(input_=...)`` (a folder or an ``s3://``/``gs://``/``file://`` URI) is not given;
    * ``column_cache_dir``, ``validate_dataset``, ``num_torch_threads``;
    * ``batch_size_episodes``, ``gamma``, ``grad_clip`` (RLlib's), ``optimizer``;
    * ``precision``: the learner's forwards and losses in "fp32" or "bf16" mixed precision
      (``torch.autocast``; parameters, optimizer state and losses stay fp32, inference stays fp32);
    * ``module_mapping``: ``"agent_type"`` (agents of a type share a module) or ``"agent_id"``.
    """

    # Names of the settings ``training()`` accepts beyond RLlib's (subclasses extend this tuple).
    _training_keys: Tuple[str, ...] = ("dataset", "column_cache_dir", "validate_dataset", "num_torch_threads",
                                       "batch_size_episodes", "optimizer", "optimizer_eps", "module_mapping",
                                       "precision")
    # Action spaces the algorithm implements ("discrete": SMAC, MPE; "continuous": MAMuJoCo). The
    # base rejects a dataset of another kind before building modules; the benchmark planner skips it.
    action_spaces: Tuple[str, ...] = ("discrete", "continuous")
    # Appended to that error, e.g. which algorithm to run instead.
    action_space_hint: str = ""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        self._is_online = False  # pure offline: no training EnvRunners
        self.dataset = None  # e.g. {"quality": "low", "episodes": 10000, "seed": 0} -> generated on first use
        self.column_cache_dir = None  # memory-mapped column cache root (None: the data layer's default)
        self.validate_dataset = "full"  # "full" (values, once per cache) | "schema" | "none"
        self.num_torch_threads = None  # torch intra-op threads of the learner process (None: torch/Ray default)
        self.batch_size_episodes = 32  # pymarl / SIT Tables 10-11: 32 episodes per update
        self.optimizer = "rmsprop"  # pymarl's optimizer (SIT Tables 10-11)
        self.optimizer_eps = None  # None: pymarl's 1e-5 (RMSprop) / torch's 1e-8 (Adam)
        self.precision = "fp32"  # learner forwards/losses: "fp32" | "bf16" (autocast; not a paper setting)
        self.gamma = 0.99
        self.grad_clip = 10.0  # pymarl: gradient norm clipped at 10
        self.grad_clip_by = "global_norm"
        self.module_mapping = "agent_type"  # "agent_type" | "agent_id"
        # Evaluation on RLlib's evaluation EnvRunner(s) of the registered env: greedy actors
        # (merged with a user's evaluation_config), team-return statistics + win rate.
        self.evaluation_duration = 32
        self.evaluation_duration_unit = "episodes"
        self.evaluation_config = {"explore": False}
        self.evaluation_interval = None
        self.num_env_runners = 0
        self.seed = 0

    # -- RLlib plumbing --------------------------------------------------------------------------
    @property
    def is_offline(self) -> bool:  # noqa: D401
        # The algorithm reads its multi-agent dataset itself; RLlib's OfflineData refuses multi-agent episodes.
        return False

    @property
    def is_multi_agent(self) -> bool:  # noqa: D401
        return True

    @property
    def _model_config_auto_includes(self):
        return {}

    # The agent -> module mapping is derived from env + module_mapping unless the user gave one.
    @property
    def policy_mapping_fn(self):
        fn = self.__dict__.get("_user_policy_mapping_fn")
        if fn is None and isinstance(self.env, str):
            return AgentModuleMapping(self.env, self.env_config, self.module_mapping)
        return fn if fn is not None else AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN

    @policy_mapping_fn.setter
    def policy_mapping_fn(self, fn) -> None:
        # RLlib's default (a lambda, not identical after pickling) and our own mapping mean "derive it".
        derived = fn is None or isinstance(fn, AgentModuleMapping) or fn is AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN
        self.__dict__["_user_policy_mapping_fn"] = None if derived else fn

    # The team-metrics callback always runs beside the user's callbacks.
    @property
    def callbacks_class(self):
        user = [c for c in force_list(self.__dict__.get("_user_callbacks_class")) if c is not RLlibCallback]
        if any(isinstance(c, type) and issubclass(c, TeamMetricsCallback) for c in user):
            return user if len(user) > 1 else user[0]
        return [TeamMetricsCallback] + user if user else TeamMetricsCallback

    @callbacks_class.setter
    def callbacks_class(self, value) -> None:
        self.__dict__["_user_callbacks_class"] = value

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        d.pop("_user_policy_mapping_fn", None)
        d.pop("_user_callbacks_class", None)
        d["policy_mapping_fn"] = self.__dict__.get("_user_policy_mapping_fn") or AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN
        d["callbacks"] = self.__dict__.get("_user_callbacks_class") or RLlibCallback
        return d

    # -- builder ---------------------------------------------------------------------------------
    def training(self, **kwargs) -> Self:
        """RLlib's training settings plus this algorithm's (``_training_keys``); ``NotProvided`` = keep."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in self._training_keys}
        super().training(**kwargs)
        for k, v in ours.items():
            if v is not NotProvided:
                setattr(self, k, v)
        return self

    # -- validation ------------------------------------------------------------------------------
    @property
    def _owner(self) -> str:
        return type(self).__name__

    def check_positive(self, names: Iterable[str]) -> None:
        for name in names:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                _bad(self._owner, name, v, "a number > 0")

    def check_int(self, names: Iterable[str], low: int = 1) -> None:
        for name in names:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                _bad(self._owner, name, v, f"an int >= {low}")

    def check_bool(self, names: Iterable[str]) -> None:
        for name in names:
            if not isinstance(getattr(self, name), bool):
                _bad(self._owner, name, getattr(self, name), "True or False")

    def check_choice(self, name: str, choices: Iterable[str]) -> None:
        choices = tuple(choices)
        if getattr(self, name) not in choices:
            _bad(self._owner, name, getattr(self, name), f"one of {choices}")

    def check_range(self, name: str, low: float, high: float) -> None:
        v = getattr(self, name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high:
            _bad(self._owner, name, v, f"a number in [{low}, {high}]")

    def bad(self, name: str, value: Any, expected: str):
        _bad(self._owner, name, value, expected)

    def validate(self) -> None:
        super().validate()
        self.check_int(["batch_size_episodes"])
        self.check_range("gamma", 0.0, 1.0)
        self.check_choice("optimizer", OPTIMIZERS)
        self.check_choice("precision", PRECISIONS)
        self.check_choice("module_mapping", MODULE_MAPPINGS)
        self.check_choice("validate_dataset", VALIDATE_DATASET)
        if self.grad_clip is not None and (isinstance(self.grad_clip, bool) or not float(self.grad_clip) > 0):
            self.bad("grad_clip", self.grad_clip, "a number > 0 or None")
        try:
            check_dataset_spec(self.dataset)
        except ValueError as e:
            raise ValueError(f"{self._owner}: {e}") from None
        if self.num_torch_threads is not None:
            self.check_int(["num_torch_threads"])
        if self.optimizer_eps is not None:
            self.check_positive(["optimizer_eps"])
        if self.column_cache_dir is not None and not isinstance(self.column_cache_dir, str):
            self.bad("column_cache_dir", self.column_cache_dir, "None or a folder path string")
        self.validate_settings()

    def validate_settings(self) -> None:
        """The algorithm's own checks (raise through ``check_*``/``bad``; never assign)."""

    # -- the dataset -----------------------------------------------------------------------------
    def dataset_path(self) -> str:
        """The dataset folder/URI: ``input_`` or ``dataset`` generated on first use."""
        return resolve_dataset(self.input_, self.dataset, self.env, who=self._owner)

    def dataset_info(self) -> EnvInfo:
        return dataset_env_info(self.dataset_path())

    # -- modules ---------------------------------------------------------------------------------
    def agent_module_ids(self, info: EnvInfo) -> Dict[str, str]:
        """``{agent id: module id}`` for the dataset's agents under ``module_mapping``."""
        return module_ids_by_agent(info.agents, info.agent_types, self.module_mapping)

    def mixer_module_spec(self, info: EnvInfo, mixer: str, **mixer_kwargs) -> Dict[str, RLModuleSpec]:
        """``{MIXER_MODULE_ID: spec}`` of a learner-only :class:`~rllib_sit.models.mixers.MixerTorchRLModule`
        (``mixer``: "linear" = Σ w_i(s) Q_i + b(s), or "qmix"), carrying the agent -> module order the
        learner's ``agent_modules()`` reads: what a joint algorithm returns from ``extra_module_specs``."""
        from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID
        from rllib_sit.models.mixers import MixerTorchRLModule

        obs_space, act_space = self.spaces(info)
        return {MIXER_MODULE_ID: RLModuleSpec(
            module_class=MixerTorchRLModule, observation_space=obs_space, action_space=act_space,
            model_config=dict(mixer=mixer, state_dim=info.state_dim, n_agents=info.n_agents,
                              mixer_kwargs=mixer_kwargs, agent_modules=self.agent_module_order(info)))}

    def agent_module_order(self, info: EnvInfo) -> List[str]:
        """The module id of every agent, in the env's agent order (a joint algorithm puts it in its
        mixer module's ``model_config["agent_modules"]`` for the learner)."""
        return list(self.agent_module_ids(info).values())

    def spaces(self, info: EnvInfo):
        """The agents' (observation, action) spaces on the RLlib env: ``{"obs"(, "action_mask")}``."""
        import gymnasium as gym

        from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY

        obs_spaces = {OBS_KEY: gym.spaces.Box(-np.inf, np.inf, (info.obs_dim,), np.float32)}
        if info.discrete:
            obs_spaces[ACTION_MASK_KEY] = gym.spaces.Box(0.0, 1.0, (info.n_actions,), np.float32)
            act_space = gym.spaces.Discrete(info.n_actions)
        else:
            act_space = gym.spaces.Box(info.action_low, info.action_high, (info.act_dim,), np.float32)
        return gym.spaces.Dict(obs_spaces), act_space

    @staticmethod
    def env_model_config(info: EnvInfo) -> Dict[str, Any]:
        """The dataset's sizes every module's ``model_config`` starts from."""
        return dict(obs_dim=info.obs_dim, state_dim=info.state_dim, n_agents=info.n_agents,
                    discrete=info.discrete, n_actions=info.n_actions or 0, act_dim=info.act_dim or 0,
                    action_low=info.action_low, action_high=info.action_high)

    def agent_module_spec(self, info: EnvInfo, module_id: str, agents: List[str]) -> RLModuleSpec:
        """The RLModuleSpec of one agent module (``agents``: the agent ids mapped to it)."""
        raise NotImplementedError(f"{self._owner} must define agent_module_spec()")

    def extra_module_specs(self, info: EnvInfo) -> Dict[str, RLModuleSpec]:
        """Learner-only modules beside the agents' (ARDNEM, mixers, VAEs): ``{module id: spec}``."""
        return {}

    def check_action_space(self, info: EnvInfo) -> None:
        """One clear error when the dataset's action space is not one ``action_spaces`` lists."""
        kind = "discrete" if info.discrete else "continuous"
        if kind not in self.action_spaces:
            hint = f" ({self.action_space_hint})" if self.action_space_hint else ""
            self.bad("env", info.env_id, f"an env with {' or '.join(self.action_spaces)} actions; "
                     f"this one has {kind} actions{hint}")

    def build_module_specs(self, info: EnvInfo) -> MultiRLModuleSpec:
        self.check_action_space(info)
        by_agent = self.agent_module_ids(info)
        modules: Dict[str, List[str]] = {}
        for agent, mid in by_agent.items():
            modules.setdefault(mid, []).append(agent)
        specs = {mid: self.agent_module_spec(info, mid, agents) for mid, agents in modules.items()}
        for mid, spec in self.extra_module_specs(info).items():
            spec.learner_only = True
            specs[mid] = spec
        return MultiRLModuleSpec(rl_module_specs=specs)

    def get_multi_rl_module_spec(self, *, env=None, spaces=None, inference_only=False, **kwargs) -> MultiRLModuleSpec:
        spec = self.build_module_specs(self.dataset_info())
        if inference_only:  # EnvRunners: the agents' actors only
            spec.remove_modules([m for m, s in spec.rl_module_specs.items() if s.learner_only])
            for s in spec.rl_module_specs.values():
                s.inference_only = True
        return spec

    def get_default_rl_module_spec(self) -> MultiRLModuleSpec:
        return self.get_multi_rl_module_spec()


def config_defaults(cfg: OfflineMARLConfig, keys: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """``{name: value}`` of the config's own settings (for docs and tests)."""
    return {k: getattr(cfg, k) for k in (keys or cfg._training_keys)}
