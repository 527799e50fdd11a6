"""``OfflineMARLAlgorithm``: the RLlib ``Algorithm`` every offline multi-agent algorithm subclasses.

It does, once for all algorithms: env-id registration; dataset resolution (generated on first
use) before RLlib builds the learners and the evaluation EnvRunners from its metadata; opening the
dataset once as an :class:`~rllib_sit.data.episode_store.EpisodeStore`; evaluation EnvRunners even
without an ``evaluation_interval`` (``algo.evaluate()`` must work on an offline algorithm); a
resource request without training EnvRunners; the named :mod:`phases` with their counters in the
checkpoint; metrics through ``self.metrics``; save/restore for an algorithm without training
EnvRunners (RLlib 2.60's ``restore_from_path`` crashes on them); extra checkpoint state of a
subclass (:meth:`get_extra_state`/:meth:`set_extra_state`, e.g. a sampler actor's); and clean-up
of the Ray actors a subclass owns (:meth:`own_actor`).

A subclass implements :meth:`build_phases` (and whatever its phases call). Its results carry
``results["phases"] = {"current": name, "<name>_updates_done": n, ...}`` and the algorithm's
numeric statistics under ``results[ALGORITHM_RESULTS]`` (:meth:`log_algorithm_metrics`).
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Dict, List

import numpy as np
import ray

from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import EVALUATION_RESULTS, LEARNER_RESULTS

from rllib_sit.algorithms.common.phases import Phase, PhaseSchedule
from rllib_sit.data.episode_store import EpisodeStore

logger = logging.getLogger(__name__)

PHASE_RESULTS = "phases"           # results["phases"]: current phase name + counters
ALGORITHM_RESULTS = "algorithm"    # results["algorithm"]: the algorithm's own statistics
STATE_KEY = "offline_marl"         # the checkpointed state of this base


def to_multi_agent_batch(batches: Dict[str, Dict[str, np.ndarray]]) -> MultiAgentBatch:
    """``{module id: {key: array}}`` -> the ``MultiAgentBatch`` ``learner_group.update`` takes."""
    pol = {m: SampleBatch(dict(b)) for m, b in batches.items()}
    return MultiAgentBatch(pol, env_steps=sum(len(b) for b in pol.values()))


class OfflineMARLAlgorithm(Algorithm):
    """See the module docstring. Subclasses: ``build_phases()``, optionally ``setup_algorithm()``,
    ``get_extra_state()``/``set_extra_state()`` and ``log_algorithm_metrics()``."""

    # Learner metrics (per module) that `rllib train file` shows on its progress line.
    progress_metrics: tuple = ()

    @classmethod
    def _should_create_evaluation_env_runners(cls, eval_config) -> bool:
        # Always (given an env): RLlib creates them only with an evaluation_interval, but
        # `algo.evaluate()` and `rllib evaluate` must work without (no training EnvRunners here).
        return bool(eval_config.env)

    @classmethod
    def default_resource_request(cls, config):
        from ray.tune.execution.placement_groups import PlacementGroupFactory

        cf = config if isinstance(config, AlgorithmConfig) else cls.get_default_config().update_from_dict(config)
        bundles = [{"CPU": float(cf.num_cpus_for_main_process or 1)}]
        if not cf.num_learners and cf.num_gpus_per_learner:
            # The local learner (num_learners=0) runs in this process: its GPU goes in the main bundle
            # (as RLlib's own request does), else Tune hides every GPU from the trial.
            bundles[0]["GPU"] = float(cf.num_gpus_per_learner)
        # Remote evaluation EnvRunner i takes bundle i (EnvRunnerGroup's pg_offset is 0): right after the main one.
        for _ in range(int(cf.evaluation_num_env_runners or 0)):
            bundles.append({"CPU": float(cf.num_cpus_per_env_runner), "GPU": float(cf.num_gpus_per_env_runner or 0)})
        per_learner = cf.num_cpus_per_learner if cf.num_cpus_per_learner != "auto" else 1
        for _ in range(int(cf.num_learners or 0)):
            bundles.append({"CPU": float(per_learner), "GPU": float(cf.num_gpus_per_learner or 0)})
        return PlacementGroupFactory(bundles, strategy=cf.placement_strategy)

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, config) -> None:
        from rllib_sit.envs.registry import register_rllib_envs

        # The evaluation EnvRunner creates config.env through Tune's registry: make the package's
        # "family:scenario" ids resolvable without asking users to call rllib_sit.register_all().
        register_rllib_envs()
        # Find (or generate) the dataset before RLlib's setup builds the evaluation EnvRunners and
        # the learners, whose module specs come from its metadata.
        self.dataset_path = config.dataset_path()
        self._owned_actors: List[Any] = []
        super().setup(config)
        cfg = self.config
        if cfg.num_torch_threads is not None:
            import torch

            torch.set_num_threads(int(cfg.num_torch_threads))
        t0 = time.time()
        self.store = EpisodeStore.open(self.dataset_path, validate=cfg.validate_dataset,
                                       cache_root=cfg.column_cache_dir, progress=True)
        self.env_info = self.store.info
        logger.info("%s: opened %d episodes of %s in %.1fs", type(self).__name__, self.store.num_episodes,
                    self.dataset_path, time.time() - t0)
        self.rng = np.random.default_rng(cfg.seed)
        self.sampler = None  # an in-process sampler a subclass sets: checkpointed by the base
        self._last_evaluation = None
        self._algorithm_metrics: Dict[str, Any] = {}
        self.setup_algorithm()
        self.schedule = PhaseSchedule(self.build_phases())

    def setup_algorithm(self) -> None:
        """Subclass hook: state the phases need (runs after the store is open, before phases)."""

    def build_phases(self) -> List[Phase]:
        raise NotImplementedError(f"{type(self).__name__} must define build_phases()")

    def joint_sampler(self):
        """Uniform joint episodes split by module (:meth:`JointEpisodeSampler.sample_by_module`),
        seeded by ``config.seed``: what mixer-based algorithms assign to ``self.sampler``."""
        from rllib_sit.replay.samplers import JointEpisodeSampler

        return JointEpisodeSampler(self.store.columns, seed=self.config.seed,
                                   agent_modules=self.config.agent_module_order(self.env_info))

    def trajectory_sampler(self):
        """Uniform individual trajectories per module, in-process, seeded by ``config.seed``."""
        from rllib_sit.replay.samplers import IndividualTrajectorySampler

        return IndividualTrajectorySampler(self.store.columns, self.config.agent_module_order(self.env_info),
                                           seed=self.config.seed)

    def own_actor(self, actor):
        """Register a Ray actor this algorithm created: killed in ``cleanup()``."""
        self._owned_actors.append(actor)
        return actor

    # -- updates ---------------------------------------------------------------------------------
    def update_learners(self, batches: Dict[str, Dict[str, np.ndarray]]):
        """One gradient update of the learners on ``{module id: batch}``."""
        return self.learner_group.update(batch=to_multi_agent_batch(batches))

    def update_loop(self, make_batch, n: int):
        """``n`` updates on ``make_batch()`` batches; returns the last learner results."""
        results = None
        for _ in range(n):
            results = self.update_learners(make_batch())
        return results

    # -- the iteration ---------------------------------------------------------------------------
    def training_step(self) -> None:
        t0 = time.time()
        results = self.schedule.run_iteration()
        if results is not None:
            self.metrics.aggregate(results, key=LEARNER_RESULTS)
        self.metrics.log_value((ALGORITHM_RESULTS, "training_step_seconds"), time.time() - t0, window=1)
        for name, n in self.schedule.done.items():
            self.metrics.log_value((PHASE_RESULTS, f"{name}_updates_done"), float(n), window=1)
        self.metrics.log_value((PHASE_RESULTS, "index"), float(self.schedule.index), window=1)
        self.log_algorithm_metrics()

    def log_algorithm_metrics(self) -> None:
        """Subclass hook: log the algorithm's statistics with ``self.metrics.log_value((ALGORITHM_RESULTS, k), v)``."""

    def _compile_iteration_results(self, *, train_results, eval_results):
        results = super()._compile_iteration_results(train_results=train_results, eval_results=eval_results)
        results.setdefault(PHASE_RESULTS, {})["current"] = self.schedule.current_name
        # In an iteration without evaluation, RLlib's reduced metrics still carry the evaluation
        # EnvRunner's own statistics (episode_return_* summed over the agents, N times the team
        # return, which TeamMetricsCallback replaces only in evaluating iterations). Report the
        # last evaluation's team numbers instead, and nothing before the first evaluation.
        if eval_results:
            self._last_evaluation = results.get(EVALUATION_RESULTS)
        elif self._last_evaluation is not None:
            results[EVALUATION_RESULTS] = self._last_evaluation
        else:
            results.pop(EVALUATION_RESULTS, None)
        return results

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, parallel_train_future=None):
        """RLlib's evaluation, twice: a greedy pass (``explore=False``) and a sampled pass
        (``explore=True``) on the same env seeds, merged by :func:`~rllib_sit.algorithms.common.
        evaluation.merge_passes` (the headline keys are the pass ``evaluation_config["explore"]``
        selects, greedy by default; both passes under ``*_greedy`` / ``*_sampled``)."""
        from rllib_sit.algorithms.common.evaluation import EVALUATION_PASSES, merge_passes

        headline = bool(self.evaluation_config.explore)
        passes = {}
        try:
            for explore in EVALUATION_PASSES:
                self._set_eval_explore(explore)
                passes[explore] = copy.deepcopy(super().evaluate(parallel_train_future=parallel_train_future))
        finally:
            self._set_eval_explore(headline)
        return merge_passes(passes[False], passes[True], explore=headline)

    def _set_eval_explore(self, explore: bool) -> None:
        """Make the evaluation EnvRunners' next ``sample()`` greedy (False) or sampled (True), starting
        from a reset with their seed (RLlib reseeds at each episode-unit evaluation already; this makes
        a timestep-unit one do the same), so both passes see the same env seeds."""
        def set_mode(runner):
            cfg = runner.config
            if cfg.explore != explore:
                frozen = getattr(cfg, "_is_frozen", False)
                cfg._is_frozen = False  # the one attribute a frozen AlgorithmConfig lets us set
                cfg.explore = explore
                cfg._is_frozen = frozen
            if hasattr(runner, "_needs_initial_reset"):
                runner._needs_initial_reset = True

        if self.eval_env_runner_group is not None:
            self.eval_env_runner_group.foreach_env_runner(set_mode, local_env_runner=True)

    # -- checkpointing ---------------------------------------------------------------------------
    def get_extra_state(self) -> Dict[str, Any]:
        """Subclass hook: state beyond the learners, phases, ``self.rng`` and ``self.sampler`` (e.g.
        a sampler actor's)."""
        return {}

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        """Subclass hook: restore what :meth:`get_extra_state` returned."""

    def get_state(self, components=None, *, not_components=None, **kwargs):
        state = super().get_state(components, not_components=not_components, **kwargs)
        extra = self.get_extra_state()
        if self.sampler is not None:
            extra.setdefault("sampler", self.sampler.get_state())
        state[STATE_KEY] = {"schedule": self.schedule.get_state(), "rng": self.rng.bit_generator.state,
                            "extra": extra}
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
        ours = state.get(STATE_KEY)
        if ours:
            self.schedule.set_state(ours["schedule"])
            self.rng.bit_generator.state = ours["rng"]
            extra = ours.get("extra") or {}
            if self.sampler is not None and extra.get("sampler") is not None:
                self.sampler.set_state(extra["sampler"])
            self.set_extra_state(extra)

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
        for actor in getattr(self, "_owned_actors", []):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self._owned_actors = []
        super().cleanup()
