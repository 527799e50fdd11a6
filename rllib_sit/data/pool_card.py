"""Behaviour policy pool cards: the JSON model, its validation, loading into policies, saving.

A pool card ``<pools dir>/<family>_<scenario>.json`` (package data
``rllib_sit/resources/policy_pools/``, see :func:`rllib_sit.data.paths.pools_dir`) lists, per
level (random / medium / expert), the members that realise it::

    {"env": "smac:2s3z",
     "paper_ranges": {"random": [lo, hi], ...},
     "levels": {"medium": [{"kind": "heuristic", "params": {"fn": "module:function", "skill": 0.4},
                            "how": "...", "measured_return": {"mean": ..., "std": ..., "n": 50,
                                                              "in_range": true}}], ...},
     "missing_levels": {"expert": "why no candidate reached the range"}, ...}

A member is a ``kind`` (a key of :data:`MEMBER_KINDS`) plus ``params``; :meth:`PoolMember.build`
turns it into a per-agent policy ``act(env, agent_index, rng, obs=None) -> action``. For discrete
actions a built member also knows its exact action distribution, ``act.action_probs(env, i) ->
[n_actions]`` (closed form, no RNG; see :func:`member_action_probs`): the dataset generator records
``log P(a_i^t)`` of the action taken as the optional column ``behaviour_logp``.
:func:`read_pool_card` validates a card (one error naming the file, the field and what was
expected), :func:`load_pool` builds a :class:`Pool` from it, :func:`write_pool_card` writes one
atomically. How members are chosen and measured: :mod:`rllib_sit.data.pool_calibration`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from rllib_sit.data.composition import LEVEL_WORDS, POOL_LEVELS
from rllib_sit.data.paths import pools_dir
from rllib_sit.envs.base import CoopEnv

AgentPolicy = Callable[..., Any]  # act(env, agent_index, rng, obs=None) -> action
ActionProbs = Callable[[CoopEnv, int], np.ndarray]  # probs(env, agent_index) -> [n_actions] float64
REBUILD_COMMAND = "rllib-sit data pools build {env_id}"


def pool_card_path(env_id: str, directory: Optional[os.PathLike] = None) -> Path:
    """``<directory or pools_dir()>/<family>_<scenario>.json``."""
    return Path(directory or pools_dir()) / (env_id.replace(":", "_") + ".json")


def _import_fn(path: str) -> Callable:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"policy function {path!r} cannot be imported ({e})") from None


# ------------------------------------------------------------------------------------------------
# Pool members: kind -> builder(params, base_dir) -> act(env, i, rng, obs=None)
# ------------------------------------------------------------------------------------------------

def uniform_action_probs(mask: np.ndarray, i: int, drift: float = 0.0, attack_drop: float = 0.0,
                         first_attack: int = 6) -> np.ndarray:
    """Exact distribution ``[n_actions]`` (float64) of a discrete uniform member's action for agent
    ``i`` with availability ``mask``, following the draws of :func:`_uniform_member`:

    * drift (only when the drift move ``m = 1 + i % 4`` is available): ``m`` w.p. ``drift``;
    * else an available action uniformly (``1/n`` each); a drawn attack (``a >= first_attack``) is
      replaced w.p. ``attack_drop`` by a uniformly random available calm action (``a <
      first_attack``), only when one exists: each attack keeps ``(1 - drop)/n``, each calm action
      gets ``1/n + drop * n_attack / (n * n_calm)``.
    """
    avail = np.asarray(mask) > 0
    n = int(avail.sum())
    if n == 0:
        raise ValueError(f"agent {i}: no available action (mask {np.asarray(mask).tolist()})")
    base = avail / float(n)
    if attack_drop > 0:
        idx = np.arange(len(avail))
        calm, attack = avail & (idx < first_attack), avail & (idx >= first_attack)
        if calm.any() and attack.any():
            base = np.where(attack, (1.0 - attack_drop) / n, base)
            base = base + calm * (attack_drop * int(attack.sum()) / (n * int(calm.sum())))
    m = 1 + i % 4
    d = drift if drift > 0 and m < len(avail) and avail[m] else 0.0
    p = (1.0 - d) * base
    if d > 0:
        p[m] += d
    return p


def member_action_probs(act: AgentPolicy) -> Optional[ActionProbs]:
    """The exact action distribution ``probs(env, i) -> [n_actions]`` of a built member (discrete
    envs), or None when the member does not expose one (an in-memory ``PoolMember.fn`` without an
    ``action_probs`` attribute, a heuristic ``fn`` without a ``<fn>_probs`` companion)."""
    return getattr(act, "action_probs", None)


def _uniform_member(params: dict, base_dir: Path) -> AgentPolicy:
    """Uniformly random action. Params (all optional):

    * ``support: "box" | "corners"`` (continuous): uniform in the action box, or uniform over its
      corners (every component ±max, like the saturated tanh outputs of an untrained policy);
    * ``attack_drop`` in [0, 1] (SMAC): an attack action drawn is replaced, with this probability,
      by a random available non-attack action (move/stop), which lowers a random team's damage;
    * ``drift`` in [0, 1] (discrete): with this probability the agent takes its own fixed move
      ``1 + i % 4`` (MPE: left/right/down/up) instead, so a team wanders off: below uniform actions,
      like an untrained policy stuck on one output;
    * ``corner_prob`` in [0, 1] (continuous): with this probability a corner of the box, else a
      box-uniform action (``support="corners"`` is ``corner_prob=1``).
    """
    support = params.get("support", "box")
    drop = float(params.get("attack_drop", 0.0))
    drift = float(params.get("drift", 0.0))
    corner_prob = 1.0 if support == "corners" else float(params.get("corner_prob", 0.0))
    first_attack = int(params.get("first_attack_action", 6))  # SMAC: 0 no-op, 1 stop, 2-5 move

    def act(env: CoopEnv, i: int, rng: np.random.Generator, obs=None):
        info = env.info
        if info.discrete:
            mask = env.action_masks()[i] > 0
            if drift > 0 and rng.random() < drift and mask[1 + i % 4]:
                return 1 + i % 4
            a = int(rng.choice(np.flatnonzero(mask)))
            if drop > 0 and a >= first_attack and rng.random() < drop:
                calm = np.flatnonzero(mask[:first_attack])
                if len(calm):
                    a = int(rng.choice(calm))
            return a
        if corner_prob > 0 and (corner_prob >= 1 or rng.random() < corner_prob):
            return (rng.choice([-1.0, 1.0], info.act_dim) * info.action_high).astype(np.float32)
        return rng.uniform(info.action_low, info.action_high, info.act_dim).astype(np.float32)

    def action_probs(env: CoopEnv, i: int) -> np.ndarray:
        if not env.info.discrete:  # corners (point masses) mixed with a box density: no pmf
            raise ValueError(f"{env.info.env_id}: a uniform member's action probabilities exist for discrete "
                             "actions only")
        return uniform_action_probs(env.action_masks()[i], i, drift, drop, first_attack)

    act.action_probs = action_probs
    return act


def _heuristic_member(params: dict, base_dir: Path) -> AgentPolicy:
    """``fn(env, i, rng, skill=skill)``; its exact distribution is the companion function
    ``<module>:<function>_probs(env, i, skill=skill)`` when the module defines one (SMAC and MPE
    ``heuristic_action`` -> ``heuristic_action_probs``)."""
    fn = _import_fn(params["fn"])
    skill = float(params["skill"])
    module, _, name = params["fn"].partition(":")
    probs_fn = getattr(importlib.import_module(module), name + "_probs", None)

    def act(env: CoopEnv, i: int, rng: np.random.Generator, obs=None):
        return fn(env, i, rng, skill=skill)

    if probs_fn is not None:
        def action_probs(env: CoopEnv, i: int) -> np.ndarray:
            return probs_fn(env, i, skill=skill)

        act.action_probs = action_probs
    return act


MEMBER_KINDS: Dict[str, Callable[[dict, Path], AgentPolicy]] = {
    "uniform": _uniform_member,
    "heuristic": _heuristic_member,
}


def _unit_interval(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0


# kind -> {param: (check, what is expected)}; "required" params are listed in MEMBER_REQUIRED.
MEMBER_PARAMS: Dict[str, Dict[str, tuple]] = {
    "uniform": {"support": (lambda v: v in ("box", "corners"), "'box' or 'corners'"),
                "attack_drop": (_unit_interval, "a number in [0, 1]"),
                "drift": (_unit_interval, "a number in [0, 1]"),
                "corner_prob": (_unit_interval, "a number in [0, 1]"),
                "first_attack_action": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                                        "a non-negative integer")},
    "heuristic": {"fn": (lambda v: isinstance(v, str) and v.count(":") == 1, "'module:function'"),
                  "skill": (_unit_interval, "a number in [0, 1]")},
}
MEMBER_REQUIRED: Dict[str, tuple] = {"uniform": (), "heuristic": ("fn", "skill")}


def check_member(kind: Any, params: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if ``kind``/``params`` do not describe a valid member."""
    if kind not in MEMBER_KINDS:
        raise ValueError(f"{where}: member kind {kind!r} is unknown; expected one of {sorted(MEMBER_KINDS)}")
    if not isinstance(params, dict):
        raise ValueError(f"{where}: params must be a mapping, got {params!r}")
    for name in MEMBER_REQUIRED[kind]:
        if name not in params:
            raise ValueError(f"{where}: {kind} member is missing params.{name} "
                             f"(expected {MEMBER_PARAMS[kind][name][1]})")
    for name, value in params.items():
        if name not in MEMBER_PARAMS[kind]:
            raise ValueError(f"{where}: {kind} member has unknown params.{name}; "
                             f"expected some of {sorted(MEMBER_PARAMS[kind])}")
        ok, expected = MEMBER_PARAMS[kind][name]
        if not ok(value):
            raise ValueError(f"{where}: params.{name} = {value!r}; expected {expected}")


@dataclasses.dataclass
class PoolMember:
    """One behaviour policy of a pool level: ``kind`` + ``params`` (+ measured return)."""

    kind: str
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    how: str = ""
    measured: Optional[Dict[str, float]] = None  # mean, std, n, in_range
    fn: Optional[AgentPolicy] = None  # in-memory policy (tests); never written to a card

    def build(self, base_dir: Optional[Path] = None) -> AgentPolicy:
        if self.fn is not None:
            return self.fn
        if self.kind not in MEMBER_KINDS:
            raise ValueError(f"pool member kind {self.kind!r} is unknown; expected one of {sorted(MEMBER_KINDS)}")
        return MEMBER_KINDS[self.kind](self.params, Path(base_dir or pools_dir()))

    def describe(self) -> Dict[str, Any]:
        d = {"kind": self.kind, "params": self.params, "how": self.how}
        if self.measured is not None:
            d["measured_return"] = self.measured
        return d


@dataclasses.dataclass
class Pool:
    """The behaviour policy pool of one environment: level name -> members."""

    env_id: str
    levels: Dict[str, List[PoolMember]]
    card: Dict[str, Any] = dataclasses.field(default_factory=dict)
    base_dir: Optional[Path] = None

    @property
    def card_path(self) -> Optional[Path]:
        """The card this pool was loaded from (None for a pool built in memory)."""
        return None if self.base_dir is None else pool_card_path(self.env_id, self.base_dir)

    def members(self, level: str) -> List[PoolMember]:
        level = LEVEL_WORDS.get(level, level)
        if level not in self.levels or not self.levels[level]:
            raise ValueError(f"policy pool of {self.env_id} has no {level!r} level; it has {sorted(self.levels)} "
                             f"(rebuild with: {REBUILD_COMMAND.format(env_id=self.env_id)})")
        return self.levels[level]

    def policies(self, level: str) -> List[AgentPolicy]:
        return [m.build(self.base_dir) for m in self.members(level)]

    def __getitem__(self, level: str) -> AgentPolicy:
        """``pool["medium"]`` (or ``pool["m"]``): the level's first member as ``act(env, i, rng)``."""
        return self.policies(level)[0]

    def describe(self) -> Dict[str, Any]:
        return {lvl: [m.describe() for m in ms] for lvl, ms in self.levels.items()}

    def warnings(self, level: str) -> List[str]:
        """Why members of ``level`` are not in the paper's range (stand-ins), if they are not."""
        level = LEVEL_WORDS.get(level, level)
        out = []
        for m in self.members(level):
            if m.measured is not None and m.measured.get("in_range") is False:  # None: the paper gives no range
                out.append(f"{self.env_id} {level} member {m.kind} {m.params} measured "
                           f"{m.measured.get('mean')} outside the paper's {level} range "
                           f"{self.card.get('paper_ranges', {}).get(level)}: "
                           f"{self.card.get('missing_levels', {}).get(level, 'stand-in')}")
        return out


# ------------------------------------------------------------------------------------------------
# Reading, validating, writing cards
# ------------------------------------------------------------------------------------------------

def validate_pool_card(card: Any, where: str, env_id: Optional[str] = None) -> Dict[str, Any]:
    """Check a pool card's structure; ``ValueError`` naming ``where``, the field and the expected value."""
    if not isinstance(card, dict):
        raise ValueError(f"{where}: expected a JSON object (a pool card), got {type(card).__name__}")
    if not isinstance(card.get("env"), str) or ":" not in card["env"]:
        raise ValueError(f"{where}: field 'env' = {card.get('env')!r}; expected an env id 'family:scenario'")
    if env_id is not None and card["env"] != env_id:
        raise ValueError(f"{where}: pool card is for env {card['env']!r}, expected {env_id!r}")
    levels = card.get("levels")
    if not isinstance(levels, dict):
        raise ValueError(f"{where}: field 'levels' = {levels!r}; expected a mapping level -> list of members")
    for lvl, members in levels.items():
        if lvl not in POOL_LEVELS:
            raise ValueError(f"{where}: unknown pool level {lvl!r}; expected one of {list(POOL_LEVELS)}")
        if not isinstance(members, list):
            raise ValueError(f"{where}: levels.{lvl} must be a list of members, got {type(members).__name__}")
        for k, m in enumerate(members):
            if not isinstance(m, dict):
                raise ValueError(f"{where}: levels.{lvl}[{k}] must be an object with 'kind' and 'params'")
            check_member(m.get("kind"), m.get("params", {}),
                         f"{where}: level {lvl}" + (f" member {k}" if len(members) > 1 else ""))
            mr = m.get("measured_return")
            if mr is not None and not (isinstance(mr, dict) and isinstance(mr.get("mean"), (int, float))):
                raise ValueError(f"{where}: levels.{lvl}[{k}].measured_return must be an object with a numeric "
                                 f"'mean', got {mr!r}")
    for lvl, r in (card.get("paper_ranges") or {}).items():
        if lvl not in POOL_LEVELS or not (isinstance(r, list) and len(r) == 2
                                          and all(isinstance(x, (int, float)) for x in r)):
            raise ValueError(f"{where}: paper_ranges.{lvl} = {r!r}; expected [low, high] for a level in "
                             f"{list(POOL_LEVELS)}")
    if not isinstance(card.get("missing_levels", {}), dict):
        raise ValueError(f"{where}: field 'missing_levels' must be a mapping level -> reason")
    return card


def read_pool_card(env_id: str, directory: Optional[os.PathLike] = None) -> Dict[str, Any]:
    """The validated card of ``env_id`` (``FileNotFoundError`` with the rebuild command if absent)."""
    path = pool_card_path(env_id, directory)
    if not path.exists():
        raise FileNotFoundError(f"no policy pool for {env_id} at {path}; build it with: "
                                f"{REBUILD_COMMAND.format(env_id=env_id)}")
    return _read_card_file(path, env_id)


def _read_card_file(path: Path, env_id: Optional[str] = None) -> Dict[str, Any]:
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); expected a pool card") from None
    return validate_pool_card(card, str(path), env_id)


def load_pool(env_id: str, directory: Optional[os.PathLike] = None) -> Pool:
    """Read ``<pools dir>/<family>_<scenario>.json`` into a :class:`Pool`.

    ``load_pool(env_id)[level]`` is a per-agent policy ``act(env, agent_index, rng) -> action`` for
    ``level`` in random/medium/expert (or r/m/e).
    """
    card = read_pool_card(env_id, directory)
    levels = {lvl: [PoolMember(m["kind"], dict(m.get("params", {})), m.get("how", ""), m.get("measured_return"))
                    for m in members]
              for lvl, members in card["levels"].items()}
    return Pool(env_id, levels, card, pool_card_path(env_id, directory).parent)


def write_pool_card(env_id: str, card: Dict[str, Any], directory: Optional[os.PathLike] = None) -> Path:
    """Validate ``card`` and write it atomically (temporary file renamed into place)."""
    path = pool_card_path(env_id, directory)
    validate_pool_card(card, f"pool card of {env_id}", env_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(card, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def list_pool_cards(directory: Optional[os.PathLike] = None) -> List[Dict[str, Any]]:
    """Every validated card of ``directory`` (default :func:`pools_dir`), sorted by file name."""
    folder = Path(directory or pools_dir())
    if not folder.is_dir():
        raise FileNotFoundError(f"policy pool folder {folder} does not exist; expected a folder of "
                                "<family>_<scenario>.json pool cards")
    return [_read_card_file(p) for p in sorted(folder.glob("*.json"))]


def pool_table(directory: Optional[os.PathLike] = None) -> List[Dict[str, Any]]:
    """One row per (env, level): paper range, member, measured return."""
    rows = []
    for card in list_pool_cards(directory):
        for lvl in POOL_LEVELS:
            ms = card["levels"].get(lvl, [])
            rng = (card.get("paper_ranges") or {}).get(lvl)
            if not ms:
                rows.append({"env": card["env"], "level": lvl, "range": rng, "member": "MISSING",
                             "mean": None, "std": None, "n": None, "in_range": False,
                             "why": card.get("missing_levels", {}).get(lvl, "")})
            for m in ms:
                mr = m.get("measured_return") or {}
                member = m["kind"] + "".join(f" {k}={v}" for k, v in m.get("params", {}).items() if k != "fn")
                if mr.get("stand_in"):
                    member += " (STAND-IN)"
                rows.append({"env": card["env"], "level": lvl, "range": rng, "member": member,
                             "mean": mr.get("mean"), "std": mr.get("std"), "n": mr.get("n"),
                             "in_range": mr.get("in_range")})
    return rows
