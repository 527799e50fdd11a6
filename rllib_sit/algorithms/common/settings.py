"""One declaration per setting: what ``training()``'s signature, its help and the checks of unknown
keys are generated from.

A config declares each of its own settings once, as a class attribute::

    class XConfig(OfflineMARLConfig):
        alpha = Setting(0.2, "Table 11: softmax temperature α = 0.2")

:func:`collect_settings` (run for every config class) takes the declarations off the class into
``cls._settings`` (``{name: Setting}``, its own first); the instance gets the default in
``__init__``; :func:`training_signature` and :func:`training_doc` give ``training()`` a keyword-only
parameter per setting with the declaration's text as its documentation (``help(XConfig.training)``,
``inspect.signature``, IDEs that read runtime signatures), beside RLlib's own training settings;
:func:`unknown_setting_message` names the closest known key of a misspelt one.
"""

from __future__ import annotations

import difflib
import inspect
import textwrap
from typing import Any, Dict, Iterable, Optional

from ray.rllib.algorithms.algorithm_config import NotProvided


class Setting:
    """A config setting: its ``default`` (copied into every new config) and ``doc`` (one line: where
    the default comes from, what the setting does)."""

    __slots__ = ("default", "doc")

    def __init__(self, default: Any, doc: str):
        self.default, self.doc = default, doc

    def __repr__(self) -> str:
        return f"Setting({self.default!r}, {self.doc!r})"


class UnknownSettingError(ValueError, TypeError):
    """A key that is neither one of the config's settings nor one of RLlib's (a ``ValueError``, as
    config checks raise, and a ``TypeError``, as an unexpected keyword argument does)."""


def collect_settings(cls) -> Dict[str, Setting]:
    """The settings of ``cls``: its own declarations first (what ``help()`` shows first), then its
    bases' (nearest first); the declarations are removed from the class body (instances hold the
    values)."""
    own = {name: v for name, v in vars(cls).items() if isinstance(v, Setting)}
    for name in own:
        delattr(cls, name)
    merged: Dict[str, Setting] = dict(own)
    for base in cls.__mro__[1:]:
        for name, setting in base.__dict__.get("_settings", {}).items():
            merged.setdefault(name, setting)
    return merged


def training_signature(settings: Iterable[str]) -> inspect.Signature:
    """``(self, *, <setting>=NotProvided, ..., **kwargs)``: RLlib's own training settings go to ``**kwargs``."""
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=NotProvided) for name in settings]
    params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def training_doc(owner: str, settings: Dict[str, Setting]) -> str:
    """The docstring of ``owner.training``: one entry per setting (its text and default)."""
    lines = [f"Sets {owner}'s settings (keyword-only; ``NotProvided`` keeps the current value) and RLlib's",
             "own training settings (``lr``, ``gamma``, ``grad_clip``, ``train_batch_size_per_learner``, ...:",
             "``AlgorithmConfig.training``). An unknown key is an error naming the closest known one.",
             "", "Args:"]
    for name, s in settings.items():
        body = textwrap.fill(f"{s.doc} (default: {s.default!r})", width=96, initial_indent=" " * 8,
                             subsequent_indent=" " * 8)
        lines += [f"    {name}:", body]
    lines += ["    **kwargs: RLlib's ``AlgorithmConfig.training`` settings.", "", "Returns:",
              "    This updated config (for chaining)."]
    return "\n".join(lines)


def closest(key: str, known: Iterable[str]) -> Optional[str]:
    """The known name closest to ``key`` (difflib's ratio ≥ 0.6), or None."""
    match = difflib.get_close_matches(key, sorted(set(known)), n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_setting_message(owner: str, key: str, known: Iterable[str]) -> str:
    """``"<owner>: unknown setting 'alpah'; did you mean 'alpha'?"`` (one line)."""
    best = closest(key, known)
    hint = f"did you mean {best!r}?" if best else f"see help({owner}.training) for the settings"
    return f"{owner}: unknown setting {key!r}; {hint}"
