"""SIT ("Learning from Good Trajectories in Offline Multi-Agent RL", Tian et al., AAAI 2023) as an
offline RLlib Algorithm on the package's shared base (:mod:`rllib_sit.algorithms.common`).

Phase ``ardnem`` (Stage I)  ARDNEM (Eq. 1–3), ``ardnem_updates`` updates, uniform timesteps.
Phase ``dper``   (Stage II) once: r̂, û, p̂ for every (episode, agent) (Eq. 4–7) -> the DPER: an
                            individual-trajectory sampler (Ray actor) with Eq. 7 probabilities per type.
Phase ``agents`` (Stage III) ``agent_updates`` actor/critic updates (Eq. 8–10) on DPER samples.

Stage I is shared across runs through a store (``stage1_cache``, :mod:`.stage1_cache`): a run
whose dataset, Stage I settings and seed match a stored ARDNEM loads it at its first Stage I
iteration instead of training (the other Stage I iterations then only count), so the trials of
an α × β × η sweep train ARDNEM once.

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
from ray.rllib.utils.metrics import LEARNER_RESULTS

from rllib_sit.algorithms.common.algorithm import ALGORITHM_RESULTS, OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.joint import module_members
from rllib_sit.algorithms.common.phases import Phase
from rllib_sit.algorithms.common.settings import Setting
from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.algorithms.sit import stage1_cache as S1
from rllib_sit.data import schema as S
from rllib_sit.replay import keys as B
from rllib_sit.replay.samplers import IndividualTrajectorySampler, TrajectoryGatherer, make_sampler_actor

logger = logging.getLogger(__name__)

DECOMPOSITIONS = ("attention", "none", "monotonic")
STAGE2_BACKENDS = ("local", "ray_data")
# Stage III: the DPER actor draws the indices of up to this many updates' batches per round trip.
DPER_UPDATES_PER_CALL = 64


class SITConfig(OfflineMARLConfig):
    """Configuration of :class:`SIT`; every default is the paper's value (Tables 10–11)."""

    # --- Stage I: ARDNEM (Table 10) ---
    ardnem_lr = Setting(1e-4, 'Table 10: learning rate 1e-4 (RMSprop)')
    ardnem_updates = Setting(20000, 'Table 10: 20,000 training epochs (1 epoch = 1 update of 32 episodes)')
    ensemble_size = Setting(5, 'Table 10: ensemble M = 5')
    reward_hidden = Setting(64, 'Table 10: reward network hidden 64')
    attention_hidden = Setting(64, 'Table 10: attention hidden 64')
    # --- Stage II: DPER (Eq. 7, Table 11) ---
    alpha = Setting(0.2, 'Table 11: softmax temperature α = 0.2')
    priority_range = Setting((0.0, 20.0), 'Table 11 / §DPER: priorities linearly rescaled to [0, 20]')
    priority_scale = Setting("return_range", '§DPER read two ways (docs/algorithms/sit.md "The priority scale"): '
                             '"return_range" = the env\'s return range (Tables 4-6) onto priority_range, a fixed map '
                             '(the identity on SMAC; chosen from the α × reading grid); "minmax" = each type\'s own '
                             'p̂ min/max onto it')
    priority_return_range = Setting(None, 'with "return_range": (low, high) episode returns; None = the env\'s data '
                                    'spec (Tables 4-6)')
    # --- Stage III: agents (Table 11) ---
    beta = Setting(0.1, 'Table 11: CRR temperature β = 0.1')
    eta = Setting(1.0, 'Table 11: uncertainty weight η = 1')
    actor_lr = Setting(5e-4, 'Table 11: actor learning rate 5e-4 (RMSprop)')
    critic_lr = Setting(1e-4, 'Table 11: critic learning rate 1e-4 (RMSprop)')
    agent_updates = Setting(15000, 'Table 11: 15,000 training epochs')
    critic_hidden = Setting(32, 'Table 11: critic hidden 32')
    rnn_hidden = Setting(64, 'Table 11: RNN hidden 64')
    uncertainty_floor = Setting(1e-2, 'not in the paper: û clamped from below (specs/sit_notes.md)')
    uncertainty_floor_mode = Setting("absolute", 'not in the paper: "absolute" (floor = uncertainty_floor) | '
                                     '"relative" (floor = uncertainty_floor × mean |r̂|)')
    ardnem_bootstrap = Setting(False, 'not in the paper: each ensemble member trains on its own bootstrap of the '
                               'dataset (Poisson(1) weights per episode and member); False = every member sees the '
                               'same batches (the paper)')
    # --- ablations (Figure 4a/b, Appendix E.1) ---
    decomposition = Setting("attention", '"attention" | "none" (critic on r_tot) | "monotonic" (E.1)')
    use_attention = Setting(True, 'False: λ ≡ 1 (Figure 4a "w/o attention")')
    ensemble = Setting(True, 'False: M = 1, û ≡ 1 (Figure 4a "w/o ensemble")')
    use_gat = Setting(True, 'False: no global embedding in the critic (Figure 4a "w/o GAT")')
    prioritized = Setting(True, 'False: uniform sampling in Stage III (Figure 4b)')
    # --- schedule / plumbing (not paper settings) ---
    ardnem_updates_per_iteration = Setting(1000, 'schedule: Stage I updates per train()')
    ardnem_batch_timesteps = Setting(None, 'Stage I batch: None = all real timesteps of `batch_size_episodes` '
                                     'uniformly drawn episodes (specs/sit_notes.md); an int = that many timesteps '
                                     'drawn uniformly over all real steps.')
    agent_updates_per_iteration = Setting(500, 'schedule: Stage III updates per train()')
    stage2_backend = Setting("local", '"local" | "ray_data" (Ray Data map_batches pass)')
    stage2_batch_episodes = Setting(256, 'Stage II: episodes per batch of the r̂ / û pass')
    stage1_cache = Setting(None, 'Stage I shared across runs (stage1_cache.py): None/"default"/True = '
                           '$RLLIB_SIT_STAGE1_CACHE or <data dir>/cache/ardnem; a folder or URI (s3://, gs://, '
                           'file://); False = off.')
    stage1_cache_timeout_s = Setting(7200.0, "how long a run waits for another run's Stage I, then trains its own")
    ardnem_num_torch_threads = Setting(None, 'torch threads of the local learner in Stage I (None: num_torch_threads)')

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or SIT)
        self.target_update_interval = 100  # Table 11: target update interval d = 100
        # --- shared (Tables 10–11): batch 32 episodes, RMSprop, γ 0.99, clip 10 (the base's defaults) ---
        self.gamma = 0.99  # Table 11: γ = 0.99

    def validate_settings(self) -> None:
        self.check_positive(["ardnem_lr", "actor_lr", "critic_lr", "alpha", "beta", "eta", "uncertainty_floor"])
        self.check_int(["ardnem_updates", "agent_updates"], low=0)
        self.check_int(["ensemble_size", "reward_hidden", "attention_hidden", "critic_hidden", "rnn_hidden",
                        "ardnem_updates_per_iteration", "agent_updates_per_iteration",
                        "stage2_batch_episodes"])
        if self.ardnem_batch_timesteps is not None:
            self.check_int(["ardnem_batch_timesteps"])
        pr = self.priority_range
        if (not isinstance(pr, (list, tuple)) or len(pr) != 2
                or not all(isinstance(x, (int, float)) for x in pr) or not pr[0] < pr[1]):
            self.bad("priority_range", pr, "(low, high) with low < high, e.g. (0, 20)")
        if self.optimizer != "rmsprop":
            self.bad("optimizer", self.optimizer, "'rmsprop' (SIT Tables 10-11)")
        self.check_choice("priority_scale", K.PRIORITY_SCALES)
        rr = self.priority_return_range
        if rr is not None and (not isinstance(rr, (list, tuple)) or len(rr) != 2
                               or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in rr)
                               or not rr[0] < rr[1]):
            self.bad("priority_return_range", rr, "None (the env's data spec) or (low, high) episode returns "
                     "with low < high, e.g. (0, 20) on SMAC")
        # An env without a data spec range needs the range stated (checked again in setup once the
        # dataset names its env, when the config gives none).
        if isinstance(self.env, str):
            self.check_priority_return_range(self.env)
        self.check_choice("decomposition", DECOMPOSITIONS)
        self.check_choice("stage2_backend", STAGE2_BACKENDS)
        self.check_choice("uncertainty_floor_mode", K.FLOOR_MODES)
        self.check_bool(["use_attention", "ensemble", "use_gat", "prioritized", "ardnem_bootstrap"])
        expected = S1.check_setting(self.stage1_cache)
        if expected:
            self.bad("stage1_cache", self.stage1_cache, expected)
        self.check_positive(["stage1_cache_timeout_s"])
        if self.ardnem_num_torch_threads is not None:
            self.check_int(["ardnem_num_torch_threads"])

    def check_priority_return_range(self, env_id: str) -> None:
        """``priority_scale="return_range"`` needs a range: given, or from ``env_id``'s data spec."""
        if (self.priority_scale == "return_range" and self.priority_return_range is None
                and self.env_return_range(env_id) is None):
            self.bad("priority_return_range", None, f"(low, high) episode returns: priority_scale='return_range' "
                     f"and the data specs give no return range for env {env_id!r} (or set priority_scale='minmax')")

    # -- derived ---------------------------------------------------------------------------------
    def env_return_range(self, env_id: Optional[str] = None):
        """The episode-return range of ``env_id`` (default: the config's env) from its data spec
        (Tables 4-6), or None (no spec / range)."""
        from rllib_sit.data.composition import load_specs

        env_id = env_id if env_id is not None else self.env
        spec = load_specs().get(env_id) if isinstance(env_id, str) else None
        return spec.return_range() if spec is not None else None

    def resolved_priority_return_range(self, env_id: Optional[str] = None):
        """The return range the "return_range" priority scale maps onto ``priority_range`` (None for
        "minmax"): ``priority_return_range``, else the data spec's range of ``env_id`` (default: the env)."""
        if self.priority_scale != "return_range":
            return None
        rr = self.priority_return_range
        return tuple(float(x) for x in rr) if rr is not None else self.env_return_range(env_id)

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

        return self.module_spec(info, SITAgentTorchRLModule, rnn_hidden=self.rnn_hidden,
                                critic_hidden=self.critic_hidden, use_gat=self.use_gat)

    def extra_module_specs(self, info) -> Dict[str, RLModuleSpec]:
        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import ARDNEMTorchRLModule

        return {K.ARDNEM_MODULE_ID: self.module_spec(
            info, ARDNEMTorchRLModule, ensemble_size=self.effective_ensemble_size, reward_hidden=self.reward_hidden,
            attention_hidden=self.attention_hidden, weight_mode=self.weight_mode)}


class SIT(OfflineMARLAlgorithm):
    """The three stages of SIT as phases of the shared base; see the module docstring."""

    progress_metrics = (K.ARDNEM_LOSS, K.CRITIC_LOSS, K.ACTOR_LOSS)

    @classmethod
    def get_default_config(cls) -> SITConfig:
        return SITConfig()

    def setup_algorithm(self) -> None:
        self.dper = None  # the individual-trajectory sampler actor, made in Stage II
        # Stage III batches are gathered here, from this process's memory map of the episodes and
        # r̂/û, at the (episode, agent) indices the DPER actor draws (see _run_stage3).
        self._dper_gather: Optional[TrajectoryGatherer] = None
        self.dper_summary: Dict[str, Dict[str, float]] = {}
        self.r_hat_mean_per_agent: Optional[List[float]] = None
        self.stage2_seconds: Optional[float] = None
        self.dper_restarts = 0  # DPER actors rebuilt after dying (see _rebuild_dper)
        self.agent_modules = list(self.config.agent_module_ids(self.env_info).values())
        # Stage II's priority map, resolved before any training (the dataset names the env when the config does not).
        self.config.check_priority_return_range(self.env_info.env_id)
        self.dper_return_range = self.config.resolved_priority_return_range(self.env_info.env_id)
        self.u_hat_stats: Dict[str, float] = {}  # the floor of û and the share of steps it clamps
        # Stage I cache: the status is decided at the first Stage I iteration (or restored).
        self.stage1_status: Optional[str] = None
        self.stage1_info: Dict[str, object] = {}
        self._stage1: Optional[S1.Stage1Cache] = None  # holds the lock while this run trains Stage I
        self._stage1_losses: List[float] = []  # the loss of every Stage I update (stored with the entry)
        self._bootstrap_w: Optional[np.ndarray] = None

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
            episodes, t = k_all[pick], t_all[pick]
        else:
            idx = self.rng.integers(0, self.store.num_episodes, self.config.batch_size_episodes)
            # Every real step of episodes idx, episode by episode: the rows of store.flatten_filled(idx),
            # gathered with one indexing per column instead of two (the episodes, then their real steps).
            rows, t = np.nonzero(self.store[S.FILLED][idx])
            episodes = idx[rows]
        flat = self.store.flat_steps(episodes, t)
        batch = {B.OBS: flat[S.OBS], B.ACTIONS: flat[S.ACTIONS], B.STATE: flat[S.STATE], B.REWARD: flat[S.REWARD]}
        if self.config.ardnem_bootstrap:
            batch[K.BOOTSTRAP_WEIGHTS] = self.bootstrap_weights()[episodes]
        return {K.ARDNEM_MODULE_ID: batch}

    def bootstrap_weights(self) -> np.ndarray:
        """``[K, M]``: member m's weight of episode k's steps (``ardnem_bootstrap``; a function of the seed)."""
        if self._bootstrap_w is None:
            self._bootstrap_w = K.bootstrap_weights(self.store.num_episodes, self.config.effective_ensemble_size,
                                                    self.config.seed or 0)
        return self._bootstrap_w

    def _run_stage1(self, n: int):
        done = self.schedule.done[K.PHASE_ARDNEM]
        if self.stage1_status is None:
            if done == 0:
                self._stage1_begin()
            else:  # restored mid-Stage I from a checkpoint written before the Stage I cache existed
                self.stage1_status = S1.TRAINED
        elif self.stage1_status == S1.TRAINED and done > 0:
            self._stage1_adopt_published()
        if self.stage1_status == S1.HIT:
            # Loaded at the first Stage I iteration: the others only count, so that a run that hit
            # evaluates, checkpoints and stops at the same iterations as the run that trained it,
            # and reports the losses that run measured.
            last = done + n - 1
            if 0 <= last < len(self._stage1_losses):
                self.metrics.log_value((LEARNER_RESULTS, K.ARDNEM_MODULE_ID, K.ARDNEM_LOSS),
                                       float(self._stage1_losses[last]), window=1)
            return None
        results = self._stage1_train(n)
        if done + n >= self.config.ardnem_updates:
            self._stage1_finish()
        return results

    def _stage1_train(self, n: int):
        import torch

        threads = self.config.ardnem_num_torch_threads
        previous = torch.get_num_threads() if threads else None
        if threads:
            torch.set_num_threads(int(threads))
        try:
            results = None
            for _ in range(n):
                results = self.update_learners(self._ardnem_batch())
                loss = S1.learner_value(results, K.ARDNEM_MODULE_ID, K.ARDNEM_LOSS)
                self._stage1_losses.append(float("nan") if loss is None else loss)
            return results
        finally:
            if previous:
                torch.set_num_threads(previous)

    def _stage1_store(self) -> Optional[S1.Stage1Cache]:
        """This run's entry in the Stage I store, or None (off, ``seed=None``, or unusable: logged)."""
        from pathlib import Path

        cfg = self.config
        location = S1.resolve_location(cfg.stage1_cache)
        self.stage1_info = {"store": location, "node_id": ray.get_runtime_context().get_node_id()}
        if location is None or cfg.seed is None:
            self.stage1_status = S1.OFF
            self.stage1_info["reason"] = "seed=None" if location else "stage1_cache off"
            return None
        try:
            cache = S1.Stage1Cache(location, S1.key_fields(cfg, Path(self.store.cache_dir).name))
        except (ValueError, OSError) as e:
            logger.warning("SIT: stage1_cache=%r cannot be used (%s); training Stage I without it", cfg.stage1_cache, e)
            self.stage1_status, self.stage1_info["reason"] = S1.UNAVAILABLE, str(e)
            return None
        self.stage1_info["key"] = cache.key
        return cache

    def _stage1_begin(self) -> None:
        """First Stage I iteration: load the stored ARDNEM, or train it (holding the lock)."""
        self._stage1_losses = []
        cache = self._stage1_store()
        if cache is None:
            return
        try:
            payload, waited = cache.claim(self.config.stage1_cache_timeout_s,
                                          info={"node_id": self.stage1_info.get("node_id")})
        except OSError as e:
            logger.warning("SIT: the Stage I store %s failed (%s); training Stage I without it", cache.location, e)
            self.stage1_status, self.stage1_info["reason"] = S1.UNAVAILABLE, str(e)
            return
        self.stage1_info["wait_seconds"] = round(waited, 3)
        if payload is not None and self._stage1_load(payload):
            self.stage1_status = S1.HIT
            logger.info("SIT: Stage I loaded from %s", cache.store.describe(cache.key))
            return
        self.stage1_status = S1.TRAINED
        self._stage1 = cache

    def _stage1_adopt_published(self) -> None:
        """Training Stage I, but another run stored it meanwhile (this run was restored from a
        checkpoint after a crash, or took over a stale lock, or stopped waiting): load that one
        and only count the rest of Stage I, as a run that found it at once does."""
        if self._stage1 is None:  # restored from a checkpoint: no store opened yet
            self._stage1 = self._stage1_store()  # None: off or unusable (the status says which)
            if self._stage1 is None:
                return
        try:
            payload = self._stage1.lookup()
        except OSError as e:
            logger.warning("SIT: the Stage I store %s failed (%s)", self._stage1.location, e)
            return
        if payload is not None and self._stage1_load(payload):
            logger.info("SIT: Stage I was stored by another run meanwhile; loaded it from %s",
                        self._stage1.store.describe(self._stage1.key))
            self._stage1.release()
            self._stage1 = None
            self.stage1_status = S1.HIT
            self.stage1_info["adopted"] = True

    def _stage1_load(self, payload) -> bool:
        """Put a stored Stage I into this run: ARDNEM weights, its optimizer state and update count,
        the RNG after Stage I, the per-update losses. False (nothing changed) if it does not fit."""
        from ray.rllib.core import COMPONENT_LEARNER

        mid = K.ARDNEM_MODULE_ID
        current = self.learner_group.get_state(components=f"{COMPONENT_LEARNER}/rl_module/{mid}")[COMPONENT_LEARNER]
        mine = current["rl_module"][mid]
        theirs = payload["module_state"]
        if set(mine) != set(theirs) or any(np.shape(mine[k]) != np.shape(theirs[k]) for k in mine):
            logger.warning("SIT: the stored ARDNEM's parameters do not match this run's module; training Stage I")
            return False
        updates = dict(current.get("module_updates") or {})
        updates[mid] = payload["module_updates"]
        self.learner_group.set_state({COMPONENT_LEARNER: {
            "rl_module": {mid: theirs}, "optimizer": payload["optimizer_state"], "module_updates": updates}})
        self.rng.bit_generator.state = payload["rng_state"]
        self._stage1_losses = list(payload["losses"])
        return True

    def _stage1_finish(self) -> None:
        """Last Stage I update done: store it (first writer wins) and release the lock."""
        from ray.rllib.core import COMPONENT_LEARNER

        if self.stage1_status != S1.TRAINED:
            return
        cache = self._stage1 or self._stage1_store()  # None after a restore with the cache off
        self._stage1 = None
        if cache is None:
            return
        mid = K.ARDNEM_MODULE_ID
        state = self.learner_group.get_state(components=[f"{COMPONENT_LEARNER}/rl_module/{mid}",
                                                         f"{COMPONENT_LEARNER}/optimizer"])[COMPONENT_LEARNER]
        payload = {"module_state": state["rl_module"][mid],
                   "optimizer_state": {k: v for k, v in state.get("optimizer", {}).items() if v.get("module_id") == mid},
                   "module_updates": int((state.get("module_updates") or {}).get(mid, self.config.ardnem_updates)),
                   "rng_state": self.rng.bit_generator.state, "losses": list(self._stage1_losses)}
        try:
            self.stage1_info["published"] = cache.publish(payload)  # releases the lock
        except (OSError, ValueError, TypeError) as e:
            logger.warning("SIT: could not store Stage I in %s (%s)", cache.location, e)
            self.stage1_info["published"] = False
            cache.release()

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
                                                       tuple(cfg.priority_range), cfg.prioritized,
                                                       cfg.priority_scale, self.dper_return_range)
        u_hat = self._u_hat_floor(res[stage2.R_HAT], res[stage2.U_HAT], probs)
        self._start_dper()
        step_values = {K.REWARD_HAT: res[stage2.R_HAT], K.UNCERTAINTY: u_hat}
        ray.get([self.dper.set_step_values.remote(step_values), self.dper.set_probabilities.remote(probs)])
        self._set_dper_gather(step_values)
        self._set_r_hat_stats(res[stage2.R_HAT])

    def _set_dper_gather(self, step_values: Dict[str, np.ndarray]) -> None:
        """This process's gatherer of Stage III batches: the episodes it already maps, and the r̂/û
        the DPER actor holds (the actor keeps its copy: it is in the actor's checkpointed state)."""
        self._dper_gather = TrajectoryGatherer(self.store.columns, self.agent_modules)
        self._dper_gather.set_step_values(step_values)

    def _u_hat_floor(self, r_hat: np.ndarray, u_hat: np.ndarray, probs: Dict[str, np.ndarray]) -> np.ndarray:
        """The floor of û (absolute, or relative to mean |r̂|), how often it binds (over the dataset's
        real steps, and in expectation under each type's DPER distribution), and the û Stage III
        gets: unchanged in "absolute" mode (the learner clamps), clamped here in "relative" mode."""
        cfg = self.config
        filled = np.asarray(self.store[S.FILLED], bool)
        floor = K.uncertainty_floor_value(r_hat, filled, cfg.uncertainty_floor, cfg.uncertainty_floor_mode)
        self.u_hat_stats = {K.U_HAT_FLOOR: floor, K.U_HAT_CLAMPED_FRACTION: K.clamped_fraction(u_hat, filled, floor)}
        members = module_members(self.agent_modules)
        for m, p in probs.items():
            self.dper_summary[m][K.U_HAT_CLAMPED_FRACTION] = K.sampled_clamped_fraction(u_hat, filled, floor, p,
                                                                                        members[m])
        return np.maximum(u_hat, np.float32(floor)) if cfg.uncertainty_floor_mode == "relative" else u_hat

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
        """``n`` updates on DPER batches. The actor draws the (episode, agent) indices of up to
        ``DPER_UPDATES_PER_CALL`` updates per round trip (``sample_indices_many``: the draws and RNG
        stream of as many ``sample`` calls), the next round trip prefetched while these train, never
        past this iteration; this process gathers each batch from its own memory map (the same
        arrays ``sample`` returns, without the actor's gather and the object store's copies)."""
        results = None
        size = self.config.batch_size_episodes
        chunks = [min(DPER_UPDATES_PER_CALL, n - start) for start in range(0, n, DPER_UPDATES_PER_CALL)]
        pending = self.dper.sample_indices_many.remote(size, chunks[0]) if chunks else None
        for c, count in enumerate(chunks):
            try:
                indices = ray.get(pending)
            except ray.exceptions.RayActorError:
                self._rebuild_dper()
                indices = ray.get(self.dper.sample_indices_many.remote(size, count))
            if c + 1 < len(chunks):
                pending = self.dper.sample_indices_many.remote(size, chunks[c + 1])
            for u in range(count):
                batch = self._dper_gather.gather_batch({m: (k[u], j[u]) for m, (k, j) in indices.items()})
                results = self.update_learners(batch)
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
        for key, v in self.u_hat_stats.items():
            m.log_value((ALGORITHM_RESULTS, key), float(v), window=1)
        if self.stage1_status is not None:
            m.log_value((ALGORITHM_RESULTS, "stage1_cache_hit"), float(self.stage1_status == S1.HIT), window=1)

    def _compile_iteration_results(self, *, train_results, eval_results):
        results = super()._compile_iteration_results(train_results=train_results, eval_results=eval_results)
        if self.stage1_status is not None:
            results["stage1_cache"] = dict(self.stage1_info, status=self.stage1_status)
        return results

    def cleanup(self) -> None:
        if getattr(self, "_stage1", None) is not None:
            self._stage1.release()  # a run stopped mid-Stage I lets a waiting run take over
            self._stage1 = None
        super().cleanup()

    def get_extra_state(self):
        return {"dper": ray.get(self.dper.get_state.remote()) if self.dper is not None else None,
                "dper_summary": self.dper_summary, "stage2_seconds": self.stage2_seconds,
                "dper_restarts": self.dper_restarts, "u_hat_stats": dict(self.u_hat_stats),
                "stage1": {"status": self.stage1_status, "info": dict(self.stage1_info),
                           "losses": np.asarray(self._stage1_losses, np.float64)}}

    def set_extra_state(self, state) -> None:
        self.dper_summary = state.get("dper_summary") or {}
        self.stage2_seconds = state.get("stage2_seconds")
        self.dper_restarts = int(state.get("dper_restarts", 0))
        self.u_hat_stats = dict(state.get("u_hat_stats") or {})
        stage1 = state.get("stage1") or {}
        self.stage1_status = stage1.get("status")
        self.stage1_info = dict(stage1.get("info") or {})
        self._stage1_losses = [float(x) for x in np.asarray(stage1.get("losses", []), np.float64)]
        if state.get("dper") is not None:
            self._start_dper()
            ray.get(self.dper.set_state.remote(state["dper"]))
            self._set_dper_gather(state["dper"]["step_values"])
            self._set_r_hat_stats(state["dper"]["step_values"][K.REWARD_HAT])
