"""What every dataset importer shares: the source description, size checks against the env, and
the construction of schema-v1 episode rows from the unpadded arrays of one episode.

An importer turns a foreign file into a :class:`Source`: what it claims to be (``claims``, kept
on the card), and a generator of schema rows. Sizes are checked against our env when the source
is opened, before any row is produced, so a dataset of another map fails with one error naming
the file, the field and the expected size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.data.validation import DatasetError
from rllib_sit.envs.base import EnvInfo

Row = Dict[str, np.ndarray]

# How per-agent rewards become the team reward r_tot (cooperative datasets repeat one team reward
# for every agent, so the three agree there; they differ only for truly per-agent rewards).
TEAM_REWARDS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda r: r.astype(np.float64).mean(axis=-1),  # float64: equal rewards come back exactly
    "sum": lambda r: r.astype(np.float64).sum(axis=-1),
    "first": lambda r: r[..., 0],
}


@dataclasses.dataclass
class Source:
    """An opened foreign dataset.

    Attributes:
        format: registry name of the format (``"og-marl-vault"``, ``"pymarl-hdf5"``).
        paths: absolute paths of what was read (a vault folder, HDF5 files).
        claims: what the source says about itself (names, versions, attributes), for the card.
        quality: the quality name the source implies (a vault's uid, e.g. ``"Good"``), if any.
        rows: generator of schema-v1 rows (episode ids 0, 1, ...); reading happens while iterating.
        notes: facts gathered while reading (dropped steps, reward reduction), for the card; complete
            once ``rows`` is exhausted.
    """

    format: str
    paths: List[str]
    claims: Dict[str, Any]
    quality: Optional[str]
    rows: Iterator[Row]
    notes: Dict[str, Any] = dataclasses.field(default_factory=dict)


def expect_size(where: str, field: str, got: int, want: int, what: str, env: EnvInfo) -> None:
    """One clear error if a size of the source differs from our env's."""
    if int(got) != int(want):
        raise DatasetError(f"{where}: field {field!r} has {what} {int(got)}, expected {int(want)} for {env.env_id} "
                           f"(is this dataset from another environment or version? check --env)")


def expect_ndim(where: str, field: str, shape: tuple, ndims: tuple, layout: str) -> None:
    if len(shape) not in ndims:
        raise DatasetError(f"{where}: field {field!r} has shape {list(shape)}; expected {layout}")


def team_reward(rewards: np.ndarray, how: str) -> np.ndarray:
    """``[steps, N]`` per-agent rewards (or ``[steps]`` team rewards) -> ``[steps]``."""
    if rewards.ndim == 1:
        return rewards
    return TEAM_REWARDS[how](rewards)


def check_team_reward(how: str) -> None:
    if how not in TEAM_REWARDS:
        raise ValueError(f"team_reward={how!r} is invalid; expected one of {sorted(TEAM_REWARDS)}")


def integer_actions(actions: np.ndarray, where: str, field: str) -> np.ndarray:
    """Discrete actions stored as floats or ints -> int64 (non-integral values are an error)."""
    if actions.dtype.kind == "f":
        if not np.all(np.isfinite(actions)) or np.any(actions != np.round(actions)):
            raise DatasetError(f"{where}: field {field!r} holds non-integral discrete actions; expected action "
                               f"indices")
    return actions.astype(np.int64)


def episode_row(env: EnvInfo, episode_id: int, obs: np.ndarray, state: np.ndarray, avail: Optional[np.ndarray],
                actions: np.ndarray, reward: np.ndarray, terminated: bool, where: str) -> Row:
    """A schema row from one episode's unpadded arrays.

    ``obs [L+1, N, obs_dim]``, ``state [L+1, state_dim]``, ``avail [L+1, N, n_actions]`` (discrete)
    hold t = 0..L (the last entry is the observation after the last step); ``actions [L, N(, A)]``,
    ``reward [L]``. ``terminated``: the episode really ended (else it was cut: ``truncated``).
    """
    T, L = env.episode_limit, int(actions.shape[0])
    if L < 1:
        raise DatasetError(f"{where}: an episode without steps; expected at least one")
    if L > T:
        raise DatasetError(f"{where}: an episode of {L} steps, more than the episode limit {T} of {env.env_id}; "
                           f"expected episodes of at most {T} steps")
    N = env.n_agents

    def pad(x: np.ndarray, length: int, dtype) -> np.ndarray:
        out = np.zeros((length,) + x.shape[1:], dtype)
        out[: x.shape[0]] = x
        return out

    flag = np.zeros(T, np.uint8)
    term, trunc = flag.copy(), flag.copy()
    (term if terminated else trunc)[L - 1] = 1
    reward = np.asarray(reward, np.float32)
    row: Row = {
        S.OBS: pad(np.asarray(obs).reshape(L + 1, N, env.obs_dim), T + 1, np.float32),
        S.STATE: pad(np.asarray(state).reshape(L + 1, env.state_dim), T + 1, np.float32),
        S.ACTIONS: pad(actions, T, np.int64 if env.discrete else np.float32),
        S.REWARD: pad(reward, T, np.float32),
        S.TERMINATED: term,
        S.TRUNCATED: trunc,
        S.FILLED: (np.arange(T) < L).astype(np.uint8),
        S.LENGTH: np.int32(L),
        S.EPISODE_RETURN: np.float32(reward.sum(dtype=np.float64)),
        S.EPISODE_ID: np.int64(episode_id),
    }
    if env.discrete:
        row[S.AVAIL_ACTIONS] = pad(np.asarray(avail, np.float32), T + 1, np.float32)
    return row
