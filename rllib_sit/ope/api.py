"""The Python entry points: ``fqe(checkpoint, dataset)`` and ``evaluate(...)`` (FQE + PDWIS).

    from rllib_sit.ope import fqe, FQEConfig
    result = fqe("results/quick/tune/plan/<trial>/checkpoint_000004", "smac:2s3z/low/300",
                 config=FQEConfig(updates=5000))
    print(result.estimate, result.ci_low, result.ci_high, result.diagnostics["td_loss_last"])
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Union

from rllib_sit.ope.data import OPEData
from rllib_sit.ope.fitted_q import FQE, FQEConfig, FQEResult, value_range

DatasetArg = Union[str, OPEData]


def resolve_dataset_arg(dataset: Optional[str], checkpoint_config: Optional[Dict[str, Any]] = None) -> str:
    """A dataset folder/URI from ``--dataset``: a folder, a URI, or ``MAP/QUALITY[/EPISODES[/SEED]]``
    (generated on first use and cached, like ``rllib-sit data generate``); None: the checkpoint's
    own training dataset (its config's ``input_``)."""
    from rllib_sit.data.episode_store import has_scheme

    if dataset is None:
        cfg = checkpoint_config or {}
        path = cfg.get("input_", cfg.get("input"))  # AlgorithmConfig.to_dict() writes "input"
        if isinstance(path, (list, tuple)):
            path = path[0] if path else None
        if isinstance(path, str) and (has_scheme(path) or os.path.isdir(path)):
            return path
        raise ValueError("--dataset: required (the checkpoint's config names no dataset folder that exists here); "
                         "expected a dataset folder/URI or MAP/QUALITY[/EPISODES[/SEED]], e.g. smac:2s3z/low/300")
    if has_scheme(dataset) or os.path.isdir(os.path.expanduser(dataset)):
        return dataset if has_scheme(dataset) else os.path.abspath(os.path.expanduser(dataset))
    parts = dataset.split("/")
    if ":" in parts[0] and 2 <= len(parts) <= 4:
        from rllib_sit.data.generation import DEFAULT_EPISODES, ensure_dataset
        from rllib_sit.envs.registry import parse_env_id

        try:
            parse_env_id(parts[0])
            episodes = int(parts[2]) if len(parts) > 2 else DEFAULT_EPISODES
            seed = int(parts[3]) if len(parts) > 3 else 0
        except ValueError as e:
            raise ValueError(f"--dataset: {dataset!r} is not MAP/QUALITY[/EPISODES[/SEED]] ({e})") from None
        return str(ensure_dataset(parts[0], parts[1], n_episodes=episodes, seed=seed))
    raise FileNotFoundError(f"--dataset: {dataset!r} is neither a dataset folder/URI nor MAP/QUALITY[/EPISODES[/SEED]] "
                            f"(e.g. smac:2s3z/low/300)")


def open_data(dataset: DatasetArg, config: FQEConfig) -> OPEData:
    """The dataset as :class:`OPEData`, checked against ``config`` before any policy or FQE work."""
    if isinstance(dataset, OPEData):
        if dataset.bootstrap_truncated != config.bootstrap_truncated:
            raise ValueError(f"FQEConfig: bootstrap_truncated={config.bootstrap_truncated} but the OPEData was opened "
                             f"with {dataset.bootstrap_truncated}")
        data = dataset
    else:
        data = OPEData.open(dataset, bootstrap_truncated=config.bootstrap_truncated)
    if config.value_bounds == "env":
        value_range(data, "env", float(config.gamma))  # an env without a return range: one error, now
    return data


def evaluate(checkpoint: str, dataset: DatasetArg, *, explore: bool = False, config: Optional[FQEConfig] = None,
             wis: bool = True, progress: Optional[Any] = None) -> Dict[str, Any]:
    """FQE (and PDWIS where the dataset has ``behaviour_logp``) of ``checkpoint``'s policy on ``dataset``.

    Returns ``{"checkpoint", "algorithm", "dataset", "explore", "fqe": FQEResult.to_dict(), "wis": {...} |
    None, "wis_skipped": reason | None}``.
    """
    from rllib_sit.ope.policy import CheckpointError, CheckpointPolicy

    config = (config or FQEConfig()).validate()
    data = open_data(dataset, config)
    policy = CheckpointPolicy(checkpoint, data.info)
    actions = policy.actions(data.columns, data.lengths, explore=explore, num_samples=config.num_action_samples,
                             seed=config.seed)
    result = FQE(data, actions, config).fit(progress=progress)
    out = {"checkpoint": policy.checkpoint, "algorithm": policy.algorithm, "dataset": data.path,
           "explore": bool(explore), "fqe": result.to_dict(), "wis": None, "wis_skipped": None}
    if not wis:
        out["wis_skipped"] = "disabled"
    elif data.behaviour_logp is None:
        out["wis_skipped"] = "the dataset has no behaviour_logp column"
    else:
        try:
            target = policy.log_probs(data.columns, data.lengths, explore=explore)
        except CheckpointError as e:
            out["wis_skipped"] = str(e)
        else:
            from rllib_sit.data import schema as S
            from rllib_sit.ope.importance import pdwis

            out["wis"] = pdwis(data.columns[S.REWARD], data.columns[S.FILLED], target, data.behaviour_logp,
                               gamma=config.gamma, ci_level=config.ci_level, resamples=min(config.ci_resamples, 500),
                               seed=config.seed)
    return out


def fqe(checkpoint: str, dataset: DatasetArg, *, explore: bool = False, config: Optional[FQEConfig] = None,
        **settings: Any) -> FQEResult:
    """FQE estimate of ``checkpoint``'s policy (greedy, or sampled with ``explore``) on ``dataset``
    (folder, URI or an opened :class:`OPEData`). ``settings`` override ``config``'s fields."""
    from dataclasses import asdict

    from rllib_sit.ope.policy import CheckpointPolicy

    config = FQEConfig.from_dict(dict(asdict(config or FQEConfig()), **settings))
    data = open_data(dataset, config)
    policy = CheckpointPolicy(checkpoint, data.info)
    actions = policy.actions(data.columns, data.lengths, explore=explore, num_samples=config.num_action_samples,
                             seed=config.seed)
    return FQE(data, actions, config).fit()
