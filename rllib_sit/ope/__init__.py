"""Multi-agent off-policy evaluation and selection (docs/ope.md).

* :func:`fqe` / :func:`evaluate` — fitted Q evaluation of a checkpoint's policy on a dataset
  (:mod:`rllib_sit.ope.fitted_q`), plus per-decision WIS where the dataset has behaviour
  probabilities (:mod:`rllib_sit.ope.importance`);
* :mod:`rllib_sit.ope.selection` — Spearman, regret@k, precision@k and the selection rules;
* :mod:`rllib_sit.ope.scoring` — every kept checkpoint of a benchmark folder -> ``ope.csv``.

No algorithm code lives here: policies are read from checkpoints, data from the episode store.
Names are imported lazily, so ``import rllib_sit.ope`` builds no model and imports no torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "fqe": "rllib_sit.ope.api", "evaluate": "rllib_sit.ope.api",
    "FQE": "rllib_sit.ope.fitted_q", "FQEConfig": "rllib_sit.ope.fitted_q", "FQEResult": "rllib_sit.ope.fitted_q",
    "OPEData": "rllib_sit.ope.data", "BEHAVIOUR_LOGP": "rllib_sit.ope.data",
    "with_behaviour_logp": "rllib_sit.ope.data",
    "CheckpointPolicy": "rllib_sit.ope.policy", "PolicyActions": "rllib_sit.ope.policy",
    "pdwis": "rllib_sit.ope.importance",
    "score_results": "rllib_sit.ope.scoring",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rllib_sit.ope' has no attribute {name!r}")
