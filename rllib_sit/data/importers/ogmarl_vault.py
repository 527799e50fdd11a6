"""OG-MARL datasets: flashbax ``Vault`` folders, read with ``tensorstore`` alone (no JAX/flashbax).

Layout (flashbax ``flashbax/vault/vault.py``, Vault v1.x)::

    <dir>/<scenario>.vlt/<uid>/          uid = Good, Medium, Poor, Replay, ...
        metadata.json                    {"version": 1.2, "structure_shape": {...: "(1, T, N, 30)"},
                                          "structure_dtype": {...: "float32"}, ...extra metadata}
        manifest.ocdbt, d/...            one OCDBT database holding a zarr array per leaf

Leaves (zarr paths inside the OCDBT store end with a dot): ``observations.`` [B, T, N, obs_dim],
``actions.`` [B, T, N] (discrete) or [B, T, N, act_dim], ``rewards.``, ``terminals.`` and
``truncations.`` [B, T, N], ``infos.legals.`` [B, T, N, n_actions], ``infos.state.`` [B, T, state_dim],
and ``vault_index`` (int32 [1]: the number of valid steps; the time axis is allocated far longer).
B is 1 for OG-MARL. Row t of the flat time axis is (o_t, legals_t, s_t, a_t, r_t, done_t).

Conversion: episodes end where any agent's terminal or truncation flag is set; a trailing
unfinished episode is dropped (counted on the card). The observation after an episode's last step
is not stored in a vault: obs/state/legals at t = length repeat those of t = length - 1 (noted on
the card). An end at exactly our env's episode limit is recorded as ``truncated`` (OG-MARL's SMAC
wrapper records time-limit ends as terminals), any other end as ``terminated`` unless only its
truncation flag is set. Per-agent rewards become the team reward by ``team_reward``.
"""

from __future__ import annotations

import json
import os
from ast import literal_eval
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from rllib_sit.data.importers.common import (Row, Source, episode_row, expect_ndim, expect_size, integer_actions,
                                             team_reward)
from rllib_sit.data.validation import DatasetError
from rllib_sit.envs.base import EnvInfo

FORMAT = "og-marl-vault"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.ocdbt"
SUPPORTED_MAJOR = 1  # flashbax refuses vaults whose major version differs (version // 1)

OBSERVATIONS, ACTIONS, REWARDS = "observations.", "actions.", "rewards."
TERMINALS, TRUNCATIONS = "terminals.", "truncations."
LEGALS, STATE = "infos.legals.", "infos.state."
VAULT_INDEX = "vault_index"
# Steps read per block (every leaf is read one block at a time; a block holds whole episodes).
BLOCK_STEPS = 65536


def detect(path: str) -> bool:
    """A vault uid folder (has ``metadata.json`` and an OCDBT manifest) or a ``*.vlt`` folder."""
    if not os.path.isdir(path):
        return False
    if os.path.exists(os.path.join(path, METADATA_FILE)):
        return True
    return path.rstrip("/").endswith(".vlt") or bool(_uid_dirs(path))


def _uid_dirs(path: str) -> List[str]:
    return sorted(d for d in os.listdir(path) if os.path.exists(os.path.join(path, d, METADATA_FILE)))


def _resolve(path: str) -> str:
    """The uid folder of ``path`` (``<scenario>.vlt/<uid>``, or ``<scenario>.vlt`` holding one uid)."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such vault; expected <dir>/<scenario>.vlt/<uid> (e.g. 3m.vlt/Good)")
    if os.path.exists(os.path.join(path, METADATA_FILE)):
        return path
    uids = _uid_dirs(path) if os.path.isdir(path) else []
    if len(uids) == 1:
        return os.path.join(path, uids[0])
    if uids:
        raise DatasetError(f"{path}: holds several vaults {uids}; expected one of them, e.g. {path}/{uids[0]}")
    raise DatasetError(f"{path}: no {METADATA_FILE}; expected a flashbax vault folder <scenario>.vlt/<uid> with "
                       f"{METADATA_FILE} and {MANIFEST_FILE}")


def _read_metadata(uid_dir: str) -> Dict[str, Any]:
    where = os.path.join(uid_dir, METADATA_FILE)
    try:
        with open(where) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{where}: not valid JSON ({e}); expected the vault's metadata") from None
    if not isinstance(meta, dict) or "version" not in meta or "structure_shape" not in meta:
        raise DatasetError(f"{where}: no 'version'/'structure_shape'; expected flashbax vault metadata")
    try:
        major = int(float(meta["version"]) // 1)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: field 'version' is {meta['version']!r}; expected a number such as 1.2") from None
    if major != SUPPORTED_MAJOR:
        raise DatasetError(f"{where}: field 'version' is {meta['version']}; expected a flashbax vault "
                           f"{SUPPORTED_MAJOR}.x")
    return meta


def _leaf_shape(meta: Dict[str, Any], leaf: str) -> Optional[Tuple[int, ...]]:
    """The shape ``metadata.json`` records for ``leaf`` ("infos.legals." -> ["infos"]["legals"])."""
    node: Any = meta.get("structure_shape", {})
    for part in leaf.rstrip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    try:
        return tuple(literal_eval(node)) if isinstance(node, str) else None
    except (ValueError, SyntaxError):
        return None


class _Vault:
    """The zarr arrays of one vault uid folder, opened read-only through tensorstore."""

    def __init__(self, uid_dir: str, leaves: List[str]):
        import tensorstore as ts

        self.dir = uid_dir
        self.meta = _read_metadata(uid_dir)
        if not os.path.exists(os.path.join(uid_dir, MANIFEST_FILE)):
            raise DatasetError(f"{uid_dir}: no {MANIFEST_FILE}; expected the vault's OCDBT store (tensorstore "
                               f"zarr-over-OCDBT) beside {METADATA_FILE}")
        self.stores = {leaf: self._open(ts, leaf) for leaf in leaves}
        try:
            index = self._open(ts, VAULT_INDEX).read().result()
        except ValueError as e:
            raise DatasetError(f"{self.where(VAULT_INDEX)}: could not be read (truncated or corrupt?): {e}") from None
        if index.shape != (1,) or index.dtype.kind not in "iu":
            raise DatasetError(f"{self.where(VAULT_INDEX)}: shape {list(index.shape)} dtype {index.dtype}; expected "
                               f"int32 [1]")
        self.n_steps = int(index[0])
        if self.n_steps < 1:
            raise DatasetError(f"{self.where(VAULT_INDEX)}: is {self.n_steps}; expected a positive number of steps")

    def where(self, leaf: str) -> str:
        return os.path.join(self.dir, leaf)

    def _open(self, ts, leaf: str):
        spec = {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{self.dir}", "path": leaf}}
        try:
            return ts.open(spec, read=True).result()
        except ValueError as e:
            msg = str(e).split(" [tensorstore_spec=")[0]
            missing = "NOT_FOUND" in msg and "does not exist" in msg
            raise DatasetError(f"{self.where(leaf)}: " + (
                f"no such array in the vault's OCDBT store; expected leaf {leaf!r}" if missing else
                f"could not open the zarr array (truncated or corrupt vault?): {msg}")) from None

    def shape(self, leaf: str) -> Tuple[int, ...]:
        return tuple(int(d) for d in self.stores[leaf].shape)

    def read(self, leaf: str, b: int, start: int, stop: int) -> np.ndarray:
        try:
            return np.asarray(self.stores[leaf][b, start:stop].read().result())
        except ValueError as e:
            raise DatasetError(f"{self.where(leaf)}: could not read steps {start}..{stop - 1} (truncated or "
                               f"corrupt vault?): {str(e).split(' [tensorstore_spec=')[0]}") from None


def _check_sizes(vault: _Vault, env: EnvInfo) -> None:
    N = env.n_agents
    shapes = {leaf: vault.shape(leaf) for leaf in vault.stores}
    for leaf, shape in shapes.items():
        recorded = _leaf_shape(vault.meta, leaf)
        if recorded is not None and recorded[2:] != shape[2:]:
            raise DatasetError(f"{vault.where(leaf)}: store shape {list(shape)} differs from "
                               f"{METADATA_FILE}'s {list(recorded)}; expected them to agree past the time axis")
        if len(shape) < 2 or shape[0] != shapes[OBSERVATIONS][0]:
            raise DatasetError(f"{vault.where(leaf)}: shape {list(shape)}; expected [B, T, ...] with the "
                               f"observations' B = {shapes[OBSERVATIONS][0]}")
        if shape[1] < vault.n_steps:
            raise DatasetError(f"{vault.where(leaf)}: time axis {shape[1]} shorter than {VAULT_INDEX} "
                               f"{vault.n_steps}; expected at least {vault.n_steps} steps")
    o = shapes[OBSERVATIONS]
    expect_ndim(vault.where(OBSERVATIONS), OBSERVATIONS, o, (4,), "[B, T, n_agents, obs_dim]")
    expect_size(vault.where(OBSERVATIONS), OBSERVATIONS, o[2], N, "agent count (axis 2)", env)
    expect_size(vault.where(OBSERVATIONS), OBSERVATIONS, o[3], env.obs_dim, "observation size (axis 3)", env)
    s = shapes[STATE]
    expect_ndim(vault.where(STATE), STATE, s, (3,), "[B, T, state_dim]")
    expect_size(vault.where(STATE), STATE, s[2], env.state_dim, "state size (axis 2)", env)
    a = shapes[ACTIONS]
    if env.discrete:
        expect_ndim(vault.where(ACTIONS), ACTIONS, a, (3,), "[B, T, n_agents] discrete action indices")
        legals = shapes[LEGALS]
        expect_ndim(vault.where(LEGALS), LEGALS, legals, (4,), "[B, T, n_agents, n_actions]")
        expect_size(vault.where(LEGALS), LEGALS, legals[2], N, "agent count (axis 2)", env)
        expect_size(vault.where(LEGALS), LEGALS, legals[3], env.n_actions, "action count (axis 3)", env)
    else:
        expect_ndim(vault.where(ACTIONS), ACTIONS, a, (4,), "[B, T, n_agents, act_dim] continuous actions")
        expect_size(vault.where(ACTIONS), ACTIONS, a[3], env.act_dim, "action size (axis 3)", env)
    expect_size(vault.where(ACTIONS), ACTIONS, a[2], N, "agent count (axis 2)", env)
    for leaf in (REWARDS, TERMINALS, TRUNCATIONS):
        shape = shapes[leaf]
        expect_ndim(vault.where(leaf), leaf, shape, (2, 3), "[B, T] or [B, T, n_agents]")
        if len(shape) == 3:
            expect_size(vault.where(leaf), leaf, shape[2], N, "agent count (axis 2)", env)


def open_source(paths: List[str], env: EnvInfo, team_reward_how: str = "mean", **_) -> Source:
    """Open one vault (``<scenario>.vlt/<uid>``) for import into ``env``'s schema."""
    if len(paths) != 1:
        raise ValueError(f"{FORMAT}: give exactly one vault folder, got {len(paths)} paths {paths}")
    uid_dir = _resolve(paths[0])
    leaves = [OBSERVATIONS, ACTIONS, REWARDS, TERMINALS, TRUNCATIONS, STATE] + ([LEGALS] if env.discrete else [])
    vault = _Vault(uid_dir, leaves)
    _check_sizes(vault, env)
    vault_name, uid = os.path.basename(os.path.dirname(uid_dir)), os.path.basename(uid_dir)
    claims = {"vault_name": vault_name, "vault_uid": uid, "vault_version": vault.meta.get("version"),
              "scenario": vault_name[:-4] if vault_name.endswith(".vlt") else vault_name,
              "n_steps": vault.n_steps,
              "metadata": {k: v for k, v in vault.meta.items() if k not in ("structure_shape", "structure_dtype")}}
    notes: Dict[str, Any] = {"team_reward": team_reward_how, "final_observation": "repeated (not stored in vaults)"}
    return Source(format=FORMAT, paths=[uid_dir], claims=claims, quality=uid,
                  rows=_rows(vault, env, team_reward_how, notes), notes=notes)


def _episode_bounds(vault: _Vault, b: int) -> Tuple[List[Tuple[int, int]], int]:
    """``[(start, stop), ...]`` of the complete episodes of batch row ``b``, and the dropped tail length."""
    n = vault.n_steps
    done = np.zeros(n, bool)
    for leaf in (TERMINALS, TRUNCATIONS):
        flags = vault.read(leaf, b, 0, n)
        done |= (flags.reshape(n, -1) != 0).any(axis=1)
    ends = np.flatnonzero(done) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return list(zip(starts.tolist(), ends.tolist())), int(n - (ends[-1] if ends.size else 0))


def _rows(vault: _Vault, env: EnvInfo, how: str, notes: Dict[str, Any]) -> Iterator[Row]:
    episode_id, dropped, agents_differ = 0, 0, False
    for b in range(vault.shape(OBSERVATIONS)[0]):
        bounds, tail = _episode_bounds(vault, b)
        dropped += tail
        i = 0
        while i < len(bounds):
            # A block of whole episodes, about BLOCK_STEPS steps (at least one episode).
            j, s0 = i + 1, bounds[i][0]
            while j < len(bounds) and bounds[j][1] - s0 <= BLOCK_STEPS:
                j += 1
            s1 = bounds[j - 1][1]
            block = {leaf: vault.read(leaf, b, s0, s1) for leaf in vault.stores}
            rewards = block[REWARDS].reshape(s1 - s0, -1).astype(np.float32)
            agents_differ |= bool(rewards.shape[1] > 1 and np.any(rewards != rewards[:, :1]))
            for start, stop in bounds[i:j]:
                t0, t1 = start - s0, stop - s0
                L = stop - start
                where = f"{vault.dir} (steps {start}..{stop - 1})"
                # A terminal flag ends the episode for real, unless it falls on our episode limit.
                terminated = bool((block[TERMINALS][t1 - 1] != 0).any()) and L < env.episode_limit
                idx = np.r_[t0:t1, t1 - 1]  # t = 0..L; the observation after the last step repeats t = L-1
                actions = block[ACTIONS][t0:t1]
                actions = integer_actions(actions, vault.where(ACTIONS), ACTIONS) if env.discrete else actions
                yield episode_row(env, episode_id, block[OBSERVATIONS][idx], block[STATE][idx],
                                  block[LEGALS][idx] if env.discrete else None, actions,
                                  team_reward(rewards[t0:t1], how), terminated, where)
                episode_id += 1
            i = j
    notes["dropped_unfinished_steps"] = dropped
    notes["agent_rewards_differ"] = agents_differ
    if episode_id == 0:
        raise DatasetError(f"{vault.dir}: no complete episode in {vault.n_steps} steps (no terminal or truncation "
                           f"flag set); expected at least one")
