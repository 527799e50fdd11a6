"""Multi-agent episode schema v1: one Parquet row per episode, fixed-shape tensor columns.

Every tensor column is padded to the environment's episode limit ``T``; ``length`` gives the
number of real steps and ``filled[t] = t < length``. ``N`` = number of agents (in the fixed order
of ``EnvInfo.agents``). Shapes per row:

=================  ======================  =======  =================================================
column             shape                   dtype    meaning
=================  ======================  =======  =================================================
``obs``            [T+1, N, obs_dim]       float32  o_i^t, t = 0..length (rest zero)
``state``          [T+1, state_dim]        float32  s^t
``actions``        [T, N] / [T, N, A]      int64 / float32  a_i^t (discrete / continuous)
``avail_actions``  [T+1, N, n_actions]     float32  availability masks (discrete envs only)
``reward``         [T]                     float32  team reward r_tot^t
``terminated``     [T]                     uint8    1 = true termination at step t (not the limit)
``truncated``      [T]                     uint8    1 = episode cut at step t by the limit
``filled``         [T]                     uint8    1 = t < length
``length``         scalar                  int32    number of steps
``episode_return`` scalar                  float32  sum of ``reward``
``episode_id``     scalar                  int64    unique id inside the dataset
``policy_levels``  [N]                     int8     behaviour level per agent (optional; -1 unknown)
``agent_stats``    [N, K]                  float32  per-agent episode statistics (optional; names in
                                                    metadata ``agent_stat_names``)
``behaviour_logp`` [T, N]                  float32  log μ_i(a_i^t | ·) of the behaviour policy for the
                                                    action taken, 0 on padding (optional; written by
                                                    the generator for discrete envs, used by
                                                    importance-sampling OPE, :mod:`rllib_sit.ope`)
=================  ======================  =======  =================================================

Flags are uint8 (0/1), not bool: Arrow's tensor extension type has no bool tensors.
Tensor columns use Arrow's canonical ``fixed_shape_tensor`` extension type, which both pyarrow
and Ray Data read back as numpy ``[B, ...]`` arrays.

The Parquet schema metadata (key ``rllib_sit``) holds :class:`DatasetMeta` as JSON; the dataset
folder also holds ``card.json`` (see :mod:`rllib_sit.data.card`).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List

from rllib_sit.envs.base import EnvInfo

SCHEMA_VERSION = 1
META_KEY = b"rllib_sit"

# Column names (use these constants, never string literals, across the package).
OBS = "obs"
STATE = "state"
ACTIONS = "actions"
AVAIL_ACTIONS = "avail_actions"
REWARD = "reward"
TERMINATED = "terminated"
TRUNCATED = "truncated"
FILLED = "filled"
LENGTH = "length"
EPISODE_RETURN = "episode_return"
EPISODE_ID = "episode_id"
POLICY_LEVELS = "policy_levels"
AGENT_STATS = "agent_stats"
BEHAVIOUR_LOGP = "behaviour_logp"

REQUIRED_COLUMNS = [OBS, STATE, ACTIONS, REWARD, TERMINATED, TRUNCATED, FILLED, LENGTH, EPISODE_RETURN, EPISODE_ID]
OPTIONAL_COLUMNS = [AVAIL_ACTIONS, POLICY_LEVELS, AGENT_STATS, BEHAVIOUR_LOGP]

# Behaviour levels (policy pools): random / medium / expert.
LEVELS = {"r": 0, "m": 1, "e": 2}
LEVEL_NAMES = {0: "random", 1: "medium", 2: "expert", -1: "unknown"}


@dataclasses.dataclass
class DatasetMeta:
    """Per-dataset metadata stored in every Parquet file's schema metadata."""

    env: EnvInfo
    schema_version: int = SCHEMA_VERSION
    agent_stat_names: List[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"schema_version": self.schema_version, "env": self.env.to_dict(),
                           "agent_stat_names": list(self.agent_stat_names)})

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "dataset") -> "DatasetMeta":
        try:
            d = json.loads(text)
            version = int(d["schema_version"])
            env = EnvInfo.from_dict(d["env"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{where}: Parquet metadata {META_KEY.decode()!r} is not valid rllib_sit "
                             f"metadata ({e})") from None
        if version != SCHEMA_VERSION:
            raise ValueError(f"{where}: schema_version {version} is not supported; expected {SCHEMA_VERSION}")
        return cls(env=env, schema_version=version, agent_stat_names=list(d.get("agent_stat_names", [])))


def column_shapes(env: EnvInfo, n_stats: int = 0) -> Dict[str, tuple]:
    """Expected per-row shape of every tensor column for ``env``."""
    T, N = env.episode_limit, env.n_agents
    shapes: Dict[str, tuple] = {
        OBS: (T + 1, N, env.obs_dim),
        STATE: (T + 1, env.state_dim),
        ACTIONS: (T, N) if env.discrete else (T, N, env.act_dim),
        REWARD: (T,),
        TERMINATED: (T,),
        TRUNCATED: (T,),
        FILLED: (T,),
        POLICY_LEVELS: (N,),
        BEHAVIOUR_LOGP: (T, N),
    }
    if env.discrete:
        shapes[AVAIL_ACTIONS] = (T + 1, N, env.n_actions)
    if n_stats:
        shapes[AGENT_STATS] = (N, n_stats)
    return shapes


def column_dtypes(env: EnvInfo) -> Dict[str, str]:
    return {
        OBS: "float32", STATE: "float32", ACTIONS: "int64" if env.discrete else "float32",
        AVAIL_ACTIONS: "float32", REWARD: "float32", TERMINATED: "uint8", TRUNCATED: "uint8",
        FILLED: "uint8", LENGTH: "int32", EPISODE_RETURN: "float32", EPISODE_ID: "int64",
        POLICY_LEVELS: "int8", AGENT_STATS: "float32", BEHAVIOUR_LOGP: "float32",
    }


def required_columns(env: EnvInfo) -> List[str]:
    """Columns every dataset of ``env`` must have (``avail_actions`` for discrete envs)."""
    return REQUIRED_COLUMNS + ([AVAIL_ACTIONS] if env.discrete else [])
