"""Unit statistics of the SMAC simulator (source: specs/smac_facts.md).

All times are in SC2 *game loops* at normal speed (16 loops = 1 normal-speed second); speeds are
map units per game loop. One SMAC agent step is 8 game loops (``step_mul=8``).

Weapon values are the stock SC2 (Liquipedia LotV) values listed in the spec; the spec marks them
UNVERIFIED against SC2 4.10, and so are they here.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

LOOPS_PER_SECOND = 16.0  # normal game speed
STEP_MUL = 8  # game loops per agent step (SMAC default)

# Attribute bits (for bonus damage).
LIGHT, ARMORED, BIO, MECH, MASSIVE, STRUCTURE = 1, 2, 4, 8, 16, 32

# Shields (all Protoss units): regeneration starts this many loops after the last damage taken,
# at this rate (shield points per loop). 10 s and 2/s at normal speed.
SHIELD_REGEN_DELAY = 10.0 * LOOPS_PER_SECOND
SHIELD_REGEN_RATE = 2.0 / LOOPS_PER_SECOND


@dataclasses.dataclass(frozen=True)
class UnitType:
    """Static statistics of one unit type.

    Attributes:
        name: type name, also the agent type string (``"stalker"``...).
        hp / shield / armor: maxima and armor (shield armor is 0 for every unit).
        damage: damage per hit; ``bonus`` extra damage per hit vs ``bonus_attr``; ``hits`` hits per attack.
        range: weapon range, edge to edge (SC2 semantics: centre distance <= range + both radii).
        cooldown: loops between attacks. speed: map units per loop. sight: acquisition range.
        radius: collision radius. attrs: attribute bit mask. hp_regen: HP per loop (zerg).
        splash: colossus-style line splash. collides: takes part in ground collision.
        max_cd: SMAC's state normaliser of ``weapon_cooldown`` (game loops).
    """

    name: str
    hp: float
    shield: float
    armor: float
    damage: float
    bonus: float
    bonus_attr: int
    hits: int
    range: float
    cooldown: float
    speed: float
    sight: float
    radius: float
    attrs: int
    hp_regen: float = 0.0
    splash: bool = False
    collides: bool = True
    max_cd: float = 1.0


def _t(seconds: float) -> float:
    return seconds * LOOPS_PER_SECOND


def _v(speed_per_second: float) -> float:
    return speed_per_second / LOOPS_PER_SECOND


UNIT_TYPES: Dict[str, UnitType] = {
    "marine": UnitType("marine", 45, 0, 0, 6, 0, 0, 1, 5, _t(0.86), _v(2.25), 9, 0.375,
                       LIGHT | BIO, max_cd=15),
    "stalker": UnitType("stalker", 80, 80, 1, 13, 5, ARMORED, 1, 6, _t(1.87), _v(2.9531), 10, 0.625,
                        ARMORED | MECH, max_cd=35),
    "zealot": UnitType("zealot", 100, 50, 1, 8, 0, 0, 2, 0.1, _t(1.2), _v(2.25), 9, 0.5,
                       LIGHT | BIO, max_cd=22),
    # The colossus walks over small units in SC2 (no ground collision) and its lances hit a line.
    "colossus": UnitType("colossus", 200, 150, 1, 10, 5, LIGHT, 2, 7, _t(1.5), _v(2.25), 10, 1.0,
                         ARMORED | MECH | MASSIVE, splash=True, collides=False, max_cd=24),
    "spine_crawler": UnitType("spine_crawler", 300, 0, 2, 25, 5, ARMORED, 1, 7, _t(1.85), 0.0, 11, 1.0,
                              ARMORED | BIO | STRUCTURE, hp_regen=0.27 / LOOPS_PER_SECOND, max_cd=1),
}

# Colossus "line splash": every enemy whose centre lies within COLOSSUS_LINE_WIDTH (+ its radius) of
# a segment of half-length COLOSSUS_LINE_HALF_LENGTH through the target, perpendicular to the
# attack direction, takes the hit (approximation of the Thermal Lances sweep; UNVERIFIED).
COLOSSUS_LINE_HALF_LENGTH = 1.4
COLOSSUS_LINE_WIDTH = 0.3


def unit_type(name: str) -> UnitType:
    """The :class:`UnitType` called ``name``; ValueError naming the known types otherwise."""
    try:
        return UNIT_TYPES[name]
    except KeyError:
        raise ValueError(f"unit type {name!r} is unknown; expected one of {sorted(UNIT_TYPES)}") from None


def type_order(names: Tuple[str, ...]) -> Tuple[str, ...]:
    """Distinct types in the order SMAC numbers them (colossus < stalker < zealot; marine alone)."""
    rank = {"colossus": 0, "stalker": 1, "zealot": 2, "marine": 3, "spine_crawler": 4}
    return tuple(sorted(set(names), key=rank.__getitem__))
