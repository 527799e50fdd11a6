"""Behaviour policy pools (SIT paper Appendix C.2, Tables 4–6): random / medium / expert.

One import point for the two modules that implement them:

* :mod:`rllib_sit.data.pool_card` — the pool card model: ``<family>_<scenario>.json`` (package data
  ``rllib_sit/resources/policy_pools/``), member kinds, validation, :func:`load_pool` (per level a
  per-agent policy ``act(env, agent_index, rng) -> action``), atomic :func:`write_pool_card`,
  :func:`pool_table`;
* :mod:`rllib_sit.data.pool_calibration` — how a level is realised and measured (graded scripted
  policies calibrated into the paper's return ranges): :func:`build_pool`, :func:`calibrate`,
  :func:`measure`.

Command line (``rllib_sit.cli.data_pools``)::

    rllib-sit data pools list [--markdown]        # table of all pool cards
    rllib-sit data pools show smac:2s3z [--json]  # one card
    rllib-sit data pools build smac:2s3z          # or --all; recalibrates and rewrites the card
"""

from __future__ import annotations

import sys

from rllib_sit.data.paths import pools_dir
from rllib_sit.data.pool_calibration import (
    CAL_EPISODES,
    DEFAULT_EVAL_EPISODES,
    EVAL_EPISODES,
    HEURISTIC_CANDIDATES,
    MIN_EVAL_EPISODES,
    Candidate,
    build_pool,
    calibrate,
    check_build_request,
    default_candidates,
    measure,
    run_episode,
)
from rllib_sit.data.pool_card import (
    MEMBER_KINDS,
    REBUILD_COMMAND,
    AgentPolicy,
    Pool,
    PoolMember,
    list_pool_cards,
    load_pool,
    pool_card_path,
    pool_table,
    read_pool_card,
    validate_pool_card,
    write_pool_card,
)

__all__ = [
    "AgentPolicy", "CAL_EPISODES", "Candidate", "DEFAULT_EVAL_EPISODES", "EVAL_EPISODES", "HEURISTIC_CANDIDATES",
    "MEMBER_KINDS", "MIN_EVAL_EPISODES", "Pool", "PoolMember", "REBUILD_COMMAND", "build_pool", "calibrate",
    "check_build_request", "default_candidates", "list_pool_cards", "load_pool", "measure", "pool_card_path",
    "pool_table", "pools_dir", "read_pool_card", "run_episode", "validate_pool_card", "write_pool_card",
]

if __name__ == "__main__":  # the former entry point `python -m rllib_sit.data.pools build|show`
    sys.exit("python -m rllib_sit.data.pools was replaced by: rllib-sit data pools list | show ENV | build ENV "
             "(or: python -m rllib_sit.cli.sit_cmd data pools ...)")
