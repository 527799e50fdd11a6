"""Inside a benchmark trial: evaluate after each iteration of the policy phase, and say so.

The benchmark sets ``evaluation_interval=None`` and sizes the last phase of every algorithm (its
policy training: SIT's Stage III, MABCQ's ``bcq``, the single phase of the others) so that
``agent_updates_per_iteration = agent_updates / eval_points``. :class:`EvaluateAfterPolicyUpdates`
then runs ``algorithm.evaluate()`` (the algorithm's own greedy evaluation, ``evaluation_duration``
episodes) after every iteration in which the policy phase made updates: exactly ``eval_points``
evaluations, none during pre-training (SIT's ARDNEM) and one at the very end. Each result gets
``result["benchmark"] = {"policy_updates", "evaluated"}``; evaluated ones also ``result["evaluation"]``.
"""

from __future__ import annotations

from ray.rllib.callbacks.callbacks import RLlibCallback

BENCHMARK_RESULTS = "benchmark"
POLICY_UPDATES = "policy_updates"
EVALUATED = "evaluated"


def policy_updates_done(algorithm) -> int:
    """Updates done in the algorithm's last phase (its policy training)."""
    schedule = algorithm.schedule
    return int(schedule.done.get(schedule.phases[-1].name, 0)) if schedule.phases else 0


class EvaluateAfterPolicyUpdates(RLlibCallback):
    def on_train_result(self, *, algorithm, metrics_logger=None, result, **kwargs) -> None:
        done = policy_updates_done(algorithm)
        last = getattr(algorithm, "_benchmark_last_evaluated", None)
        evaluate = done > 0 and done != last
        if evaluate:
            result["evaluation"] = algorithm.evaluate()
            algorithm._benchmark_last_evaluated = done
        result[BENCHMARK_RESULTS] = {POLICY_UPDATES: done, EVALUATED: bool(evaluate)}
