"""``OfflineMARLConfig``: what every offline multi-agent algorithm of the package configures.

A subclass declares each of its own settings once, as a class attribute
``name = Setting(default, "<paper table the default comes from / what it does>")``
(:mod:`~rllib_sit.algorithms.common.settings`); from that one declaration every instance gets the
default, ``training()`` gets a keyword-only parameter documented with the text (``help()``,
``inspect.signature``; ``NotProvided`` = unchanged) beside RLlib's own training settings, and
``training()``/``update_from_dict()`` reject a key that is neither the config's nor RLlib's, naming
the closest one. A subclass changes an inherited default (or RLlib's, e.g. ``lr``) in ``__init__``.
``validate_settings()`` checks the settings with the helpers below. Nothing here rewrites a user's value:
the agent -> module mapping and the evaluation callbacks are *derived* (properties) from what
the user set.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from typing_extensions import Self

from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils import force_list
from ray.tune.result import TRIAL_INFO

from rllib_sit.algorithms.common.evaluation import TeamMetricsCallback
from rllib_sit.algorithms.common.mapping import MODULE_MAPPINGS, AgentModuleMapping, module_ids_by_agent
from rllib_sit.algorithms.common.settings import (Setting, UnknownSettingError, collect_settings, training_doc,
                                                  training_signature, unknown_setting_message)
from rllib_sit.data.episode_store import check_dataset_spec, dataset_env_info, resolve_dataset
from rllib_sit.envs.base import EnvInfo

OPTIMIZERS = ("rmsprop", "adam")
PRECISIONS = ("fp32", "bf16")  # the learner's autocast (rllib_sit.algorithms.common.torch_learner)
VALIDATE_DATASET = ("full", "schema", "none")


# RLlib's own training() keywords, and the keys its update_from_dict() takes that are no attribute.
RLLIB_TRAINING_KEYS = tuple(n for n, p in inspect.signature(AlgorithmConfig.training).parameters.items()
                            if n != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY)
RLLIB_DICT_KEYS = ("multiagent", TRIAL_INFO, "_enable_new_api_stack")


def _tune_key(name: str) -> bool:
    """Tune's bookkeeping in a trial's config (``__trial_info__``, ``__stdout_file__``, ...)."""
    return name.startswith("__") and name.endswith("__")


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

    # The settings every algorithm has (an algorithm declares its own the same way).
    dataset = Setting(None, 'a generation spec, e.g. {"quality": "low", "episodes": 10000, "seed": 0}, generated on '
                            'first use when offline_data(input_=...) (a folder or URI) is not given')
    column_cache_dir = Setting(None, "memory-mapped column cache root (None: the data layer's default)")
    validate_dataset = Setting("full", '"full" (values, once per cache) | "schema" | "none"')
    num_torch_threads = Setting(None, "torch intra-op threads of the learner process (None: torch/Ray default)")
    batch_size_episodes = Setting(32, "pymarl / SIT Tables 10-11: 32 episodes per update")
    optimizer = Setting("rmsprop", 'pymarl\'s optimizer (SIT Tables 10-11): "rmsprop" (smoothing 0.99, eps 1e-5) '
                                   '| "adam"')
    optimizer_eps = Setting(None, "None: pymarl's 1e-5 (RMSprop) / torch's 1e-8 (Adam)")
    module_mapping = Setting("agent_type", '"agent_type" (agents of a type share a module) | "agent_id" (one '
                                           'module per agent)')
    precision = Setting("fp32", 'learner forwards/losses: "fp32" | "bf16" (autocast; not a paper setting)')
    target_update_interval = Setting(100, "SIT Table 11 / pymarl: a module's target networks are hard copies, "
                                          "renewed every 100 updates of the module (when target_update_tau is None)")
    target_update_tau = Setting(None, "None: hard copies every target_update_interval updates; a number in (0, 1]: "
                                      "Polyak averaging with that rate after every update of the module")
    # Action spaces the algorithm implements ("discrete": SMAC, MPE; "continuous": MAMuJoCo). The
    # base rejects a dataset of another kind before building modules; the benchmark planner skips it.
    action_spaces: Tuple[str, ...] = ("discrete", "continuous")
    # Appended to that error, e.g. which algorithm to run instead.
    action_space_hint: str = ""

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class)
        self._is_online = False  # pure offline: no training EnvRunners
        for name, setting in self._settings.items():  # every declared setting's default
            setattr(self, name, copy.deepcopy(setting.default))
        self.gamma = 0.99
        self.grad_clip = 10.0  # pymarl: gradient norm clipped at 10
        self.grad_clip_by = "global_norm"
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
    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _declare_settings(cls)

    def _apply_training(self, kwargs: Dict[str, Any]) -> Self:
        """What every config's generated ``training()`` does: RLlib's settings to RLlib, the declared
        ones set here (``NotProvided`` = keep), anything else an error naming the closest key."""
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in self._settings}
        for key in kwargs:
            if key not in RLLIB_TRAINING_KEYS:
                raise UnknownSettingError(unknown_setting_message(self._owner, key,
                                                                  list(self._settings) + list(RLLIB_TRAINING_KEYS)))
        AlgorithmConfig.training(self, **kwargs)
        for k, v in ours.items():
            if v is not NotProvided:
                setattr(self, k, v)
        return self

    def update_from_dict(self, config_dict) -> Self:
        """RLlib's ``update_from_dict``, which sets any key at all, after checking that every key is
        one of this config's settings or one RLlib takes (an attribute of the config, or one of its
        special keys): a misspelt key is an error naming the closest known one."""
        for key in config_dict:
            name = self._translate_special_keys(key, warn_deprecated=False)
            if name in self._settings or name in RLLIB_DICT_KEYS or _tune_key(name) or hasattr(self, name):
                continue
            known = list(self._settings) + [k for k in vars(self) if not k.startswith("_")]
            raise UnknownSettingError(unknown_setting_message(self._owner, key, known))
        return super().update_from_dict(config_dict)

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
        self.validate_target_networks()
        if self.column_cache_dir is not None and not isinstance(self.column_cache_dir, str):
            self.bad("column_cache_dir", self.column_cache_dir, "None or a folder path string")
        self.validate_settings()

    def validate_target_networks(self) -> None:
        """``target_update_interval``: an int >= 1; ``target_update_tau``: None or a number in (0, 1]."""
        self.check_int(["target_update_interval"])
        tau = self.target_update_tau
        if tau is not None and (isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 < tau <= 1.0):
            self.bad("target_update_tau", tau, "None or a number in (0, 1]")

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
        joint-loss helpers read (``joint.agent_order``): what a joint algorithm returns from ``extra_module_specs``."""
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

    def module_spec(self, info: EnvInfo, module_class, **model_config) -> RLModuleSpec:
        """The RLModuleSpec of ``module_class`` on the agents' spaces (:meth:`spaces`), its
        ``model_config`` the dataset's sizes (:meth:`env_model_config`) updated with ``model_config``."""
        obs_space, act_space = self.spaces(info)
        return RLModuleSpec(module_class=module_class, observation_space=obs_space, action_space=act_space,
                            model_config=dict(self.env_model_config(info), **model_config))

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


def _declare_settings(cls) -> None:
    """Collect ``cls``'s settings (:func:`collect_settings`) and give it a ``training()`` whose
    signature and docstring list them (unless the class body defines its own ``training``)."""
    cls._settings = collect_settings(cls)
    cls._training_keys = tuple(cls._settings)  # the names (for tools that list a config's settings)
    if "training" in vars(cls):
        return

    def training(self, **kwargs) -> Self:
        return self._apply_training(kwargs)

    training.__qualname__ = f"{cls.__qualname__}.training"
    training.__module__ = cls.__module__
    training.__signature__ = training_signature(cls._settings)
    training.__doc__ = training_doc(cls.__name__, cls._settings)
    cls.training = training


_declare_settings(OfflineMARLConfig)


def config_defaults(cfg: OfflineMARLConfig, keys: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """``{name: value}`` of the config's own settings (for docs and tests)."""
    return {k: getattr(cfg, k) for k in (keys or cfg._training_keys)}
