"""Dataset validation: every problem is one :class:`DatasetError` naming the file and the field.

Two levels:

* :func:`check_schema` — from the Parquet footer only (cheap): rllib_sit metadata present and
  consistent, required columns present, tensor shapes and dtypes as the env says.
* :func:`check_batch` — on data: NaN/inf in float columns, ``length`` within the limit and equal
  to ``sum(filled)``, discrete actions within ``[0, n_actions)`` and available in
  ``avail_actions``, continuous actions within their bounds.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import pyarrow as pa

from rllib_sit.data import schema as S


class DatasetError(ValueError):
    """Bad offline dataset: the message names the file, the field and what was expected."""


def _arrow_shape_dtype(field: pa.Field):
    """(per-row shape, numpy dtype name) of a column as stored."""
    t = field.type
    if isinstance(t, pa.FixedShapeTensorType):
        return tuple(t.shape), t.value_type.to_pandas_dtype().__name__
    return (), t.to_pandas_dtype().__name__


def read_meta(arrow_schema: pa.Schema, where: str) -> S.DatasetMeta:
    md = arrow_schema.metadata or {}
    if S.META_KEY not in md:
        raise DatasetError(f"{where}: no rllib_sit metadata in the Parquet schema (key "
                           f"{S.META_KEY.decode()!r}); expected a dataset written by rllib_sit.data.write_dataset")
    try:
        return S.DatasetMeta.from_json(md[S.META_KEY], where)
    except ValueError as e:
        raise DatasetError(str(e)) from None


def check_schema(arrow_schema: pa.Schema, meta: S.DatasetMeta, where: str) -> None:
    """Check columns, shapes and dtypes of one file against the env in ``meta``."""
    env = meta.env
    names = set(arrow_schema.names)
    for col in S.required_columns(env):
        if col not in names:
            raise DatasetError(f"{where}: missing column {col!r}; expected columns {S.required_columns(env)}")
    shapes = S.column_shapes(env, len(meta.agent_stat_names))
    dtypes = S.column_dtypes(env)
    for col in arrow_schema.names:
        if col not in dtypes:
            continue  # extra user columns are allowed
        shape, dtype = _arrow_shape_dtype(arrow_schema.field(col))
        want_shape = shapes.get(col, ())
        if col == S.AGENT_STATS and not meta.agent_stat_names:
            want_shape = shape if len(shape) == 2 and shape[0] == env.n_agents else (env.n_agents, "K")
        if shape != want_shape:
            hint = ""
            if len(want_shape) >= 2 and len(shape) == len(want_shape) and col != S.STATE:
                if shape[1 if col not in (S.POLICY_LEVELS, S.AGENT_STATS) else 0] != env.n_agents:
                    hint = f" (agent count mismatch: the metadata lists {env.n_agents} agents {env.agents})"
            raise DatasetError(f"{where}: column {col!r} has per-episode shape {list(shape)}, expected "
                               f"{list(want_shape)} for {env.env_id}{hint}")
        if dtype != dtypes[col]:
            raise DatasetError(f"{where}: column {col!r} has dtype {dtype}, expected {dtypes[col]}")


def check_batch(batch: Dict[str, np.ndarray], meta: S.DatasetMeta, where: str,
                first_row: int = 0) -> None:
    """Check the values of a batch of rows (numpy columns, leading axis = episode)."""
    env = meta.env

    def bad_rows(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
        return f"row(s) {[int(first_row + i) for i in idx[:5]]}"

    for col in (S.OBS, S.STATE, S.REWARD, S.AVAIL_ACTIONS, S.AGENT_STATS, S.EPISODE_RETURN, S.BEHAVIOUR_LOGP) + \
            (() if env.discrete else (S.ACTIONS,)):
        if col in batch and batch[col].dtype.kind == "f":
            nonfinite = ~np.isfinite(batch[col])
            if nonfinite.any():
                raise DatasetError(f"{where}: column {col!r} contains NaN or inf at {bad_rows(nonfinite)}; "
                                   f"expected finite values")
    length = batch[S.LENGTH].astype(np.int64)
    if (length < 1).any() or (length > env.episode_limit).any():
        bad = (length < 1) | (length > env.episode_limit)
        raise DatasetError(f"{where}: column 'length' out of range at {bad_rows(bad)}; expected "
                           f"1..{env.episode_limit} (the episode limit)")
    filled = batch[S.FILLED].astype(bool)
    want_filled = np.arange(env.episode_limit)[None, :] < length[:, None]
    if (filled != want_filled).any():
        raise DatasetError(f"{where}: column 'filled' disagrees with 'length' at "
                           f"{bad_rows(filled != want_filled)}; expected filled[t] = t < length")
    actions = batch[S.ACTIONS]
    valid = filled[:, :, None]
    if env.discrete:
        out = ((actions < 0) | (actions >= env.n_actions)) & valid
        if out.any():
            raise DatasetError(f"{where}: column 'actions' out of range at {bad_rows(out)}; expected "
                               f"integers in [0, {env.n_actions})")
        avail = batch[S.AVAIL_ACTIONS][:, :-1]  # masks of the states the actions were taken in
        chosen = np.take_along_axis(avail, actions[..., None], axis=-1)[..., 0]
        unavailable = (chosen <= 0) & valid
        if unavailable.any():
            raise DatasetError(f"{where}: column 'actions' holds actions that 'avail_actions' marks "
                               f"unavailable at {bad_rows(unavailable)}; expected a_i^t with "
                               f"avail_actions[t, i, a] = 1")
    else:
        lo, hi = env.action_low - 1e-5, env.action_high + 1e-5
        out = ((actions < lo) | (actions > hi)) & valid[..., None]
        if out.any():
            raise DatasetError(f"{where}: column 'actions' outside [{env.action_low}, {env.action_high}] at "
                               f"{bad_rows(out)}")


def check_row_dict(row: Dict[str, np.ndarray], meta: S.DatasetMeta, where: str = "episode") -> None:
    """Validate one episode row before it is written (same checks as on read)."""
    env = meta.env
    shapes = S.column_shapes(env, len(meta.agent_stat_names))
    for col in S.required_columns(env):
        if col not in row:
            raise DatasetError(f"{where}: missing field {col!r}; expected fields {S.required_columns(env)}")
    for col, value in row.items():
        want: Optional[tuple] = shapes.get(col)
        if want is not None and np.shape(value) != want:
            raise DatasetError(f"{where}: field {col!r} has shape {list(np.shape(value))}, expected {list(want)}")
    check_batch({k: np.asarray(v)[None] for k, v in row.items()}, meta, where)
