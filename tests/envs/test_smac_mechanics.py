"""SMAC simulator combat rules: shields, armor, multi-hit, bonus damage, splash, regen, AI, orders."""

import numpy as np
from smac_helpers import play_episodes
import pytest

from rllib_sit.envs import make_env
from rllib_sit.envs.smac import units as U
from rllib_sit.envs.smac.sim import Battle
from rllib_sit.envs.smac.maps import get_map


def _battle(name="2s3z", **kw):
    b = Battle(get_map(name), **kw)
    b.reset(np.random.default_rng(0))
    return b


def test_shields_absorb_before_health_then_armor_per_hit():
    b = _battle()  # ally 0 = stalker (80 HP, 80 shields, armor 1); enemy index 7.. = zealots
    z = 7
    assert b.types[0] == "stalker" and b.types[z] == "zealot"
    b._hit(z, 0, per_hit=8.0, hits=2)  # zealot: 8 x 2, shields take all of it
    assert (b.hp[0], b.sh[0]) == (80.0, 64.0)
    b.sh[0] = 5.0
    b._hit(z, 0, per_hit=8.0, hits=2)  # hit 1: 5 to shields, 3 - 1 armor = 2 HP; hit 2: 8 - 1 = 7 HP
    assert b.sh[0] == 0.0 and b.hp[0] == pytest.approx(80 - 2 - 7)
    assert b.damage_dealt[z] == pytest.approx(16 + 5 + 9)


def test_bonus_damage_vs_armored_and_kill():
    b = _battle()
    s_en, s_al = 5, 0  # enemy stalker -> ally stalker (armored): 13 + 5 to shields
    per_hit = b.damage[s_en] + (b.bonus[s_en] if b.attrs[s_al] & b.bonus_attr[s_en] else 0)
    assert per_hit == 18
    b.sh[s_al], b.hp[s_al] = 0.0, 10.0
    b._hit(s_en, s_al, per_hit, 1)
    assert not b.alive[s_al] and b.hp[s_al] == 0 and b.kills[s_en] == 1


def test_shield_regeneration_after_delay():
    env = make_env("smac:2s_vs_1sc")
    env.reset(seed=0)
    b = env.battle
    b.sh[0] = 10.0
    b.last_hit[0] = b.loop
    stop = np.array([1, 1])
    steps_before_delay = int(U.SHIELD_REGEN_DELAY // 8) - 1  # 19 steps = 152 loops < 160
    for _ in range(steps_before_delay):
        env._step(stop)
    assert b.sh[0] == 10.0  # still within the 10 s delay
    for _ in range(5):  # 40 more loops: regeneration running at 2 / s (0.125 / loop)
        env._step(stop)
    regen_loops = b.loop - U.SHIELD_REGEN_DELAY
    assert b.sh[0] == pytest.approx(10.0 + U.SHIELD_REGEN_RATE * regen_loops, abs=0.26)
    assert b.sh[0] > 10.0 and b.hp[0] == 80.0


def test_spine_crawler_regenerates_health():
    b = _battle("2s_vs_1sc")
    b.hp[2] = 200.0
    b.pos[:2] = [[10, 8.5], [18, 8.5]]  # far outside its range
    b.advance(160)
    assert b.hp[2] == pytest.approx(200 + 0.27 * 10, abs=1e-6)


def test_colossus_line_splash_hits_several():
    b = _battle("1c3s5z")
    n = b.n_ag
    col = 0  # ally colossus
    assert b.types[col] == "colossus" and b.splash[col]
    b.pos[:] = [[2.0, 2.0 + i] for i in range(b.n)]  # park everyone out of the way
    b.pos[col] = [10, 16]
    zeal = [k for k in range(n, b.n) if b.types[k] == "zealot"]
    b.pos[zeal[0]] = [16, 16]  # target
    b.pos[zeal[1]] = [16, 16.9]  # on the perpendicular line through the target
    b.pos[zeal[2]] = [17.5, 16]  # behind the target, off the line
    victims = b._splash_victims(col, zeal[0])
    assert zeal[0] in victims and zeal[1] in victims and zeal[2] not in victims


def test_agents_are_passive_and_enemies_attack_move():
    env = make_env("smac:3m")
    env.reset(seed=0)
    b = env.battle
    start_en = b.pos[3:].copy()
    for _ in range(20):
        env._step(np.where(b.alive[:3], 1, 0))  # stop (no-op once dead), always
    assert b.damage_dealt[:3].sum() == 0  # agents never fire on their own (Passive)
    assert b.damage_dealt[3:].sum() > 0  # enemies walked over and attacked
    assert (b.pos[3:, 0] < start_en[:, 0]).all()  # toward the agents' spawn point (x = 9)


def test_attack_order_walks_into_range_then_fires():
    env = make_env("smac:2s3z", spawn_jitter=0.0)
    env.reset(seed=0)
    b = env.battle
    z = 2  # ally zealot (melee): ordered to attack enemy 0 at 5 units
    b.pos[:] = [[2.0, 9.0 + 1.5 * i] for i in range(b.n)]
    b.pos[z] = [10, 16]
    b.pos[5] = [15, 16]
    b.order[5:] = 0  # freeze the enemies (no orders) to isolate the agent
    env._refresh()
    assert env.action_masks()[z, 6] == 1
    acts = np.array([1, 1, 6, 1, 1])
    env._step(acts)
    assert 10.5 < b.pos[z, 0] < 15  # walking: 2.25/s * 0.5 s = 1.125 per step
    for _ in range(6):
        env._step(acts)
    assert b.damage_dealt[z] > 0
    reach = b.range[z] + b.radius[z] + b.radius[5]
    assert np.hypot(*(b.pos[z] - b.pos[5])) <= reach + 0.06


def test_move_action_moves_two_units_at_most_speed():
    env = make_env("smac:3m", spawn_jitter=0.0)
    env.reset(seed=0)
    b = env.battle
    x0 = b.pos[0].copy()
    env._step(np.array([5, 1, 1]))  # west (agent 0 has the smallest x: nobody in the way)
    dx = x0[0] - b.pos[0, 0]
    assert dx == pytest.approx(U.UNIT_TYPES["marine"].speed * 8, abs=0.05)  # 1.125 < move amount 2
    assert abs(b.pos[0, 1] - x0[1]) < 0.05


def test_units_do_not_overlap_much_and_stay_on_pathable_cells():
    env = make_env("smac:8m")
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    b = env.battle
    from rllib_sit.envs.smac.policies import heuristic_actions

    for _ in range(25):
        r, te, tr, _ = env._step(heuristic_actions(env, rng))
        alive = np.flatnonzero(b.alive)
        cells = b.pos[alive].astype(int)
        assert b.grid[cells[:, 0], cells[:, 1]].all()
        if te or tr:
            break
    alive = np.flatnonzero(b.alive)
    d = np.hypot(*(b.pos[alive, None] - b.pos[None, alive]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.5 * 2 * 0.375  # separation keeps marines from stacking


def test_substep_granularity_changes_little():
    """Win rates of the heuristic with 1- and 2-loop sub-steps agree (sub-stepping is an approximation)."""
    from rllib_sit.envs.smac.policies import heuristic_actions

    res = {}
    for lps in (1, 2):
        env = make_env("smac:3m", loops_per_substep=lps)
        rets, _ = play_episodes(env, heuristic_actions, range(4))
        res[lps] = np.mean(rets)
    assert abs(res[1] - res[2]) < 4.0


def test_enemy_ai_keeps_target_in_range_then_switches_to_one_in_range():
    """Built-in AI: nearest agent in weapon range; keep it while in range; switch when it leaves."""
    b = _battle("3m", spawn_jitter=0.0)
    b.pos[:] = [[10, 16], [10, 12], [10, 20], [14.5, 16], [30, 9], [30, 23]]
    b.order[4:] = 0  # only enemy 3 (index 3) acts
    b.advance(2)
    assert b.ai_tgt[3] == 0  # nearest, in range (reach 5 + 0.75)
    b.pos[1] = [13, 13]  # agent 1 now nearer, but agent 0 is still in range: keep it
    b._retarget = True
    b.advance(2)
    assert b.ai_tgt[3] == 0
    b.pos[0] = [5, 16]  # agent 0 leaves weapon range -> switch to agent 1 (in range)
    b._retarget = True
    b.advance(2)
    assert b.ai_tgt[3] == 1


def test_enemy_ai_retaliates_and_hunts():
    b = _battle("3m", spawn_jitter=0.0)
    b.pos[:] = [[20, 9], [21, 9], [22, 9], [9.5, 23], [30, 9], [30, 23]]
    b.order[4:] = 0
    b.alive[1:3] = False  # a single agent far outside sight (distance > 9)
    b._retarget = True
    b.advance(2)
    assert b.ai_tgt[3] == -1  # nothing in sight, not yet at the attack-move point
    b.last_attacker[3], b.last_hit[3] = 0, b.loop  # agent 0 hits it
    b._retarget = True
    b.advance(2)
    assert b.ai_tgt[3] == 0  # retaliates
    b.last_hit[3] = -1e9
    b.pos[3] = [9.0, 16.0]  # at the point, nothing in sight: hunts the nearest agent
    b._retarget = True
    b.advance(2)
    assert b.ai_tgt[3] == 0
