"""The dataset side of off-policy evaluation: transitions, features, initial states, behaviour probabilities.

:class:`OPEData` wraps the same :class:`~rllib_sit.data.episode_store.EpisodeStore` the algorithms
train from (the column cache, memory-mapped) and adds what an evaluator needs:

* every real step ``(k, t)`` of the dataset as a transition, and whether it bootstraps
  (:func:`bootstrap_flags`: a finite-horizon episode ends at its last step, terminated or cut by
  the limit; with ``bootstrap_truncated`` a time-limit end bootstraps from ``o^length``);
* the critic's inputs at any ``(k, t)``: the global state ``s^t``, every agent's ``o_i^t`` (each
  standardised by dataset statistics) and the time feature ``t / T``;
* the initial steps ``(k, 0)`` (the estimate's start states);
* optionally the behaviour policy's log-probabilities :data:`BEHAVIOUR_LOGP` (an optional column
  written by the generator for discrete envs, or added by :func:`with_behaviour_logp`), for
  importance sampling.

Nothing here knows about checkpoints or torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.envs.base import EnvInfo

# Optional dataset column (defined in the shared schema, rllib_sit.data.schema.BEHAVIOUR_LOGP):
# log μ_i(a_i^t | ·) of the behaviour policy, per-episode shape [T, N] float32 (0 on padding).
# The generator writes it for discrete-action envs (the pool members' exact probabilities, see
# rllib_sit.data.generation); with_behaviour_logp adds it to any dataset.
BEHAVIOUR_LOGP = S.BEHAVIOUR_LOGP

# Steps used for the feature standardisation statistics (a uniform sample of the real steps).
STATS_SAMPLE = 50_000


class OPEDataError(ValueError):
    """A dataset an evaluator cannot use: the message names the dataset and what was expected."""


def bootstrap_flags(terminated: np.ndarray, filled: np.ndarray, bootstrap_truncated: bool = False) -> np.ndarray:
    """``[K, T]`` float 0/1: whether the TD target of step t bootstraps from step t+1.

    Finite horizon (default): only a real step followed by another real step bootstraps, so the
    last step of every episode (terminated or cut by the episode limit) has target ``y = r``, and
    Q^π(s^t, a^t) is the expected sum of the rewards left in the episode: what the simulator's
    episode return measures from t = 0. ``bootstrap_truncated``: a last step that is not a real
    termination also bootstraps (from the stored ``o^length``), the infinite-horizon reading.
    """
    filled = np.asarray(filled) > 0
    term = np.asarray(terminated) > 0
    nxt = np.zeros_like(filled)
    nxt[:, :-1] = filled[:, 1:]
    boot = filled & nxt & ~term
    if bootstrap_truncated:
        boot = filled & ~term
    return boot.astype(np.float32)


@dataclass
class OPEData:
    """A dataset opened for evaluation. Build it with :meth:`open`.

    Attributes: ``path``, ``info`` (:class:`EnvInfo`), ``columns`` (the store's memory maps),
    ``k``/``t`` (episode and step index of every real step, episode-major), ``bootstrap`` ([n]
    float 0/1), ``lengths`` ([K]), ``state_mean``/``state_std``, ``obs_mean``/``obs_std``
    (standardisation of the critic inputs), ``behaviour_logp`` ([K, T, N] or None), ``bootstrap_truncated``.
    """

    path: str
    info: EnvInfo
    columns: Mapping[str, np.ndarray]
    k: np.ndarray
    t: np.ndarray
    bootstrap: np.ndarray
    lengths: np.ndarray
    state_mean: np.ndarray
    state_std: np.ndarray
    obs_mean: np.ndarray
    obs_std: np.ndarray
    behaviour_logp: Optional[np.ndarray] = None
    bootstrap_truncated: bool = False
    card: Dict[str, Any] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, *, bootstrap_truncated: bool = False, cache_root: Optional[str] = None,
             validate: str = "full", progress: bool = False) -> "OPEData":
        """Open the dataset folder or URI ``path`` (its column cache is built on first use, shared
        with the algorithms); reads :data:`BEHAVIOUR_LOGP` too when the dataset has that column."""
        from rllib_sit.data.episode_store import EpisodeStore, has_scheme

        if not has_scheme(path):
            path = os.path.abspath(os.path.expanduser(path))
            if not os.path.isdir(path):
                raise FileNotFoundError(f"{path}: no such dataset folder; expected a dataset written by "
                                        f"'rllib-sit data generate' / 'data import' (or MAP/QUALITY[/EPISODES[/SEED]])")
        store = EpisodeStore.open(path, validate=validate, cache_root=cache_root, progress=progress)
        card = {}
        if not has_scheme(path):
            from rllib_sit.data.card import read_card

            try:
                card = read_card(path)
            except Exception:  # noqa: BLE001 - a card is informative only
                card = {}
        behaviour = _read_behaviour_logp(path, store.info, cache_root)
        return cls.from_columns(store.columns, store.info, path=path, bootstrap_truncated=bootstrap_truncated,
                                behaviour_logp=behaviour, card=card)

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray], info: EnvInfo, *, path: str = "<memory>",
                     bootstrap_truncated: bool = False, behaviour_logp: Optional[np.ndarray] = None,
                     card: Optional[Dict[str, Any]] = None, seed: int = 0) -> "OPEData":
        """From in-memory columns ``{obs, state, actions, reward, terminated, filled, [avail_actions]}``."""
        need = [S.OBS, S.STATE, S.ACTIONS, S.REWARD, S.TERMINATED, S.FILLED] + \
            ([S.AVAIL_ACTIONS] if info.discrete else [])
        missing = [c for c in need if c not in columns]
        if missing:
            raise OPEDataError(f"{path}: missing column(s) {missing}; expected {need}")
        filled = np.asarray(columns[S.FILLED]) > 0
        K, T = filled.shape
        if K == 0 or not filled[:, 0].all():
            raise OPEDataError(f"{path}: every episode needs at least one step (filled[:, 0] = 1); got {K} episodes")
        lengths = filled.sum(1).astype(np.int64)
        boot = bootstrap_flags(columns[S.TERMINATED], filled, bootstrap_truncated)
        k, t = np.nonzero(filled)
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(k), size=min(len(k), STATS_SAMPLE), replace=False) if len(k) > STATS_SAMPLE \
            else np.arange(len(k))
        pick = np.sort(pick)  # k is episode-major: sorted rows read the memory maps in order
        kk, tt = k[pick], t[pick]
        state = np.asarray(columns[S.STATE][kk, tt], np.float64)
        obs = np.asarray(columns[S.OBS][kk, tt], np.float64).reshape(-1, info.obs_dim)
        if behaviour_logp is not None:
            behaviour_logp = np.asarray(behaviour_logp, np.float32)
            want = (K, T, info.n_agents)
            if behaviour_logp.shape != want:
                raise OPEDataError(f"{path}: column {BEHAVIOUR_LOGP!r} has shape {list(behaviour_logp.shape)}, "
                                   f"expected {list(want)} (episodes, T, agents)")
            bad = ~np.isfinite(behaviour_logp[filled]) | (behaviour_logp[filled] > 1e-4)
            if bad.any() and info.discrete:
                raise OPEDataError(f"{path}: column {BEHAVIOUR_LOGP!r} holds NaN/inf or log-probabilities > 0 at "
                                   f"{int(bad.sum())} real step(s); expected log μ_i(a_i^t) <= 0")
        return cls(path=path, info=info, columns=columns, k=k.astype(np.int64), t=t.astype(np.int64),
                   bootstrap=boot[k, t], lengths=lengths, state_mean=state.mean(0).astype(np.float32),
                   state_std=_std(state), obs_mean=obs.mean(0).astype(np.float32), obs_std=_std(obs),
                   behaviour_logp=behaviour_logp, bootstrap_truncated=bootstrap_truncated, card=dict(card or {}))

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def num_transitions(self) -> int:
        return int(self.k.shape[0])

    @property
    def T(self) -> int:
        return int(self.info.episode_limit)

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode (what the simulator's return measures)."""
        r = np.asarray(self.columns[S.REWARD], np.float64) * (np.asarray(self.columns[S.FILLED]) > 0)
        return r.sum(1)

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """``[n]`` discounted return-to-go of every transition, ``G_t = r_t + γ · b_t · G_{t+1}``,
        aligned with ``k``/``t`` (a time-limit end that bootstraps contributes nothing past the data)."""
        K, T = self.num_episodes, self.columns[S.REWARD].shape[1]
        r = np.asarray(self.columns[S.REWARD], np.float64) * (np.asarray(self.columns[S.FILLED]) > 0)
        b = np.zeros((K, T + 1))
        b[self.k, self.t] = self.bootstrap
        g = np.zeros((K, T + 1))
        for t in range(T - 1, -1, -1):
            g[:, t] = r[:, t] + gamma * b[:, t] * g[:, t + 1]
        return g[self.k, self.t]

    # -- critic inputs ----------------------------------------------------------------------------
    def features(self, k: np.ndarray, t: np.ndarray) -> Dict[str, np.ndarray]:
        """Standardised critic inputs at steps ``(k, t)``: ``state [B, S]``, ``obs [B, N, od]``,
        ``time [B, 1]`` (= t / T), float32."""
        c = self.columns
        state = (np.asarray(c[S.STATE][k, t], np.float32) - self.state_mean) / self.state_std
        obs = (np.asarray(c[S.OBS][k, t], np.float32) - self.obs_mean) / self.obs_std
        time = (np.asarray(t, np.float32) / float(self.T))[:, None]
        return {"state": state, "obs": obs, "time": time}

    def dataset_actions(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """a^t of the data at ``(k, t)``: ``[B, N]`` int64 / ``[B, N, A]`` float32."""
        a = np.asarray(self.columns[S.ACTIONS][k, t])
        return a.astype(np.int64) if self.info.discrete else a.astype(np.float32)

    def rewards(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.asarray(self.columns[S.REWARD][k, t], np.float32)


def _std(x: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation, constant features mapped to 1 (no division by ~0)."""
    s = x.std(0)
    return np.where(s < 1e-6, 1.0, s).astype(np.float32)


def _read_behaviour_logp(path: str, info: EnvInfo, cache_root: Optional[str]) -> Optional[np.ndarray]:
    """The dataset's :data:`BEHAVIOUR_LOGP` column ``[K, T, N]`` (memory-mapped), or None without it."""
    from rllib_sit.data import read_dataset
    from rllib_sit.data.column_cache import open_columns

    ds = read_dataset(path, validate="none")
    if BEHAVIOUR_LOGP not in ds.schema.names:
        return None
    return open_columns(ds, [BEHAVIOUR_LOGP], root=cache_root, validate=False)[BEHAVIOUR_LOGP]


def with_behaviour_logp(src: str, out: str, logp_fn: Callable[[Dict[str, np.ndarray]], np.ndarray],
                        *, how: str, overwrite: bool = False) -> str:
    """Copy the dataset ``src`` to ``out`` with the :data:`BEHAVIOUR_LOGP` column added.

    ``logp_fn(batch) -> [B, T, N]`` gets numpy batches of whole episodes (every column) and returns
    log μ_i(a_i^t | ·) of the policy that generated them (0 on padding). ``how`` (e.g. ``"uniform
    over available actions"``) is written to the card as ``behaviour_logp``. The copy is written
    like every dataset (temporary folder, renamed when complete).
    """
    from rllib_sit.data import read_dataset, write_dataset
    from rllib_sit.data.card import read_card

    ds = read_dataset(src)
    T, N = ds.env.episode_limit, ds.env.n_agents

    def rows():
        for batch in ds.iter_batches(64, backend="arrow"):
            lp = np.asarray(logp_fn(batch), np.float32)
            B = len(batch[S.LENGTH])
            if lp.shape != (B, T, N):
                raise OPEDataError(f"with_behaviour_logp: logp_fn returned shape {list(lp.shape)}, expected "
                                   f"{[B, T, N]}")
            lp = lp * (np.asarray(batch[S.FILLED]) > 0)[..., None]
            for i in range(B):
                row = {c: v[i] for c, v in batch.items()}
                row[BEHAVIOUR_LOGP] = lp[i]
                yield row

    card = {k: v for k, v in read_card(src).items()
            if k not in ("env", "n_episodes", "return_mean", "return_std", "return_min", "return_max",
                         "schema_version", "package_version")}
    card["behaviour_logp"] = how
    return write_dataset(rows(), out, ds.meta, card, overwrite=overwrite)


def uniform_behaviour_logp(batch: Dict[str, np.ndarray]) -> np.ndarray:
    """log μ for a dataset whose agents all act uniformly over their available actions
    (:func:`rllib_sit.data.synthetic.make_random_dataset`): ``-log |avail_i^t|`` (discrete only)."""
    avail = np.asarray(batch[S.AVAIL_ACTIONS])[:, :-1]
    n = np.maximum(avail.sum(-1), 1.0)
    return -np.log(n)


def episode_subset(data: OPEData, episodes: Sequence[int]) -> np.ndarray:
    """Transition indices (into ``data.k``) of the episodes ``episodes`` (with repeats: a bootstrap
    resample of episodes gives each repeat its own copy of the episode's transitions)."""
    starts = np.concatenate([[0], np.cumsum(data.lengths)])
    return np.concatenate([np.arange(starts[e], starts[e + 1]) for e in np.asarray(episodes, np.int64)])
