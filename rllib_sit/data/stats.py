"""Per-agent statistics of a dataset (what ``rllib-sit data inspect`` prints).

They make each agent's behaviour quality visible: the share of episodes in which the agent was
driven by a random / medium / expert policy (``policy_levels``), the means of the env's
per-agent statistics (e.g. SMAC damage dealt, MPE distance to landmark), and action statistics.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.data.io import OfflineDataset


def agent_statistics(ds: OfflineDataset, batch_size: int = 256) -> Dict[str, Dict[str, float]]:
    """``{agent_id: {statistic: value}}`` computed in one streaming pass with pyarrow."""
    env = ds.env
    N = env.n_agents
    names = ds.meta.agent_stat_names
    cols = [S.ACTIONS, S.FILLED]
    have = set(__import__("pyarrow.parquet", fromlist=["x"]).read_schema(ds.files[0]).names)
    for c in (S.POLICY_LEVELS, S.AGENT_STATS):
        if c in have:
            cols.append(c)
    level_counts = np.zeros((N, 3))
    stat_sum = np.zeros((N, len(names)))
    n_eps = 0
    steps = 0
    act_hist = np.zeros((N, max(env.n_actions, 1)))
    abs_act = np.zeros(N)
    for b in ds.iter_batches(batch_size, columns=cols, backend="arrow"):
        filled = b[S.FILLED].astype(bool)
        n_eps += filled.shape[0]
        steps += int(filled.sum())
        if S.POLICY_LEVELS in b:
            for lvl in range(3):
                level_counts[:, lvl] += (b[S.POLICY_LEVELS] == lvl).sum(0)
        if S.AGENT_STATS in b and names:
            stat_sum += b[S.AGENT_STATS].sum(0)
        acts = b[S.ACTIONS][filled]  # [n, N] or [n, N, A]
        if env.discrete:
            for i in range(N):
                act_hist[i] += np.bincount(acts[:, i], minlength=env.n_actions)
        else:
            abs_act += np.abs(acts).mean(-1).sum(0)
    out: Dict[str, Dict[str, float]] = {}
    for i, agent in enumerate(env.agents):
        row: Dict[str, float] = {}
        if level_counts[i].sum() > 0:
            for lvl, name in ((0, "random"), (1, "medium"), (2, "expert")):
                row[f"share_{name}"] = level_counts[i, lvl] / max(n_eps, 1)
        for k, name in enumerate(names):
            row[name] = stat_sum[i, k] / max(n_eps, 1)
        if env.discrete:
            p = act_hist[i] / max(act_hist[i].sum(), 1)
            nz = p[p > 0]
            row["action_entropy"] = float(-(nz * np.log(nz)).sum())
            row["share_noop"] = float(p[0])
            if env.n_actions > 6:  # SMAC layout: actions 6.. are attacks
                row["share_attack"] = float(p[6:].sum())
        else:
            row["mean_abs_action"] = abs_act[i] / max(steps, 1)
        out[agent] = {k: float(v) for k, v in row.items()}
    return out


def stat_columns(stats: Dict[str, Dict[str, float]]) -> List[str]:
    cols: List[str] = []
    for row in stats.values():
        for k in row:
            if k not in cols:
                cols.append(k)
    return cols
