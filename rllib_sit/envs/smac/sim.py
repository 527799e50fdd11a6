"""Vectorised NumPy combat core of the SMAC simulator.

:class:`Battle` holds every unit of both teams in flat arrays (allies first, then enemies) and
advances the game in sub-steps of ``loops_per_substep`` SC2 game loops. Per sub-step:

1. targets: an agent pursues the enemy its last ``attack`` action named (agents are *Passive*: no
   auto-acquire, no retaliation); an enemy (built-in AI) attack-moves to the agents' spawn point,
   keeps a target that is in weapon range, otherwise switches to the nearest agent in weapon range,
   chases its current target while it stays within sight + leash, acquires the nearest agent in
   sight, or retaliates against the last unit that hit it; once at the point with nothing in
   sight it hunts the nearest agent (the Computer player sees the whole map);
2. weapons: a unit whose target is within weapon range (edge to edge) fires when its cooldown is
   over; hits go to shields first (shield armor 0), the rest minus armor to HP, per hit;
   bonus damage vs attributes; zealot/colossus hit twice; colossus hits a line;
3. movement toward the goal at the unit's speed (instant acceleration), pairwise collision
   separation (the colossus walks over units), pathing grid (cells blocked by the map);
4. shield regeneration after the delay, zerg HP regeneration.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from rllib_sit.envs.smac import units as U
from rllib_sit.envs.smac.maps import MAP_SIZE, TEAM1_POINT, MapSpec, load_pathing, spawn_positions

IDLE, MOVE, ATTACK, AMOVE = 0, 1, 2, 3

# Enemy AI: keep chasing the current target while it stays within sight + this leash.
CHASE_LEASH = 2.0
# Enemy AI: retaliate against the last attacker if it hit within this many loops.
RETALIATE_LOOPS = 5 * U.LOOPS_PER_SECOND
# Enemy AI: "at the attack-move point" distance; beyond it, no hunting.
AT_POINT = 1.5
# Targets (enemy AI acquisition) are re-evaluated every this many loops (SC2 scans periodically too), and at once after an
# order or a death.
RETARGET_LOOPS = 8.0
_EPS = 1e-6


class Battle:
    """All units of one SMAC episode and the rules that move them.

    Args:
        spec: the map.
        loops_per_substep: game loops simulated per vectorised sub-step (1, 2, 4 or 8).
        spawn_jitter: uniform spawn jitter in map units (drawn from the reset rng).
    """

    def __init__(self, spec: MapSpec, loops_per_substep: int = 2, spawn_jitter: float = 0.1):
        if loops_per_substep not in (1, 2, 4, 8):
            raise ValueError(f"loops_per_substep must be one of 1, 2, 4, 8; got {loops_per_substep!r}")
        self.spec = spec
        self.dt = float(loops_per_substep)
        self.spawn_jitter = float(spawn_jitter)
        self.n_ag = spec.n_agents
        self.n_en = spec.n_enemies
        self.types: List[str] = spec.ally_types() + spec.enemy_types()
        n = self.n = len(self.types)
        ut = [U.UNIT_TYPES[t] for t in self.types]
        f = lambda attr: np.array([getattr(u, attr) for u in ut], dtype=np.float64)  # noqa: E731
        self.hp_max, self.sh_max, self.armor = f("hp"), f("shield"), f("armor")
        self.damage, self.bonus, self.hits = f("damage"), f("bonus"), f("hits")
        self.bonus_attr = np.array([u.bonus_attr for u in ut], dtype=np.int64)
        self.attrs = np.array([u.attrs for u in ut], dtype=np.int64)
        self.range, self.cd_max, self.speed = f("range"), f("cooldown"), f("speed")
        self.sight, self.radius, self.regen, self.max_cd = f("sight"), f("radius"), f("hp_regen"), f("max_cd")
        self.splash = np.array([u.splash for u in ut], dtype=bool)
        self.collides = np.array([u.collides for u in ut], dtype=bool)
        self.mobile = self.speed > 0
        self.team = np.array([0] * self.n_ag + [1] * self.n_en, dtype=np.int64)
        self.enemy_of = self.team[:, None] != self.team[None, :]
        self.rsum = self.radius[:, None] + self.radius[None, :]
        coll = self.collides[:, None] & self.collides[None, :] & ~np.eye(n, dtype=bool)
        self.coll_pair = coll
        mob = self.mobile.astype(np.float64)
        denom = mob[:, None] + mob[None, :]
        # Share of a pair's overlap that unit i moves (immovable structures push fully).
        self.push_w = np.divide(mob[:, None], denom, out=np.zeros((n, n)), where=denom > 0)
        self.grid = load_pathing(spec.pathing)
        self._e = slice(self.n_ag, n)
        self._ar = np.arange(n)
        self._ar_en = np.arange(self.n_en)
        e = self._e
        self._reach_ea = self.range[e, None] + self.radius[e, None] + self.radius[None, :self.n_ag] + _EPS
        self._sight_e = self.sight[e, None]
        self._leash_e = self.sight[e] + CHASE_LEASH
        self._has_shields = bool((self.sh_max > 0).any())
        self._has_regen = bool((self.regen > 0).any())
        ang = (np.arange(n)[:, None] - np.arange(n)[None, :]) * 2.399963
        # Tiny index-dependent offset so that coincident units separate in a fixed direction.
        self._fallback_dir = np.exp(1j * ang) * 1e-7
        self._reach = self.range[:, None] + self.rsum  # weapon reach (centre distance) of i on j
        self._rsum_coll = np.where(coll, self.rsum, 0.0)
        self._speed_dt = self.speed * self.dt
        self.rng = np.random.default_rng()
        self.reset(None)

    # ------------------------------------------------------------------------------------------
    def reset(self, rng: Optional[np.random.Generator]) -> None:
        """Respawn every unit (allies in SMAC order: type, then x, then y)."""
        if rng is not None:
            self.rng = rng
        ally_pos, enemy_pos = spawn_positions(self.spec, self.rng, self.spawn_jitter)
        # SMAC numbers allies by (unit_type, x, y): sort positions within each type group.
        types = self.types[:self.n_ag]
        for t in dict.fromkeys(types):
            idx = [i for i, tt in enumerate(types) if tt == t]
            grp = ally_pos[idx]
            ally_pos[idx] = grp[np.lexsort((grp[:, 1], grp[:, 0]))]
        n = self.n
        # Positions are stored as complex numbers x + iy (cheap distances); ``pos`` is a float
        # [n, 2] view of the same memory (write through it in place, never rebind it).
        self._z = np.zeros(n, dtype=np.complex128)
        self.pos = self._z.view(np.float64).reshape(n, 2)
        self.pos[:] = np.concatenate([ally_pos, enemy_pos])
        self.hp = self.hp_max.copy()
        self.sh = self.sh_max.copy()
        self.alive = np.ones(n, dtype=bool)
        self.cd = np.zeros(n)
        self.last_hit = np.full(n, -1e9)
        self.last_attacker = np.full(n, -1, dtype=np.int64)
        self.order = np.full(n, IDLE, dtype=np.int64)
        self.order[self.n_ag:] = AMOVE
        self._oz = np.zeros(n, dtype=np.complex128)
        self.order_pt = self._oz.view(np.float64).reshape(n, 2)
        self.order_pt[self.n_ag:] = TEAM1_POINT
        self.order_tgt = np.full(n, -1, dtype=np.int64)
        self.ai_tgt = np.full(n, -1, dtype=np.int64)
        self._T = np.full(n, -1, dtype=np.int64)
        self._goal_orders = self.mobile & (self.order == AMOVE)
        self._retarget = True
        self._next_retarget = 0.0
        self.loop = 0.0
        self.damage_dealt = np.zeros(n)
        self.damage_taken = np.zeros(n)
        self.kills = np.zeros(n)
        self.shots = np.zeros(n)

    # -- orders ----------------------------------------------------------------------------------
    def order_stop(self, i: int) -> None:
        self.order[i] = IDLE
        self.order_tgt[i] = -1
        self._retarget = True

    def order_move(self, i: int, x: float, y: float) -> None:
        self.order[i] = MOVE
        self.order_pt[i] = (x, y)
        self.order_tgt[i] = -1
        self._retarget = True

    def order_attack(self, i: int, target: int) -> None:
        self.order[i] = ATTACK
        self.order_tgt[i] = target
        self._retarget = True

    def order_agents(self, actions: np.ndarray, move_z: np.ndarray, n_no_attack: int) -> None:
        """Issue every agent's SMAC action at once (vectorised; actions already validated).

        0 = no order (dead agents), 1 = stop, 2..5 = move by ``move_z[a - 2]`` (complex offset),
        ``n_no_attack + k`` = attack enemy k.
        """
        n = self.n_ag
        given = actions != 0
        att = actions >= n_no_attack
        mv = (actions >= 2) & ~att
        kind = np.where(att, ATTACK, np.where(mv, MOVE, IDLE))
        self.order[:n] = np.where(given, kind, self.order[:n])
        self.order_tgt[:n] = np.where(att, n + actions - n_no_attack, np.where(given, -1, self.order_tgt[:n]))
        if np.count_nonzero(mv):
            self._oz[:n] = np.where(mv, self._z[:n] + move_z[np.clip(actions - 2, 0, 3)], self._oz[:n])
        self._retarget = True

    # -- simulation --------------------------------------------------------------------------------
    def advance(self, loops: int) -> None:
        """Simulate ``loops`` game loops (a multiple of the sub-step)."""
        self._goal_orders = self.mobile & ((self.order == MOVE) | (self.order == AMOVE))
        for _ in range(int(round(loops / self.dt))):
            self._substep(self.dt)

    def _targets(self, D: np.ndarray) -> np.ndarray:
        """Current target per unit (-1 = none)."""
        n_ag, alive = self.n_ag, self.alive
        T = self._T
        # Agents: explicit attack orders only (Passive acquire).
        tg = np.where(self.order[:n_ag] == ATTACK, self.order_tgt[:n_ag], -1)
        ok = (tg >= 0) & alive[:n_ag]
        ok &= alive[np.maximum(tg, 0)]
        self.order[:n_ag][(tg >= 0) & ~ok] = IDLE  # target died: the unit goes idle
        T[:n_ag] = np.where(ok, tg, -1)
        # Enemies: built-in AI.
        e = self._e
        ealive = alive[e]
        if not np.count_nonzero(alive[:n_ag]):
            T[e] = -1
            return T
        Dm = np.where(alive[:n_ag], D[e, :n_ag], np.inf)  # [n_en, n_ag]
        # Priority as one score (lower wins; distances are < 100 on a 32 x 32 map): current target
        # in weapon range (-1) < nearest agent in weapon range (d) < current target within
        # sight + leash (99) < nearest agent in sight (100 + d) < none (>= 200).
        inr = Dm <= self._reach_ea
        score = Dm + 100.0 * ~inr + 100.0 * (Dm > self._sight_e)
        ar = self._ar_en
        cur = self.ai_tgt[e]
        cur_c = np.maximum(cur, 0)
        d_cur = Dm[ar, cur_c]
        cur_ok = cur >= 0
        keep = cur_ok & inr[ar, cur_c]
        chase = cur_ok & ~keep & (d_cur <= self._leash_e)
        score[ar, cur_c] = np.where(keep, -1.0, np.where(chase, 99.0, score[ar, cur_c]))
        pick = np.argmin(score, 1)
        new = np.where(score[ar, pick] < 200.0, pick, -1)
        if np.count_nonzero(new < 0):
            la = self.last_attacker[e]
            la_c = np.maximum(la, 0)
            la_ok = (la >= 0) & (la < n_ag) & alive[la_c] & (self.loop - self.last_hit[e] <= RETALIATE_LOOPS)
            at_pt = np.abs(self._z[e] - self._oz[e]) <= AT_POINT
            near_all = np.argmin(Dm, 1)
            new = np.where(new >= 0, new, np.where(la_ok, la, np.where(at_pt, near_all, -1)))
        new = np.where(ealive & (self.order[e] == AMOVE), new, -1)
        self.ai_tgt[e] = new
        T[e] = new
        return T

    def _substep(self, dt: float) -> None:
        z = self._z
        delta = z[None, :] - z[:, None]  # [i, j] = p_j - p_i
        D = np.abs(delta)
        if self._retarget or self.loop >= self._next_retarget:
            self._update_targets(D)
        Tc = self._Tc
        slack = (D - self._reach)[self._ar, Tc]  # weapon range left to close (edge to edge)
        inr = self._has_t & (slack <= _EPS)
        fire = inr & (self.cd <= 0)
        if np.count_nonzero(fire):
            self._fire(fire.nonzero()[0], self._T)
        # Movement: chase a target not yet in range, or walk to the order point.
        chase = self._chase_ok & ~inr
        moving = chase | self._to_pt
        new = None
        if np.count_nonzero(moving):
            vec = np.where(chase, z[Tc], self._oz) - z
            dist = np.abs(vec)
            step = np.minimum(self._speed_dt, np.where(chase, slack + 0.05, dist))
            step *= moving & (step > 0)
            new = z + vec * (step / (dist + _EPS))
            if self._has_move_orders:
                arrived = self._to_pt & (dist - step <= 1e-3) & (self.order == MOVE)
                if np.count_nonzero(arrived):
                    self.order[arrived] = IDLE
        # Collision separation of overlapping units (one relaxation pass on this sub-step's start).
        overlap = self._rsum_coll - D
        overlap *= self._act_pair
        if np.count_nonzero(overlap > 0):
            np.maximum(overlap, 0.0, out=overlap)
            overlap *= self.push_w
            push = (overlap * ((delta + self._fallback_dir) / (D + _EPS))).sum(1)
            new = (z if new is None else new) - push
        # Pathing: reject moves into blocked cells (slide along one axis if possible).
        if new is not None:
            new = np.where(self._mv, new, z)
            f = new.view(np.float64).reshape(-1, 2)
            np.maximum(f, 0.0, out=f)
            np.minimum(f, MAP_SIZE - 1e-6, out=f)
            self.pos[:] = self._apply_pathing(self.pos, f)
        # Cooldowns and regeneration.
        cd = self.cd - dt
        np.maximum(cd, -dt, out=cd)
        self.cd = cd
        if self._has_shields and np.count_nonzero(self.sh < self.sh_max):
            regen_sh = self.alive & (self.loop - self.last_hit >= U.SHIELD_REGEN_DELAY)
            if np.count_nonzero(regen_sh):
                self.sh = np.where(regen_sh, np.minimum(self.sh + U.SHIELD_REGEN_RATE * dt, self.sh_max), self.sh)
        if self._has_regen:
            regen_hp = self.alive & (self.regen > 0)
            self.hp = np.where(regen_hp, np.minimum(self.hp + self.regen * dt, self.hp_max), self.hp)
        self.loop += dt

    def _update_targets(self, D: np.ndarray) -> None:
        """Recompute targets and the per-unit masks derived from them and from who is alive."""
        T = self._targets(D)
        self._retarget = False
        self._next_retarget = self.loop + RETARGET_LOOPS
        alive = self.alive
        self._has_t = T >= 0
        self._Tc = np.maximum(T, 0)
        self._mv = alive & self.mobile
        self._chase_ok = self._has_t & self._mv
        self._to_pt = self._goal_orders & ~self._has_t & alive
        self._has_move_orders = bool(np.count_nonzero(self.order == MOVE))
        act = (alive & self.collides).astype(np.float64)
        self._act_pair = act[:, None] * act[None, :]

    def _walkable(self, p: np.ndarray) -> np.ndarray:
        """Walkability of positions already clipped into the map."""
        ix = p.astype(np.int64)
        return self.grid[ix[:, 0], ix[:, 1]]

    def _apply_pathing(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        ok = self._walkable(new)
        if np.count_nonzero(ok) == ok.size:
            return new
        slide_x = np.stack([new[:, 0], old[:, 1]], 1)
        slide_y = np.stack([old[:, 0], new[:, 1]], 1)
        ok_x, ok_y = self._walkable(slide_x), self._walkable(slide_y)
        return np.where(ok[:, None], new, np.where(ok_x[:, None], slide_x, np.where(ok_y[:, None], slide_y, old)))

    def _fire(self, shooters: np.ndarray, T: np.ndarray) -> None:
        """Resolve the attacks of ``shooters`` (random order, drawn from the episode rng)."""
        if len(shooters) > 1:
            shooters = shooters[self.rng.permutation(len(shooters))]
        for a in shooters.tolist():
            if not self.alive[a]:
                continue  # killed earlier in this sub-step
            t = int(T[a])
            if not self.alive[t]:
                continue
            self.cd[a] = self.cd_max[a] + self.cd[a]
            self.shots[a] += 1
            victims = self._splash_victims(a, t) if self.splash[a] else [t]
            for v in victims:
                per_hit = self.damage[a] + (self.bonus[a] if self.attrs[v] & self.bonus_attr[a] else 0.0)
                self._hit(a, v, per_hit, int(self.hits[a]))

    def _splash_victims(self, a: int, t: int) -> List[int]:
        """Colossus line: enemies near a segment through the target, perpendicular to the shot."""
        d = self.pos[t] - self.pos[a]
        nd = np.hypot(d[0], d[1])
        perp = np.array([-d[1], d[0]]) / max(nd, _EPS)
        cand = np.flatnonzero(self.alive & self.enemy_of[a])
        rel = self.pos[cand] - self.pos[t]
        along = rel @ perp
        across = rel @ (d / max(nd, _EPS))
        hit = (np.abs(along) <= U.COLOSSUS_LINE_HALF_LENGTH) & (np.abs(across) <= U.COLOSSUS_LINE_WIDTH + self.radius[cand])
        out = cand[hit].tolist()
        if t not in out:
            out.append(t)
        return out

    def _hit(self, a: int, v: int, per_hit: float, hits: int) -> None:
        before = self.hp[v] + self.sh[v]
        for _ in range(hits):
            dmg = per_hit
            if self.sh[v] > 0:
                absorbed = min(self.sh[v], dmg)
                self.sh[v] -= absorbed
                rest = dmg - absorbed
                hp_dmg = max(rest - self.armor[v], 0.0) if rest > 0 else 0.0
            else:
                hp_dmg = max(dmg - self.armor[v], 0.5)
            self.hp[v] -= hp_dmg
            if self.hp[v] <= 0:
                break
        self.last_hit[v] = self.loop
        self.last_attacker[v] = a
        if self.hp[v] <= 0:
            self.hp[v] = 0.0
            self.sh[v] = 0.0
            self.alive[v] = False
            self._retarget = True
            self.kills[a] += 1
        dealt = before - (self.hp[v] + self.sh[v])
        self.damage_dealt[a] += dealt
        self.damage_taken[v] += dealt
