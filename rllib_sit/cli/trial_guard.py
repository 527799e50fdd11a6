"""Two Tune callbacks of ``rllib train file`` that keep a run honest about failures and resumes.

:class:`NoRetryBeforeFirstResult` — Tune retries a failed trial ``max_failures`` times. A trial that
fails before its first result failed in its setup (its config, its dataset: a NaN reward, an empty
folder, a dataset of another env) and fails the same way every time, so it is not retried: it
fails once and the CLI reports its error. Once a trial has reported a result, a failure is a crash
and is retried from the last checkpoint as configured.

:class:`ResumeFromNewestCheckpoint` — Tune writes its experiment state (which checkpoint each trial
has) every few seconds, not at each checkpoint. A run killed between a checkpoint write and the
next state write would restart that trial at iteration 1 on ``--resume`` although the checkpoint
is complete on disk. Before the restored trials start, this registers each trial's newest
*complete* checkpoint that is newer than the one Tune recorded, and prints one line per trial
saying where it resumes from (or that it restarts, and why).
"""

from __future__ import annotations

import glob
import json
import os
import pickle
from typing import Any, Callable, Dict, List, Optional, Set

from ray.tune import Callback

CHECKPOINT_GLOB = "checkpoint_[0-9]*"
ROOT_METADATA = "rllib_checkpoint.json"
COMPONENT_METADATA = "metadata.json"
CTOR_FILE = "class_and_ctor_args.pkl"


class NoRetryBeforeFirstResult(Callback):
    """Per trial: ``max_failures`` = 0 until its first result, then the configured number."""

    def __init__(self, max_failures: int):
        self.max_failures = int(max_failures)

    def on_step_begin(self, iteration: int, trials: List, **info) -> None:
        for trial in trials:
            has_result = bool((trial.last_result or {}).get("training_iteration"))
            trial.max_failures = self.max_failures if has_result else 0


def _load(path: str) -> Any:
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    with open(path, "rb") as f:
        return pickle.load(f)


def _files(folder: str) -> Set[str]:
    out = set()
    for root, _, names in os.walk(folder):
        out.update(os.path.relpath(os.path.join(root, n), folder) for n in names)
    return out


def checkpoint_is_complete(folder: str, reference: Optional[str] = None) -> bool:
    """Whether an RLlib algorithm checkpoint folder was written to the end.

    Every component folder (the root: ``rllib_checkpoint.json``; below: ``metadata.json``) names
    its state file, which must exist and unpickle, as must its ``class_and_ctor_args.pkl``; the
    learner group's state must be there; and, given a ``reference`` checkpoint of the same trial
    known to be complete, every file it has must exist here too (a copy cut short misses some).
    """
    try:
        if not os.path.isfile(os.path.join(folder, ROOT_METADATA)):
            return False
        if not os.path.isdir(os.path.join(folder, "learner_group")):
            return False
        for root, _dirs, names in os.walk(folder):
            meta = ROOT_METADATA if root == folder else COMPONENT_METADATA
            if root != folder and COMPONENT_METADATA not in names and CTOR_FILE not in names:
                continue  # a plain sub-folder of a component, not a component
            if meta not in names or CTOR_FILE not in names:
                return False
            state_file = _load(os.path.join(root, meta))["state_file"]
            candidates = [n for n in names if os.path.splitext(n)[0] == state_file]
            if not candidates:
                return False
            for n in candidates + [CTOR_FILE]:
                _load(os.path.join(root, n))
        if reference and os.path.isdir(reference) and not _files(reference) <= _files(folder):
            return False
    except Exception:  # noqa: BLE001 - anything unreadable means: not complete
        return False
    return True


def checkpoint_iteration(folder: str) -> Optional[int]:
    """The training iteration an RLlib algorithm checkpoint was taken at."""
    try:
        meta = _load(os.path.join(folder, ROOT_METADATA))
        state = _load(os.path.join(folder, f"{meta['state_file']}.pkl"))
        return int(state["training_iteration"])
    except Exception:  # noqa: BLE001
        return None


def checkpoint_index(folder: str) -> int:
    return int(os.path.basename(os.path.normpath(folder)).split("_")[-1])


def newest_complete_checkpoint(trial_dir: str, reference: Optional[str] = None) -> Optional[str]:
    """The trial's checkpoint folder with the highest index that is complete (None if none is)."""
    folders = sorted(glob.glob(os.path.join(trial_dir, CHECKPOINT_GLOB)), key=checkpoint_index, reverse=True)
    for folder in folders:
        if checkpoint_is_complete(folder, reference):
            return folder
    return None


def result_at(trial_dir: str, iteration: int) -> Dict[str, Any]:
    """The trial's last ``result.json`` line of ``iteration`` ({} if there is none)."""
    found: Dict[str, Any] = {}
    path = os.path.join(trial_dir, "result.json")
    if not os.path.isfile(path):
        return found
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            if row.get("training_iteration") == iteration:
                found = row
    return found


class ResumeFromNewestCheckpoint(Callback):
    """On ``--resume``: each unfinished trial continues from its newest complete checkpoint."""

    def __init__(self, say: Callable[[str], None] = print):
        self.say = say
        self._done = False

    def on_step_begin(self, iteration: int, trials: List, **info) -> None:
        if self._done:
            return
        self._done = True
        for trial in trials:
            if trial.status == "TERMINATED":
                continue
            self.reconcile(trial)

    def reconcile(self, trial) -> None:
        from ray.train._internal.session import _TrainingResult
        from ray.tune import Checkpoint

        # The trial's folder in the run's storage (trial.local_path is Ray's staging copy in its session dir).
        trial_dir = next((d for d in (trial.path, trial.local_path) if d and os.path.isdir(d)), trial.path)
        recorded = trial.checkpoint.path if trial.checkpoint is not None else None
        if not (trial_dir and os.path.isdir(trial_dir)):  # not on the local disk (cloud storage): Tune's record
            self.say(f"[rllib] trial {trial.trial_id}: " + (f"resumes from {os.path.basename(recorded)}" if recorded
                     else "Tune recorded no checkpoint; it restarts at iteration 1"))
            return
        newest = newest_complete_checkpoint(trial_dir, reference=recorded)
        if newest is None:
            self.say(f"[rllib] trial {trial.trial_id}: no complete checkpoint in {trial_dir}; it restarts "
                     "at iteration 1")
            return
        if recorded is not None and checkpoint_index(newest) <= checkpoint_index(recorded):
            self.say(f"[rllib] trial {trial.trial_id}: resumes from {os.path.basename(recorded)} (iteration "
                     f"{checkpoint_iteration(recorded)})")
            return
        it = checkpoint_iteration(newest)
        metrics = dict(result_at(trial_dir, it)) or {"training_iteration": it}
        metrics.pop("config", None)
        # Tune numbers checkpoint folders itself: the next one must come after the one registered here.
        trial.storage.current_checkpoint_index = checkpoint_index(newest) - 1
        trial.on_checkpoint(_TrainingResult(checkpoint=Checkpoint.from_directory(newest), metrics=metrics))
        trial.run_metadata.last_result = dict(metrics)
        was = f"{os.path.basename(recorded)}" if recorded else "no checkpoint"
        self.say(f"[rllib] trial {trial.trial_id}: resumes from {os.path.basename(newest)} (iteration {it}), "
                 f"newer than Tune's experiment state ({was}: the run was killed before Tune recorded it)")
