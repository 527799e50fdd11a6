"""Named training phases of an offline algorithm: counted, checkpointed, resumable mid-phase.

An algorithm is a sequence of phases (SIT: ``ardnem`` -> ``dper`` -> ``agents``; BCQ: behaviour
model pre-training -> Q-learning; VD+TN: VAE pre-training -> TD). A phase either runs ``updates``
gradient updates, ``per_iteration`` of them per ``train()`` call, through ``run(n)`` (which does n
updates and returns the last learner results; it may pipeline its batches within the n); or it
is a one-shot phase (``one_shot=True``: ``run(1)`` once, e.g. SIT's Stage II), which runs in the
same iteration as the update phase before it finished. ``on_exit()`` runs when a phase completes.

:class:`PhaseSchedule` holds the position (current phase, updates done in each) that the
algorithm's checkpoint stores, so a restored run continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional


@dataclass
class Phase:
    name: str
    run: Callable[[int], Any]  # n updates -> last learner results (or the one-shot work)
    updates: int = 1
    per_iteration: int = 1
    one_shot: bool = False
    on_exit: Optional[Callable[[], None]] = None


@dataclass
class PhaseSchedule:
    phases: List[Phase]
    index: int = 0
    done: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        for p in self.phases:
            self.done.setdefault(p.name, 0)
        self._skip_empty()

    @property
    def current(self) -> Optional[Phase]:
        return self.phases[self.index] if self.index < len(self.phases) else None

    @property
    def finished(self) -> bool:
        return self.current is None

    @property
    def current_name(self) -> str:
        return self.current.name if self.current else "done"

    def _skip_empty(self) -> None:
        while self.current is not None and self.current.updates <= 0:
            self.index += 1

    def _advance(self) -> None:
        phase = self.current
        if phase.on_exit is not None:
            phase.on_exit()
        self.index += 1
        self._skip_empty()

    def run_iteration(self) -> Any:
        """One ``train()`` worth of work: a chunk of the current update phase, followed by any
        one-shot phases that come next; or one one-shot phase. Returns the last learner results."""
        results = None
        ran_updates = False
        while self.current is not None:
            phase = self.current
            if phase.one_shot:
                phase.run(1)
                self.done[phase.name] = 1
                self._advance()
                if not ran_updates:
                    break
                continue
            if ran_updates:
                break
            n = min(phase.per_iteration, phase.updates - self.done[phase.name])
            if n > 0:
                results = phase.run(n)
                self.done[phase.name] += n
            ran_updates = True
            if self.done[phase.name] >= phase.updates:
                self._advance()
            else:
                break
        return results

    def get_state(self) -> Dict[str, Any]:
        return {"index": self.index, "done": dict(self.done)}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.index = int(state["index"])
        self.done.update({k: int(v) for k, v in state["done"].items()})
