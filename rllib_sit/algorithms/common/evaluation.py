"""Team evaluation metrics of every algorithm on RLlib's evaluation EnvRunners (decentralised execution).

The agents act on the registered env through their modules' ``_forward_inference`` (greedy) on
RLlib's evaluation EnvRunner(s). :class:`TeamMetricsCallback` reports the team's
numbers: every agent of a cooperative env receives the team reward, so RLlib's own
``episode_return_*`` (the sum over agents) would count it N times. It replaces them with the team
return's mean/min/max, adds ``episode_return_std`` and, on envs whose infos carry ``battle_won``
(SMAC), ``win_rate``.

Every evaluation runs two passes (:data:`EVALUATION_PASSES`; :meth:`OfflineMARLAlgorithm.evaluate
<rllib_sit.algorithms.common.algorithm.OfflineMARLAlgorithm.evaluate>`): a greedy one (``explore=False``:
the modules' ``_forward_inference``, arg max / the mean action) and a sampled one (``explore=True``:
``_forward_exploration``, actions drawn from the policy), on the same env seeds (each pass resets the
evaluation envs with the EnvRunner's seed), so their difference is the policy's, not the episodes'.
:func:`merge_passes` reports both as ``<key>_greedy`` / ``<key>_sampled`` (:data:`PASS_KEYS`) next to
the headline keys, which are the pass ``evaluation_config["explore"]`` selects (greedy by default), and
``explore`` (which one the headline is).
"""

from __future__ import annotations

import copy

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import (ENV_RUNNER_RESULTS, EPISODE_RETURN_MAX, EPISODE_RETURN_MEAN,
                                     EPISODE_RETURN_MIN)

EPISODE_RETURN_STD = "episode_return_std"
WIN_RATE = "win_rate"
# Per-episode values logged on the EnvRunners (item series), turned into statistics at the end.
TEAM_RETURNS = "team_returns"
WINS = "team_wins"
EPISODE_LEN_MEAN = "episode_len_mean"
EVALUATION_EXPLORE = "explore"  # whether the headline keys are the sampled pass's
GREEDY, SAMPLED = "greedy", "sampled"
# The passes of every evaluation, in the order they run: each one's ``explore`` flag (greedy, then
# sampled). Their number is what an evaluation costs in env steps (the benchmark's time estimate,
# ``rllib_sit.experiments.profiles.estimate_seconds``, counts them).
EVALUATION_PASSES = (False, True)
# The keys each pass reports under its own suffix (``episode_return_mean_sampled``, ``win_rate_greedy``).
PASS_KEYS = (EPISODE_RETURN_MEAN, EPISODE_RETURN_STD, EPISODE_RETURN_MIN, EPISODE_RETURN_MAX, WIN_RATE,
             EPISODE_LEN_MEAN)


def pass_key(key: str, explore: bool) -> str:
    """``episode_return_mean`` -> ``episode_return_mean_sampled`` (``explore``) / ``..._greedy``."""
    return f"{key}_{SAMPLED if explore else GREEDY}"


def merge_passes(greedy: dict, sampled: dict, explore: bool) -> dict:
    """The evaluation results of a greedy and a sampled pass -> one: the headline pass's results
    (``explore``: the sampled one's) with every :data:`PASS_KEYS` value of both passes added to its
    ``env_runners`` under :func:`pass_key`, and ``explore``."""
    out = copy.deepcopy(sampled if explore else greedy)
    results = out.setdefault(ENV_RUNNER_RESULTS, {})
    for flag, res in ((False, greedy), (True, sampled)):
        res = res.get(ENV_RUNNER_RESULTS) or {}
        for key in PASS_KEYS:
            if key in res:
                results[pass_key(key, flag)] = res[key]
    results[EVALUATION_EXPLORE] = bool(explore)
    return out


def team_return(episode) -> float:
    """Team return of (a chunk of) a multi-agent episode: the mean of the agents' returns (each
    agent of a cooperative env receives the team reward)."""
    returns = [sa.get_return() for sa in episode.agent_episodes.values()]
    return float(np.mean(returns)) if returns else 0.0


def battle_won(episodes):
    """True/False if some step's infos carry ``battle_won`` (won at any step), else None."""
    won = None
    for ep in episodes:
        for sa in list(ep.agent_episodes.values())[:1]:  # infos are common to all agents
            for info in sa.get_infos():
                if isinstance(info, dict) and "battle_won" in info:
                    won = bool(won) or bool(info["battle_won"])
    return won


class TeamMetricsCallback(RLlibCallback):
    """Team return statistics and win rate of the evaluation episodes (see the module docstring)."""

    def on_episode_end(self, *, episode, prev_episode_chunks=None, metrics_logger=None, **kwargs) -> None:
        if metrics_logger is None:
            return
        chunks = list(prev_episode_chunks or []) + [episode]
        metrics_logger.log_value(TEAM_RETURNS, sum(team_return(c) for c in chunks), reduce="item_series")
        won = battle_won(chunks)
        if won is not None:
            metrics_logger.log_value(WINS, float(won), reduce="item_series")

    def on_evaluate_end(self, *, evaluation_metrics, **kwargs) -> None:
        results = evaluation_metrics.get(ENV_RUNNER_RESULTS)
        if not isinstance(results, dict):
            return
        returns = np.asarray(results.pop(TEAM_RETURNS, []), np.float64).reshape(-1)
        wins = np.asarray(results.pop(WINS, []), np.float64).reshape(-1)
        if returns.size:
            results.update({EPISODE_RETURN_MEAN: float(returns.mean()), EPISODE_RETURN_STD: float(returns.std()),
                            EPISODE_RETURN_MIN: float(returns.min()), EPISODE_RETURN_MAX: float(returns.max())})
        if wins.size:
            results[WIN_RATE] = float(wins.mean())
