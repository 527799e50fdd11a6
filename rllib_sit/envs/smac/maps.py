"""SMAC map definitions: unit compositions, episode limits, spawn layouts and pathing grids.

Facts from specs/smac_facts.md (oxwhirl/smac ``smac_maps.py`` and the SC2Map files). The maps
3m, 3s_vs_3z and 3s_vs_4z are *approximations*: SMAC's limits (60/150/200) and compositions are
exact, but terrain and spawn points are copied from 8m (3m) and 3s_vs_5z (3s_vs_3z, 3s_vs_4z).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from rllib_sit.envs.smac.units import UNIT_TYPES, type_order

MAP_SIZE = 32  # every SMAC map used here is 32 x 32 cells
PATHING_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pathing")

TEAM1_POINT = (9.0, 16.0)  # agents' spawn point; the enemy attack-moves to it
TEAM2_POINT = (23.0, 16.0)  # enemies' spawn point


@dataclasses.dataclass(frozen=True)
class MapSpec:
    """One SMAC map.

    Attributes:
        name: map name (``"2s3z"``).
        allies / enemies: ``((unit_type, count), ...)`` compositions.
        limit: episode limit (agent steps).
        map_type: SMAC's map_type (decides the enemy type one-hot numbering).
        unit_type_bits: length of the type one-hot in obs/state (0 = none).
        pathing: pathing grid file stem (in ``pathing/``).
        ally_positions / enemy_positions: fixed spawn positions (2s_vs_1sc); None = packed around
            the team point.
        approximate: True where terrain/spawns are borrowed from another map.
    """

    name: str
    allies: Tuple[Tuple[str, int], ...]
    enemies: Tuple[Tuple[str, int], ...]
    limit: int
    map_type: str
    unit_type_bits: int
    pathing: str
    ally_positions: Optional[Tuple[Tuple[float, float], ...]] = None
    enemy_positions: Optional[Tuple[Tuple[float, float], ...]] = None
    approximate: bool = False

    @property
    def n_agents(self) -> int:
        return sum(c for _, c in self.allies)

    @property
    def n_enemies(self) -> int:
        return sum(c for _, c in self.enemies)

    def ally_types(self) -> List[str]:
        """Agent type per agent, in SMAC ally order (unit type, then position)."""
        order = type_order(tuple(t for t, _ in self.allies))
        counts = dict(self.allies)
        return [t for t in order for _ in range(counts[t])]

    def enemy_types(self) -> List[str]:
        """Enemy type per enemy index (same type grouping as the allies; SC2's raw order is UNVERIFIED)."""
        order = type_order(tuple(t for t, _ in self.enemies))
        counts = dict(self.enemies)
        return [t for t in order for _ in range(counts[t])]

    @property
    def shield_bits_ally(self) -> int:
        return int(any(UNIT_TYPES[t].shield > 0 for t, _ in self.allies))

    @property
    def shield_bits_enemy(self) -> int:
        return int(any(UNIT_TYPES[t].shield > 0 for t, _ in self.enemies))

    @property
    def max_reward(self) -> float:
        """SMAC's max_reward: 10 per enemy + 200 for the win + all enemy HP and shields."""
        pool = sum(c * (UNIT_TYPES[t].hp + UNIT_TYPES[t].shield) for t, c in self.enemies)
        return 10.0 * self.n_enemies + 200.0 + pool

    def ally_type_id(self, name: str) -> int:
        """SMAC's ally one-hot index: unit_type - min ally unit_type."""
        return type_order(tuple(t for t, _ in self.allies)).index(name)

    def enemy_type_id(self, name: str) -> int:
        """SMAC's enemy one-hot index (stock SC2 ids; 2s3z: zealot 0, stalker 1 -- reversed vs allies)."""
        if self.map_type == "stalkers_and_zealots":
            return {"zealot": 0, "stalker": 1}[name]
        if self.map_type == "colossi_stalkers_zealots":
            return {"colossus": 0, "stalker": 1, "zealot": 2}[name]
        return 0


_SHORT = {"stalker": "s", "zealot": "z", "colossus": "c", "marine": "m"}


def agent_names(spec: MapSpec) -> List[str]:
    """SMAC-like short agent ids: 2s3z -> s1, s2, z1, z2, z3."""
    out, seen = [], {}
    for t in spec.ally_types():
        seen[t] = seen.get(t, 0) + 1
        out.append(f"{_SHORT[t]}{seen[t]}")
    return out


_2S1SC_ALLIES = ((11.1208, 10.338), (16.976, 10.3662))
_2S1SC_ENEMY = ((13.92, 20.0397),)

MAPS: Dict[str, MapSpec] = {m.name: m for m in [
    MapSpec("2s3z", (("stalker", 2), ("zealot", 3)), (("stalker", 2), ("zealot", 3)), 120,
            "stalkers_and_zealots", 2, "2s3z"),
    MapSpec("3s_vs_5z", (("stalker", 3),), (("zealot", 5),), 250, "stalkers", 0, "3s_vs_5z"),
    MapSpec("2s_vs_1sc", (("stalker", 2),), (("spine_crawler", 1),), 300, "stalkers", 0, "2s_vs_1sc",
            ally_positions=_2S1SC_ALLIES, enemy_positions=_2S1SC_ENEMY),
    MapSpec("8m", (("marine", 8),), (("marine", 8),), 120, "marines", 0, "8m"),
    MapSpec("1c3s5z", (("colossus", 1), ("stalker", 3), ("zealot", 5)),
            (("colossus", 1), ("stalker", 3), ("zealot", 5)), 180, "colossi_stalkers_zealots", 3, "1c3s5z"),
    MapSpec("10m_vs_11m", (("marine", 10),), (("marine", 11),), 150, "marines", 0, "10m_vs_11m"),
    MapSpec("3m", (("marine", 3),), (("marine", 3),), 60, "marines", 0, "8m", approximate=True),
    MapSpec("3s_vs_3z", (("stalker", 3),), (("zealot", 3),), 150, "stalkers", 0, "3s_vs_5z", approximate=True),
    MapSpec("3s_vs_4z", (("stalker", 3),), (("zealot", 4),), 200, "stalkers", 0, "3s_vs_5z", approximate=True),
]}


def get_map(name: str) -> MapSpec:
    """The :class:`MapSpec` called ``name``; ValueError listing the known maps otherwise."""
    if name not in MAPS:
        raise ValueError(f"map_name {name!r} is unknown; expected one of {sorted(MAPS)}")
    return MAPS[name]


@functools.lru_cache(maxsize=None)
def load_pathing(stem: str) -> np.ndarray:
    """Pathing grid ``[x, y]`` bool (True = walkable) from ``pathing/<stem>.txt``.

    The file's first data line is y=31; a cell is unpathable when bit 0 of its digit is set.
    """
    path = os.path.join(PATHING_DIR, f"{stem}.txt")
    with open(path) as f:
        rows = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    if len(rows) != MAP_SIZE or any(len(r) != MAP_SIZE for r in rows):
        raise ValueError(f"pathing file {path}: expected {MAP_SIZE} lines of {MAP_SIZE} digits")
    cells = np.array([[int(c) for c in r] for r in rows], dtype=np.int64)  # [row (y=31..0), x]
    walk = (cells & 1) == 0
    grid = walk[::-1].T.copy()  # -> [x, y]
    grid.setflags(write=False)
    return grid


def _packed_offsets(n: int, spacing: float) -> np.ndarray:
    """n grid offsets nearest the origin (ties broken by angle): SC2-like packing around a point."""
    k = int(math.ceil(math.sqrt(n))) + 2
    g = np.arange(-k, k + 1, dtype=np.float64)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    cand = np.stack([xx.ravel(), yy.ravel()], 1)
    dist = np.round(np.hypot(cand[:, 0], cand[:, 1]), 6)
    ang = np.round(np.arctan2(cand[:, 1], -cand[:, 0]) % (2 * np.pi), 6)
    order = np.lexsort((ang, dist))
    return cand[order[:n]] * spacing


def spawn_positions(spec: MapSpec, rng: Optional[np.random.Generator], jitter: float) -> Tuple[np.ndarray, np.ndarray]:
    """Spawn positions ``(allies [n_ag, 2], enemies [n_en, 2])`` in ally/enemy index order.

    Units of a team are packed on a square lattice around the team point (the spec marks SC2's
    real placement UNVERIFIED); enemies mirror the agents. ``jitter`` (map units, uniform) is drawn
    from ``rng`` so a seed fixes the layout.
    """
    out = []
    for fixed, types, point, sign in ((spec.ally_positions, spec.ally_types(), TEAM1_POINT, 1.0),
                                      (spec.enemy_positions, spec.enemy_types(), TEAM2_POINT, -1.0)):
        if fixed is not None:
            pos = np.array(fixed, dtype=np.float64)
        else:
            spacing = 2 * max(UNIT_TYPES[t].radius for t in types) + 0.2
            off = _packed_offsets(len(types), spacing)
            off[:, 0] *= sign
            pos = np.array(point, dtype=np.float64) + off
        if jitter > 0 and rng is not None:
            pos = pos + rng.uniform(-jitter, jitter, pos.shape)
        out.append(pos)
    return out[0], out[1]
