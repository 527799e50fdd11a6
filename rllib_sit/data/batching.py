"""Turn numpy episode batches into torch training batches.

Two views of the same rows:

* episode batches ``[B, T, N, ...]`` (recurrent actors and critics, Stage III), optionally cut to
  the longest episode of the batch so padded steps cost nothing;
* flat timestep batches ``[n, N, ...]`` of only the filled steps (reward-model training, Stage I).

Arrays are shared with their source wherever possible (``torch.from_numpy``); only read-only
inputs (e.g. arrays coming from Arrow) are copied once, since torch needs writable memory.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from rllib_sit.data import schema as S

Batch = Dict[str, np.ndarray]

FLAG_COLUMNS = (S.TERMINATED, S.TRUNCATED, S.FILLED)
# Columns with a T+1 time axis (one entry per state incl. the last one).
STATE_COLUMNS = (S.OBS, S.STATE, S.AVAIL_ACTIONS)
STEP_COLUMNS = (S.ACTIONS, S.REWARD, S.TERMINATED, S.TRUNCATED, S.FILLED)

NEXT_OBS = "next_obs"
NEXT_STATE = "next_state"
NEXT_AVAIL_ACTIONS = "next_avail_actions"
EPISODE_INDEX = "episode_index"
TIMESTEP = "t"


def trim_to_max_length(batch: Batch) -> Batch:
    """Cut the time axis to the longest episode in the batch (T -> max(length) [+1])."""
    t_max = int(np.max(batch[S.LENGTH]))
    out = dict(batch)
    for k in STATE_COLUMNS:
        if k in out:
            out[k] = out[k][:, : t_max + 1]
    for k in STEP_COLUMNS:
        if k in out:
            out[k] = out[k][:, :t_max]
    return out


def to_torch(batch: Batch, device: str = "cpu", trim: bool = True) -> Dict[str, "torch.Tensor"]:  # noqa: F821
    """Episode batch ``{column: [B, ...]}`` -> torch tensors (flags become bool)."""
    import torch

    if trim and S.LENGTH in batch:
        batch = trim_to_max_length(batch)
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if not v.flags.writeable:
            v = np.array(v)  # torch.from_numpy needs writable memory
        t = torch.from_numpy(v)
        if k in FLAG_COLUMNS:
            t = t.bool()
        out[k] = t.to(device) if device != "cpu" else t
    return out


def flatten_timesteps(batch: Batch, mask: Optional[np.ndarray] = None) -> Batch:
    """Only the filled steps of an episode batch, flattened: ``{column: [n, ...]}``.

    Returns obs/state/avail_actions of step t, their ``next_*`` values at t+1, actions, reward,
    terminated/truncated, and the (episode_index, t) each step came from.
    """
    filled = batch[S.FILLED].astype(bool) if mask is None else mask
    ep_idx, t_idx = np.nonzero(filled)
    out: Batch = {EPISODE_INDEX: ep_idx, TIMESTEP: t_idx}
    for k, nxt in ((S.OBS, NEXT_OBS), (S.STATE, NEXT_STATE), (S.AVAIL_ACTIONS, NEXT_AVAIL_ACTIONS)):
        if k in batch:
            out[k] = batch[k][ep_idx, t_idx]
            out[nxt] = batch[k][ep_idx, t_idx + 1]
    for k in (S.ACTIONS, S.REWARD, S.TERMINATED, S.TRUNCATED):
        if k in batch:
            out[k] = batch[k][ep_idx, t_idx]
    return out
