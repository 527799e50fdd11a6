"""SMAC's availability masks, per-agent observations and global state, vectorised.

Order and normalisation follow oxwhirl/smac ``get_avail_agent_actions``, ``get_obs_agent`` and
``get_state`` with the default flags (obs_all_health, obs_own_health, state_last_action; no
obs_last_action, no pathing/terrain/timestep features). Every agent uses SMAC's hard-coded sight
range 9 and shoot range 6, not its unit's real weapon range.
"""

from __future__ import annotations

import numpy as np

from rllib_sit.envs.smac.maps import MAP_SIZE, MapSpec
from rllib_sit.envs.smac.sim import Battle

SIGHT_RANGE = 9.0
SHOOT_RANGE = 6.0
MOVE_AMOUNT = 2.0
N_ACTIONS_NO_ATTACK = 6
# Direction of moves 2..5 (N, S, E, W).
MOVE_DIRS = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [-1.0, 0.0]])


def sizes(spec: MapSpec) -> dict:
    """obs/state/action sizes by SMAC's formulas."""
    utb, sa, se = spec.unit_type_bits, spec.shield_bits_ally, spec.shield_bits_enemy
    n_ag, n_en = spec.n_agents, spec.n_enemies
    nf_en = 4 + 1 + se + utb
    nf_al = 4 + 1 + sa + utb
    own = 1 + sa + utb
    n_actions = N_ACTIONS_NO_ATTACK + n_en
    obs = 4 + n_en * nf_en + (n_ag - 1) * nf_al + own
    state = n_ag * (4 + sa + utb) + n_en * (3 + se + utb) + n_ag * n_actions
    return {"obs_dim": obs, "state_dim": state, "n_actions": n_actions,
            "nf_en": nf_en, "nf_al": nf_al, "own": own}


class Featurizer:
    """Builds masks, observations and the state of one :class:`Battle` (precomputed layouts)."""

    def __init__(self, spec: MapSpec, battle: Battle):
        self.spec, self.b = spec, battle
        s = sizes(spec)
        self.obs_dim, self.state_dim, self.n_actions = s["obs_dim"], s["state_dim"], s["n_actions"]
        self.nf_en, self.nf_al, self.own = s["nf_en"], s["nf_al"], s["own"]
        n_ag, n_en, utb = spec.n_agents, spec.n_enemies, spec.unit_type_bits
        self.n_ag, self.n_en = n_ag, n_en
        self.others = np.array([[j for j in range(n_ag) if j != i] for i in range(n_ag)], dtype=np.int64).reshape(n_ag, n_ag - 1)
        self.ally_onehot = np.zeros((n_ag, utb))
        self.enemy_onehot = np.zeros((n_en, utb))
        if utb:
            for i, t in enumerate(spec.ally_types()):
                self.ally_onehot[i, spec.ally_type_id(t)] = 1
            for k, t in enumerate(spec.enemy_types()):
                self.enemy_onehot[k, spec.enemy_type_id(t)] = 1
        self.sa, self.se = spec.shield_bits_ally, spec.shield_bits_enemy
        # SMAC: centre = map_size / 2, max_distance = playable-area width (32 here, see docs).
        self.center = MAP_SIZE / 2.0
        self.max_dist = float(MAP_SIZE)
        self.grid = battle.grid
        # Pathing grid with an unpathable row/column at index MAP_SIZE (out of bounds).
        self._grid_pad = np.zeros((MAP_SIZE + 1, MAP_SIZE + 1), dtype=bool)
        self._grid_pad[:MAP_SIZE, :MAP_SIZE] = self.grid
        self._move_offsets = MOVE_DIRS[None] * (MOVE_AMOUNT / 2)

    # -- masks -----------------------------------------------------------------------------------
    def masks(self, d_ae: np.ndarray) -> np.ndarray:
        """[n_ag, n_actions] float32 availability (SMAC get_avail_actions)."""
        b, n_ag = self.b, self.n_ag
        m = np.zeros((n_ag, self.n_actions), dtype=np.float32)
        alive = b.alive[:n_ag]
        m[~alive, 0] = 1.0
        if np.count_nonzero(alive):
            m[alive, 1] = 1.0
            p = b.pos[:n_ag]
            # check 1 unit ahead (move_amount / 2) with int() truncation, as SMAC's can_move does:
            # int(-0.5) == 0 passes check_bounds, so only x or y >= map size is out of bounds.
            q = p[:, None, :] + self._move_offsets
            iq = q.astype(np.int64)
            ok = self._grid_pad[iq[..., 0], iq[..., 1]]
            m[:, 2:6] = ok & alive[:, None]
            att = (d_ae <= SHOOT_RANGE) & b.alive[None, n_ag:] & alive[:, None]
            m[:, N_ACTIONS_NO_ATTACK:] = att
        return m

    def distances(self) -> np.ndarray:
        z, n_ag = self.b._z, self.n_ag
        return np.abs(z[None, n_ag:] - z[:n_ag, None])

    # -- observations -----------------------------------------------------------------------------
    def obs(self, masks: np.ndarray, d_ae: np.ndarray) -> np.ndarray:
        """[n_ag, obs_dim] float32 (SMAC get_obs)."""
        b, n_ag, n_en = self.b, self.n_ag, self.n_en
        out = np.zeros((n_ag, self.obs_dim), dtype=np.float32)
        alive_a = b.alive[:n_ag]
        if not np.count_nonzero(alive_a):
            return out
        pa, pe = b.pos[:n_ag], b.pos[n_ag:]
        out[:, 0:4] = masks[:, 2:6]
        # enemies
        rel = pe[None, :, :] - pa[:, None, :]
        vis = (d_ae < SIGHT_RANGE) & b.alive[None, n_ag:]
        ef = np.zeros((n_ag, n_en, self.nf_en), dtype=np.float32)
        ef[..., 0] = masks[:, N_ACTIONS_NO_ATTACK:]
        ef[..., 1] = d_ae / SIGHT_RANGE
        ef[..., 2:4] = rel / SIGHT_RANGE
        ef[..., 4] = (b.hp[n_ag:] / b.hp_max[n_ag:])[None]
        ind = 5
        if self.se:
            ef[..., 5] = (b.sh[n_ag:] / np.maximum(b.sh_max[n_ag:], 1e-9))[None]
            ind = 6
        if self.spec.unit_type_bits:
            ef[..., ind:] = self.enemy_onehot[None]
        ef *= vis[..., None]
        e0 = 4
        out[:, e0:e0 + n_en * self.nf_en] = ef.reshape(n_ag, -1)
        # allies (id order, self skipped)
        a0 = e0 + n_en * self.nf_en
        if n_ag > 1:
            o = self.others
            rel_a = pa[o] - pa[:, None, :]  # [n_ag, n_ag-1, 2]
            d_aa = np.sqrt((rel_a ** 2).sum(-1))
            vis_a = (d_aa < SIGHT_RANGE) & alive_a[o]
            af = np.zeros((n_ag, n_ag - 1, self.nf_al), dtype=np.float32)
            af[..., 0] = 1.0
            af[..., 1] = d_aa / SIGHT_RANGE
            af[..., 2:4] = rel_a / SIGHT_RANGE
            af[..., 4] = (b.hp[:n_ag] / b.hp_max[:n_ag])[o]
            ind = 5
            if self.sa:
                af[..., 5] = (b.sh[:n_ag] / np.maximum(b.sh_max[:n_ag], 1e-9))[o]
                ind = 6
            if self.spec.unit_type_bits:
                af[..., ind:] = self.ally_onehot[o]
            af *= vis_a[..., None]
            out[:, a0:a0 + (n_ag - 1) * self.nf_al] = af.reshape(n_ag, -1)
        # own
        w0 = a0 + (n_ag - 1) * self.nf_al
        out[:, w0] = b.hp[:n_ag] / b.hp_max[:n_ag]
        ind = w0 + 1
        if self.sa:
            out[:, ind] = b.sh[:n_ag] / np.maximum(b.sh_max[:n_ag], 1e-9)
            ind += 1
        if self.spec.unit_type_bits:
            out[:, ind:] = self.ally_onehot
        out[~alive_a] = 0.0
        return out

    # -- state -------------------------------------------------------------------------------------
    def state(self, last_action: np.ndarray) -> np.ndarray:
        """[state_dim] float32 (SMAC get_state, with the last-action one-hots)."""
        b, n_ag, n_en, utb = self.b, self.n_ag, self.n_en, self.spec.unit_type_bits
        c, md = self.center, self.max_dist
        al = np.zeros((n_ag, 4 + self.sa + utb), dtype=np.float32)
        al[:, 0] = b.hp[:n_ag] / b.hp_max[:n_ag]
        al[:, 1] = np.maximum(b.cd[:n_ag], 0.0) / b.max_cd[:n_ag]
        al[:, 2:4] = (b.pos[:n_ag] - c) / md
        ind = 4
        if self.sa:
            al[:, 4] = b.sh[:n_ag] / np.maximum(b.sh_max[:n_ag], 1e-9)
            ind = 5
        if utb:
            al[:, ind:] = self.ally_onehot
        al[~b.alive[:n_ag]] = 0.0
        en = np.zeros((n_en, 3 + self.se + utb), dtype=np.float32)
        en[:, 0] = b.hp[n_ag:] / b.hp_max[n_ag:]
        en[:, 1:3] = (b.pos[n_ag:] - c) / md
        ind = 3
        if self.se:
            en[:, 3] = b.sh[n_ag:] / np.maximum(b.sh_max[n_ag:], 1e-9)
            ind = 4
        if utb:
            en[:, ind:] = self.enemy_onehot
        en[~b.alive[n_ag:]] = 0.0
        return np.concatenate([al.ravel(), en.ravel(), last_action.ravel().astype(np.float32)])
