"""pymarl-style HDF5 datasets (ICQ, CFCQL, OffPyMARL), read with ``h5py``.

One file holds a pymarl ``EpisodeBatch``: datasets shaped ``[episodes, limit + 1, ...]`` (one more
step than our schema's actions):

=================  ===========================  ==============================================
key                shape                        meaning
=================  ===========================  ==============================================
``obs``            [E, L+1, N, obs_dim]         o_i^t (t = length: the observation after the end)
``state``          [E, L+1, state_dim]          s^t
``actions``        [E, L+1, N, 1] or [E, L+1, N]  a_i^t (continuous: [E, L+1, N, act_dim])
``avail_actions``  [E, L+1, N, n_actions]       availability masks (discrete)
``reward``         [E, L+1, 1] or [E, L+1]      team reward r^t
``terminated``     [E, L+1, 1] or [E, L+1]      1 at the last step of an episode that really ended
``filled``         [E, L+1, 1] or [E, L+1]      1 for t = 0..length (pymarl also fills the step after the end)
=================  ===========================  ==============================================

``actions_onehot`` and other keys (OffPyMARL's ``corrected_terminated``) are not read; an optional
``truncated`` ([E, L+1(, 1)]) is checked like ``terminated``.

pymarl's ``filled`` convention: an episode of ``length`` steps fills ``length + 1`` slots, t = 0..length
(the runner writes the observation after the last step into a filled slot), so ``length =
sum(filled) - 1``; ``terminated`` (and ``truncated``) can only sit on the last step, ``length - 1``.
Where the layout is ambiguous the import fails naming the file, the key and the episode, rather
than guess (a file written with another convention would otherwise import one step short):

* a ``terminated``/``truncated`` flag at any other step, inside or outside the filled slots;
* no ``terminated`` (or ``truncated``) flag in an episode that ends before the limit (the file's
  ``limit`` or the env's episode limit, the smaller): pymarl sets ``terminated`` on every end but
  the time limit's.

An episode of the full limit without ``terminated`` was cut by the time limit (``truncated``).
Several files (OffPyMARL splits one quality) are read in the order given.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List

import numpy as np

from rllib_sit.data.importers.common import Row, Source, episode_row, expect_ndim, expect_size, integer_actions
from rllib_sit.data.validation import DatasetError
from rllib_sit.envs.base import EnvInfo

FORMAT = "pymarl-hdf5"
SUFFIXES = (".h5", ".hdf5", ".hdf")
OBS, STATE, ACTIONS, AVAIL, REWARD, TERMINATED, FILLED = (
    "obs", "state", "actions", "avail_actions", "reward", "terminated", "filled")
TRUNCATED = "truncated"  # optional
BLOCK_EPISODES = 256  # episodes read per h5py slice


def detect(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(SUFFIXES):
        return True
    import h5py

    return bool(h5py.is_hdf5(path))


def _open(path: str):
    import h5py

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; expected a pymarl HDF5 dataset")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


def _required(env: EnvInfo) -> List[str]:
    return [OBS, STATE, ACTIONS, REWARD, TERMINATED, FILLED] + ([AVAIL] if env.discrete else [])


def _check_file(f, path: str, env: EnvInfo) -> int:
    """Check keys and sizes of one file against ``env``; returns its number of episodes."""
    import h5py

    for key in _required(env):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise DatasetError(f"{path}: missing dataset {key!r}; expected pymarl keys {_required(env)}")
    shapes = {k: tuple(f[k].shape) for k in _required(env)}
    E, L1 = shapes[OBS][:2] if len(shapes[OBS]) >= 2 else (0, 0)
    for key, shape in shapes.items():
        if shape[:2] != (E, L1):
            raise DatasetError(f"{path}: dataset {key!r} has shape {list(shape)}; expected [episodes, limit+1, ...] "
                               f"= [{E}, {L1}, ...] like 'obs'")
    N = env.n_agents
    where = f"{path}:{OBS}"
    expect_ndim(where, OBS, shapes[OBS], (4,), "[episodes, limit+1, n_agents, obs_dim]")
    expect_size(where, OBS, shapes[OBS][2], N, "agent count (axis 2)", env)
    expect_size(where, OBS, shapes[OBS][3], env.obs_dim, "observation size (axis 3)", env)
    expect_ndim(f"{path}:{STATE}", STATE, shapes[STATE], (3,), "[episodes, limit+1, state_dim]")
    expect_size(f"{path}:{STATE}", STATE, shapes[STATE][2], env.state_dim, "state size (axis 2)", env)
    a, where = shapes[ACTIONS], f"{path}:{ACTIONS}"
    if env.discrete:
        expect_ndim(where, ACTIONS, a, (3, 4), "[episodes, limit+1, n_agents, 1] action indices")
        if len(a) == 4:
            expect_size(where, ACTIONS, a[3], 1, "action entries per agent (axis 3)", env)
        av = shapes[AVAIL]
        expect_ndim(f"{path}:{AVAIL}", AVAIL, av, (4,), "[episodes, limit+1, n_agents, n_actions]")
        expect_size(f"{path}:{AVAIL}", AVAIL, av[2], N, "agent count (axis 2)", env)
        expect_size(f"{path}:{AVAIL}", AVAIL, av[3], env.n_actions, "action count (axis 3)", env)
    else:
        expect_ndim(where, ACTIONS, a, (4,), "[episodes, limit+1, n_agents, act_dim]")
        expect_size(where, ACTIONS, a[3], env.act_dim, "action size (axis 3)", env)
    expect_size(where, ACTIONS, a[2], N, "agent count (axis 2)", env)
    if TRUNCATED in f:
        if not isinstance(f[TRUNCATED], h5py.Dataset) or tuple(f[TRUNCATED].shape)[:2] != (E, L1):
            raise DatasetError(f"{path}: dataset {TRUNCATED!r} has shape {list(getattr(f[TRUNCATED], 'shape', []))}; "
                               f"expected [episodes, limit+1, 1] = [{E}, {L1}, 1] like 'obs'")
        shapes[TRUNCATED] = tuple(f[TRUNCATED].shape)
    for key in (REWARD, TERMINATED, FILLED) + ((TRUNCATED,) if TRUNCATED in shapes else ()):
        shape = shapes[key]
        expect_ndim(f"{path}:{key}", key, shape, (2, 3), "[episodes, limit+1, 1] or [episodes, limit+1]")
        if len(shape) == 3:
            expect_size(f"{path}:{key}", key, shape[2], 1, "entries per step (axis 2)", env)
    if E < 1 or L1 < 2:
        raise DatasetError(f"{path}: 'obs' has shape {list(shapes[OBS])}; expected at least one episode of one step")
    return int(E)


def _attrs(f) -> Dict[str, Any]:
    out = {}
    for k, v in f.attrs.items():
        v = v.decode() if isinstance(v, bytes) else v
        out[str(k)] = v.tolist() if isinstance(v, np.ndarray) else (v.item() if isinstance(v, np.generic) else v)
    return out


def open_source(paths: List[str], env: EnvInfo, **_) -> Source:
    """Open pymarl HDF5 files (read in the order given) for import into ``env``'s schema."""
    if not paths:
        raise ValueError(f"{FORMAT}: give at least one HDF5 file")
    files = [os.path.abspath(p) for p in paths]
    claims: Dict[str, Any] = {"files": {}}
    for path in files:
        with _open(path) as f:
            E = _check_file(f, path, env)
            claims["files"][os.path.basename(path)] = {
                "episodes": E, "limit_plus_one": int(f[OBS].shape[1]), "attrs": _attrs(f),
                "unused_keys": sorted(k for k in f.keys() if k not in _required(env))}
    notes: Dict[str, Any] = {"team_reward": "the file's reward (already a team reward)"}
    stem = os.path.splitext(os.path.basename(files[0]))[0]
    return Source(format=FORMAT, paths=files, claims=claims, quality=stem, rows=_rows(files, env), notes=notes)


def _flat(x: np.ndarray) -> np.ndarray:
    """[B, L+1, 1] or [B, L+1] -> [B, L+1]."""
    return x.reshape(x.shape[0], x.shape[1])


def _end_flag(flags: np.ndarray, key: str, L: int, where: str) -> bool:
    """Whether the episode's ``key`` flag is set; an error if it is set anywhere but step ``L - 1``."""
    steps = np.flatnonzero(flags)
    wrong = steps[steps != L - 1]
    if wrong.size:
        t = int(wrong[0])
        inside = "" if t < L else f", outside the episode's steps 0..{L - 1}"
        raise DatasetError(f"{where}: field {key!r} is set at step {t}{inside}, but 'filled' gives length {L} "
                           f"(pymarl fills t = 0..length: sum(filled) - 1 steps); expected {key!r} only at step "
                           f"{L - 1} (the last)")
    return bool(steps.size)


def _rows(files: List[str], env: EnvInfo) -> Iterator[Row]:
    episode_id = 0
    for path in files:
        with _open(path) as f:
            E, L1 = f[OBS].shape[:2]
            limit = min(int(env.episode_limit), int(L1) - 1)
            keys = _required(env) + ([TRUNCATED] if TRUNCATED in f else [])
            for e0 in range(0, E, BLOCK_EPISODES):
                e1 = min(E, e0 + BLOCK_EPISODES)
                try:
                    block = {k: np.asarray(f[k][e0:e1]) for k in keys}
                except OSError as e:
                    raise DatasetError(f"{path}: could not read episodes {e0}..{e1 - 1} (truncated or corrupt?): "
                                       f"{e}") from None
                filled, term = _flat(block[FILLED]) != 0, _flat(block[TERMINATED]) != 0
                trunc = _flat(block[TRUNCATED]) != 0 if TRUNCATED in block else None
                reward = _flat(block[REWARD]).astype(np.float32)
                actions = block[ACTIONS]
                if env.discrete:
                    actions = integer_actions(actions.reshape(actions.shape[:3]), f"{path}:{ACTIONS}", ACTIONS)
                for k in range(e1 - e0):
                    where = f"{path}: episode {e0 + k}"
                    n_filled = int(filled[k].sum())
                    if not filled[k, :n_filled].all():
                        raise DatasetError(f"{where}: field 'filled' is not a prefix of ones; expected 1 for "
                                           f"t = 0..length, then 0")
                    L = n_filled - 1
                    if L < 1:
                        raise DatasetError(f"{where}: field 'filled' marks {n_filled} step(s); expected at least 2 "
                                           f"(pymarl fills t = 0..length)")
                    terminated = _end_flag(term[k], TERMINATED, L, where)
                    truncated = trunc is not None and _end_flag(trunc[k], TRUNCATED, L, where)
                    if terminated and truncated:
                        raise DatasetError(f"{where}: fields 'terminated' and 'truncated' are both set at step "
                                           f"{L - 1}; expected one of them")
                    if not (terminated or truncated) and L < limit:
                        raise DatasetError(f"{where}: field 'terminated' is not set, but the episode ends at length "
                                           f"{L}, before the limit {limit} ('filled' marks {n_filled} slots: length "
                                           f"+ 1, pymarl's convention); expected 'terminated' at step {L - 1}, or a "
                                           f"file whose 'filled' covers t = 0..length")
                    yield episode_row(env, episode_id, block[OBS][k, : L + 1], block[STATE][k, : L + 1],
                                      block[AVAIL][k, : L + 1] if env.discrete else None, actions[k, :L],
                                      reward[k, :L], terminated, where)
                    episode_id += 1
