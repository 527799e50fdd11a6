"""Agent-wise dataset compositions (SIT paper Appendix C.3, Tables 7–9) and the data specs.

A composition says which behaviour level (``r`` random, ``m`` medium, ``e`` expert) every agent
uses, in which share of the episodes::

    50% [s1:r, s2:r, z1:r, z2:r, z3:r] + 50% [s1:m, s2:m, z1:m, z2:m, z3:m]
    99.5% [s1:r, ...] + 0.5% [s1:m, ...]

Each bracketed *component* names every agent of the environment exactly once. Percentages must
sum to 100. A component may end with options ``name=value`` (space separated); the only one is
``noise=σ``, σ in [0, 1]: the behaviour actions of that component's episodes are perturbed
(:data:`COMPONENT_OPTIONS`; the offline decentralized MARL paper's MAMuJoCo recipe adds "a small
noise to the policies")::

    20% [l1:r, l2:r] + 35% [l1:m, l2:e] noise=0.1 + 35% [l1:e, l2:m] noise=0.1 + 10% [l1:e, l2:e] noise=0.1

:func:`parse_composition` parses and validates such a string (one ``ValueError``
naming the bad part and what was expected); :meth:`Composition.episode_counts` splits an episode
budget over the components deterministically (largest remainder, ties to the earlier component).

The data specs (package data ``rllib_sit/resources/specs/<family>.yaml``, see
:mod:`rllib_sit.data.paths`) hold every composition of the paper per environment and quality, with
the paper's average episode return and each pool's return range; :func:`load_specs` /
:func:`dataset_spec` read and validate them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rllib_sit.data.paths import SPECS_DIR_ENV, data_dir, specs_dir
from rllib_sit.data.schema import LEVELS

LEVEL_WORDS = {"r": "random", "m": "medium", "e": "expert"}
_PCT_TOL = 1e-6
# Component options ``name=value`` written after a component's brackets: name -> what it means.
COMPONENT_OPTIONS = {
    "noise": "action noise sigma in [0, 1]: continuous actions get Gaussian noise of std "
             "sigma * (high - low) / 2, clipped to the action box; discrete actions are replaced, with "
             "probability sigma, by a uniformly random available action",
}


@dataclasses.dataclass(frozen=True)
class Component:
    """One ``P% [agent:level, ...]`` term: ``percent`` of the episodes use ``levels``."""

    percent: float
    levels: Tuple[Tuple[str, str], ...]  # (agent id, level letter) in the order written
    noise: float = 0.0  # option noise=σ (COMPONENT_OPTIONS); 0 = the pool policies unchanged

    def level_of(self, agent: str) -> str:
        return dict(self.levels)[agent]

    def level_codes(self, agents: Sequence[str]) -> List[int]:
        """Schema ``POLICY_LEVELS`` codes (0/1/2) in the order of ``agents``."""
        d = dict(self.levels)
        return [LEVELS[d[a]] for a in agents]

    def to_string(self) -> str:
        text = f"{_fmt_pct(self.percent)}% [" + ", ".join(f"{a}:{l}" for a, l in self.levels) + "]"
        return text + (f" noise={self.noise:g}" if self.noise > 0 else "")


@dataclasses.dataclass(frozen=True)
class Composition:
    """A parsed composition: components whose percentages sum to 100."""

    components: Tuple[Component, ...]

    @property
    def agents(self) -> List[str]:
        return [a for a, _ in self.components[0].levels]

    def to_string(self) -> str:
        return " + ".join(c.to_string() for c in self.components)

    __str__ = to_string

    def episode_counts(self, n_episodes: int) -> List[int]:
        """Episodes per component: largest-remainder rounding, summing exactly to ``n_episodes``.

        Ties of the fractional remainders go to the earlier component, so the split is a pure
        function of (composition, n_episodes).
        """
        if int(n_episodes) != n_episodes or n_episodes < 0:
            raise ValueError(f"n_episodes must be a non-negative integer, got {n_episodes!r}")
        n_episodes = int(n_episodes)
        exact = [c.percent * n_episodes / 100.0 for c in self.components]
        counts = [int(math.floor(x + 1e-9)) for x in exact]
        rest = n_episodes - sum(counts)
        order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
        for i in order[:rest]:
            counts[i] += 1
        return counts

    def levels_used(self) -> List[str]:
        return sorted({l for c in self.components for _, l in c.levels}, key=lambda l: LEVELS[l])


def _fmt_pct(p: float) -> str:
    return f"{p:g}"


_COMPONENT_RE = re.compile(r"^\s*(?P<pct>[0-9]*\.?[0-9]+)\s*%\s*\[(?P<body>[^\[\]]*)\]\s*(?P<opts>[^\[\]]*?)\s*$")


def _parse_options(text: str, k: int) -> Dict[str, float]:
    """``name=value`` options after component ``k``'s brackets (see :data:`COMPONENT_OPTIONS`)."""
    out: Dict[str, float] = {}
    for item in text.split():
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise ValueError(f"composition component {k}: option {item!r} must look like 'name=value' "
                             f"with name one of {sorted(COMPONENT_OPTIONS)}")
        if name not in COMPONENT_OPTIONS:
            raise ValueError(f"composition component {k}: unknown option {name!r}; expected one of "
                             f"{sorted(COMPONENT_OPTIONS)} ({name}=... after the brackets)")
        if name in out:
            raise ValueError(f"composition component {k}: option {name!r} is given twice")
        try:
            x = float(value)
        except ValueError:
            x = float("nan")
        if not 0.0 <= x <= 1.0:  # also rejects nan
            raise ValueError(f"composition component {k}: option {name}={value!r}; expected a number in [0, 1]")
        out[name] = x
    return out


def parse_composition(text: str, agents: Optional[Sequence[str]] = None) -> Composition:
    """Parse and validate ``"P% [a1:l, a2:l, ...] + Q% [...]"``.

    Args:
        text: the composition string.
        agents: the environment's agent ids; when given, every component must name exactly these
            agents (any order). Without it, all components must name the same set of agents.

    Raises:
        ValueError: naming the bad part (component, agent, level, percentage) and what was expected.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"composition: expected a string like '50% [a1:r, a2:m] + 50% [a1:m, a2:m]' "
                         f"(options after a component's brackets: noise=0.1), got {text!r}")
    expected = list(agents) if agents is not None else None
    comps: List[Component] = []
    for k, part in enumerate(text.split("+"), start=1):
        m = _COMPONENT_RE.match(part)
        if not m:
            raise ValueError(f"composition component {k} {part.strip()!r} is malformed; expected "
                             f"'P% [agent:level, ...]' with level one of {sorted(LEVELS)}, optionally "
                             f"followed by options name=value ({sorted(COMPONENT_OPTIONS)})")
        pct = float(m.group("pct"))
        if not 0.0 < pct <= 100.0:
            raise ValueError(f"composition component {k} {part.strip()!r}: percentage {pct:g}% must be in (0, 100]")
        levels: List[Tuple[str, str]] = []
        for item in (s.strip() for s in m.group("body").split(",")):
            if item.count(":") != 1:
                raise ValueError(f"composition component {k}: entry {item!r} must look like 'agent:level' "
                                 f"with level one of {sorted(LEVELS)}")
            agent, level = (s.strip() for s in item.split(":"))
            if level not in LEVELS:
                raise ValueError(f"composition component {k}: agent {agent!r} has level {level!r}; "
                                 f"expected one of {sorted(LEVELS)} (r=random, m=medium, e=expert)")
            if any(agent == a for a, _ in levels):
                raise ValueError(f"composition component {k}: agent {agent!r} appears twice")
            levels.append((agent, level))
        names = [a for a, _ in levels]
        if expected is None:
            expected = names
        unknown = [a for a in names if a not in expected]
        missing = [a for a in expected if a not in names]
        if unknown:
            raise ValueError(f"composition component {k}: unknown agent(s) {unknown}; expected the agents {expected}")
        if missing:
            raise ValueError(f"composition component {k}: missing agent(s) {missing}; every component must "
                             f"name all agents {expected}")
        # store in the environment's agent order
        order = {a: i for i, a in enumerate(expected)}
        opts = _parse_options(m.group("opts"), k)
        comps.append(Component(pct, tuple(sorted(levels, key=lambda al: order[al[0]])), opts.get("noise", 0.0)))
    total = sum(c.percent for c in comps)
    if abs(total - 100.0) > _PCT_TOL:
        raise ValueError(f"composition percentages sum to {total:g}%, expected 100% "
                         f"({' + '.join(_fmt_pct(c.percent) + '%' for c in comps)})")
    return Composition(tuple(comps))


def uniform_composition(agents: Sequence[str], level: str) -> Composition:
    """``100% [a:level for all agents]``."""
    return parse_composition("100% [" + ", ".join(f"{a}:{level}" for a in agents) + "]", agents)


# ------------------------------------------------------------------------------------------------
# Data specs: rllib_sit/resources/specs/<family>.yaml (rllib_sit.data.paths.specs_dir)
# ------------------------------------------------------------------------------------------------

POOL_LEVELS = ("random", "medium", "expert")


def offline_data_root() -> Path:
    """The data dir (dataset and column cache root): ``$RLLIB_SIT_DATA_DIR`` or ``./offline_data``.

    Kept under this name for :mod:`rllib_sit.data.column_cache`; new code uses
    :func:`rllib_sit.data.paths.data_dir`. Specs and pool cards are package data, not in here.
    """
    return data_dir()


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One (environment, quality) entry of the data specs."""

    env_id: str
    quality: str
    composition: Composition
    paper_average_return: Optional[float]
    source: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The specs of one environment: agents, pool return ranges, datasets by quality.

    ``pool_ranges`` holds only the levels the paper gives a return range for (SIT: all three; the
    offline decentralized MARL paper's differential game: none, its data is uniform random).
    """

    env_id: str
    agents: List[str]
    pool_ranges: Dict[str, Tuple[float, float]]
    datasets: Dict[str, DatasetSpec]

    def return_range(self) -> Optional[Tuple[float, float]]:
        """The environment's episode-return range: the lowest pool's low to the highest pool's high
        (SIT Tables 4-6: "determined by fully random policies and the best policies"); None when the
        paper gives no pool range."""
        if not self.pool_ranges:
            return None
        return (min(r[0] for r in self.pool_ranges.values()), max(r[1] for r in self.pool_ranges.values()))

    def levels_used(self) -> List[str]:
        """Pool levels (random/medium/expert) that some dataset of this environment uses."""
        used = {LEVEL_WORDS[l] for d in self.datasets.values() for l in d.composition.levels_used()}
        return [lvl for lvl in POOL_LEVELS if lvl in used]


_DATASET_FIELDS = {"composition", "paper_average_return", "source", "note"}


def _parse_env_spec(env_id: str, d: dict, where: str) -> EnvSpec:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: entry {env_id!r} must be a mapping")
    for key in ("agents", "pool_ranges", "datasets"):
        if key not in d:
            raise ValueError(f"{where}: {env_id}: missing field {key!r}")
    if not (isinstance(d["agents"], list) and d["agents"]):
        raise ValueError(f"{where}: {env_id}.agents must be a non-empty list of agent ids, got {d['agents']!r}")
    agents = [str(a) for a in d["agents"]]
    pr = d["pool_ranges"]
    if pr is None:
        pr = {}
    if not isinstance(pr, dict):
        raise ValueError(f"{where}: {env_id}.pool_ranges must be a mapping level -> [low, high] "
                         f"(levels {list(POOL_LEVELS)}; {{}} when the paper gives no range), got {pr!r}")
    ranges: Dict[str, Tuple[float, float]] = {}
    for lvl, r in pr.items():
        if lvl not in POOL_LEVELS:
            raise ValueError(f"{where}: {env_id}: pool_ranges.{lvl}: unknown pool level {lvl!r}; "
                             f"expected some of {list(POOL_LEVELS)}")
        if not (isinstance(r, (list, tuple)) and len(r) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)
                and float(r[0]) < float(r[1])):
            raise ValueError(f"{where}: {env_id}: pool_ranges.{lvl} must be [low, high] with low < high, got {r!r}")
        ranges[lvl] = (float(r[0]), float(r[1]))
    if not isinstance(d["datasets"], dict):
        raise ValueError(f"{where}: {env_id}.datasets must be a mapping quality -> {{composition: ...}}, "
                         f"got {d['datasets']!r}")
    datasets: Dict[str, DatasetSpec] = {}
    for quality, q in d["datasets"].items():
        if not isinstance(q, dict) or "composition" not in q:
            raise ValueError(f"{where}: {env_id}.datasets.{quality}: missing field 'composition'")
        try:
            comp = parse_composition(q["composition"], agents)
        except ValueError as e:
            raise ValueError(f"{where}: {env_id}.datasets.{quality}: {e}") from None
        avg = q.get("paper_average_return")
        if avg is not None and (isinstance(avg, bool) or not isinstance(avg, (int, float))):
            raise ValueError(f"{where}: {env_id}.datasets.{quality}.paper_average_return must be a number or "
                             f"null, got {avg!r}")
        unknown = sorted(set(q) - _DATASET_FIELDS)
        if unknown:
            raise ValueError(f"{where}: {env_id}.datasets.{quality}: unknown field(s) {unknown}; expected some "
                             f"of {sorted(_DATASET_FIELDS)}")
        datasets[str(quality)] = DatasetSpec(env_id, str(quality), comp, None if avg is None else float(avg),
                                             str(q.get("source", "")), str(q.get("note", "")).strip())
    return EnvSpec(env_id, agents, ranges, datasets)


def load_specs(directory: Optional[os.PathLike] = None) -> Dict[str, EnvSpec]:
    """Read and validate every ``*.yaml`` data spec; returns ``{env_id: EnvSpec}``."""
    import yaml

    if directory is not None:
        where = "the directory argument"
    elif os.environ.get(SPECS_DIR_ENV):
        where = f"${SPECS_DIR_ENV}"
    else:
        where = "the package data rllib_sit/resources/specs; is the package installed with its data?"
    directory = Path(directory) if directory is not None else specs_dir()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no data specs (*.yaml) found in {directory} ({where}); expected one "
                                "<family>.yaml per environment family")
    out: Dict[str, EnvSpec] = {}
    for f in files:
        with open(f) as fh:
            try:
                doc = yaml.safe_load(fh) or {}
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                why = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise ValueError(f"{f}: not valid YAML{at} ({why}); expected a mapping of environment ids") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{f}: expected a mapping of environment ids")
        for env_id, d in doc.items():
            if env_id in out:
                raise ValueError(f"{f}: environment {env_id!r} is defined twice")
            out[env_id] = _parse_env_spec(env_id, d, str(f))
    return out


def env_spec(env_id: str, directory: Optional[os.PathLike] = None) -> EnvSpec:
    specs = load_specs(directory)
    if env_id not in specs:
        raise ValueError(f"no data spec for environment {env_id!r}; specs exist for {sorted(specs)}")
    return specs[env_id]


def dataset_spec(env_id: str, quality: str, directory: Optional[os.PathLike] = None) -> DatasetSpec:
    """The spec of ``quality`` (e.g. ``"low"``) for ``env_id``; clear error for unknown qualities."""
    spec = env_spec(env_id, directory)
    if quality not in spec.datasets:
        raise ValueError(f"unknown quality {quality!r} for {env_id}; expected one of {sorted(spec.datasets)}")
    return spec.datasets[quality]
