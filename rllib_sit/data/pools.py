"""Behaviour policy pools (SIT paper Appendix C.2, Tables 4–6): random / medium / expert.

The paper snapshots online QMIX / FacMAC training and bins the snapshots by episode return. This
package cannot run that training on a laptop-sized CPU budget, so a pool level is realised by a
*graded* policy whose measured episode return (all agents of the team using that level) lies in
the paper's range for that level:

* ``uniform`` — a uniformly random available action (discrete) or a uniform box action;
* ``heuristic`` — the environment family's scripted per-agent controller
  ``heuristic_action(env, agent_index, rng, skill)``; ``skill`` in [0, 1] degrades it toward
  random, and is calibrated by bisection so that the measured return lands in the range.

Where uniform actions score outside the random range, a calibrated variant is used (continuous:
uniform over the corners of the action box; SMAC: a share of the attack actions replaced by moves).
Where the controller at full skill stays below the expert range, the expert level is a flagged
*stand-in* (the best policy available) and every dataset using it says so in its card.

Each map's pool card ``offline_data/policy_pools/<family>_<scenario>.json`` lists every member:
how it was made, its parameters, the paper's range and its measured return mean ± std over
``eval_episodes`` (≥ 50) episodes. Rebuild with::

    python -m rllib_sit.data.pools build --env smac:2s3z      # or --all
    python -m rllib_sit.data.pools show                        # table of all pool cards

:func:`load_pool` returns, per level, a per-agent policy ``act(env, agent_index, rng) -> action``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rllib_sit.data.composition import LEVEL_WORDS, POOL_LEVELS, env_spec, offline_data_root
from rllib_sit.envs.base import CoopEnv

AgentPolicy = Callable[..., Any]  # act(env, agent_index, rng, obs=None) -> action

# Where each family's scripted per-agent controller lives (first importable one wins).
HEURISTIC_CANDIDATES: Dict[str, List[str]] = {
    "smac": ["rllib_sit.envs.smac.policies:heuristic_action"],
    "mpe": ["rllib_sit.envs.mpe_policies:heuristic_action", "rllib_sit.envs.mpe:heuristic_action"],
    "mamujoco": ["rllib_sit.envs.mamujoco_policies:heuristic_action", "rllib_sit.envs.mamujoco:heuristic_action"],
}
DEFAULT_EVAL_EPISODES = 50
# Episodes per calibration probe / per final measurement, by family: MPE returns are noisy
# (std ~ 40-60 over 25 steps) but episodes are cheap, SMAC episodes are ~10x slower.
CAL_EPISODES = {"smac": 20, "mpe": 100, "mamujoco": 40}
EVAL_EPISODES = {"smac": 50, "mpe": 200, "mamujoco": 50}


def pools_dir() -> Path:
    return Path(os.environ.get("RLLIB_SIT_POOLS_DIR", offline_data_root() / "policy_pools"))


def pool_card_path(env_id: str, directory: Optional[os.PathLike] = None) -> Path:
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

def _uniform_member(params: dict, base_dir: Path) -> AgentPolicy:
    """Uniformly random action. Params (all optional):

    * ``support: "box" | "corners"`` (continuous): uniform in the action box, or uniform over its
      corners (every component ±max, like the saturated tanh outputs of an untrained policy);
    * ``attack_drop`` in [0, 1] (SMAC): an attack action drawn is replaced, with this probability,
      by a random available non-attack action (move/stop), which lowers a random team's damage.
    """
    support = params.get("support", "box")
    drop = float(params.get("attack_drop", 0.0))
    first_attack = int(params.get("first_attack_action", 6))  # SMAC: 0 no-op, 1 stop, 2-5 move

    def act(env: CoopEnv, i: int, rng: np.random.Generator, obs=None):
        info = env.info
        if info.discrete:
            mask = env.action_masks()[i] > 0
            a = int(rng.choice(np.flatnonzero(mask)))
            if drop > 0 and a >= first_attack and rng.random() < drop:
                calm = np.flatnonzero(mask[:first_attack])
                if len(calm):
                    a = int(rng.choice(calm))
            return a
        if support == "corners":
            return (rng.choice([-1.0, 1.0], info.act_dim) * info.action_high).astype(np.float32)
        return rng.uniform(info.action_low, info.action_high, info.act_dim).astype(np.float32)
    return act


def _heuristic_member(params: dict, base_dir: Path) -> AgentPolicy:
    fn = _import_fn(params["fn"])
    skill = float(params["skill"])

    def act(env: CoopEnv, i: int, rng: np.random.Generator, obs=None):
        return fn(env, i, rng, skill=skill)
    return act


MEMBER_KINDS: Dict[str, Callable[[dict, Path], AgentPolicy]] = {
    "uniform": _uniform_member,
    "heuristic": _heuristic_member,
}


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

    def members(self, level: str) -> List[PoolMember]:
        level = LEVEL_WORDS.get(level, level)
        if level not in self.levels or not self.levels[level]:
            raise ValueError(f"policy pool of {self.env_id} has no {level!r} level; it has {sorted(self.levels)} "
                             f"(rebuild with: python -m rllib_sit.data.pools build --env {self.env_id})")
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
            if m.measured is not None and not m.measured.get("in_range", True):
                out.append(f"{self.env_id} {level} member {m.kind} {m.params} measured "
                           f"{m.measured.get('mean')} outside the paper's {level} range "
                           f"{self.card.get('paper_ranges', {}).get(level)}: "
                           f"{self.card.get('missing_levels', {}).get(level, 'stand-in')}")
        return out


def load_pool(env_id: str, directory: Optional[os.PathLike] = None) -> Pool:
    """Read ``offline_data/policy_pools/<family>_<scenario>.json``.

    ``load_pool(env_id)[level]`` is a per-agent policy ``act(env, agent_index, rng) -> action`` for
    ``level`` in random/medium/expert (or r/m/e).
    """
    path = pool_card_path(env_id, directory)
    if not path.exists():
        raise FileNotFoundError(f"no policy pool for {env_id} at {path}; build it with: "
                                f"python -m rllib_sit.data.pools build --env {env_id}")
    with open(path) as f:
        card = json.load(f)
    if card.get("env") != env_id:
        raise ValueError(f"{path}: pool card is for env {card.get('env')!r}, expected {env_id!r}")
    levels: Dict[str, List[PoolMember]] = {}
    for lvl, members in card.get("levels", {}).items():
        if lvl not in POOL_LEVELS:
            raise ValueError(f"{path}: unknown pool level {lvl!r}; expected one of {list(POOL_LEVELS)}")
        levels[lvl] = []
        for m in members:
            if m.get("kind") not in MEMBER_KINDS:
                raise ValueError(f"{path}: level {lvl}: member kind {m.get('kind')!r} is unknown; "
                                 f"expected one of {sorted(MEMBER_KINDS)}")
            levels[lvl].append(PoolMember(m["kind"], dict(m.get("params", {})), m.get("how", ""),
                                          m.get("measured_return")))
    return Pool(env_id, levels, card, path.parent)


# ------------------------------------------------------------------------------------------------
# Measuring and calibrating
# ------------------------------------------------------------------------------------------------

def run_episode(env: CoopEnv, policies: Sequence[AgentPolicy], seed: int) -> Tuple[float, Dict[str, np.ndarray]]:
    """One episode with agent i acting by ``policies[i]``; returns (return, agent_stats).

    All randomness comes from ``seed``: the env reset seed and one generator per agent.
    """
    ss = np.random.SeedSequence([int(seed)])
    env_seed, *agent_ss = ss.spawn(1 + len(policies))
    rngs = [np.random.default_rng(s) for s in agent_ss]
    obs_d, _ = env.reset(seed=int(env_seed.generate_state(1)[0]))
    agents = env.possible_agents
    total, done = 0.0, False
    while not done:
        obs = np.stack([obs_d[a] for a in agents])
        acts = {a: policies[i](env, i, rngs[i], obs) for i, a in enumerate(agents)}
        obs_d, rew, term, trunc, _ = env.step(acts)
        total += float(next(iter(rew.values())))
        done = any(term.values()) or any(trunc.values())
    return total, env.agent_stats()


def measure(env: CoopEnv, policy: AgentPolicy, n_episodes: int, seed: int) -> Dict[str, Any]:
    """Return mean/std over ``n_episodes`` with every agent using ``policy`` (episode seeds seed+k)."""
    rets, stats = [], []
    for k in range(n_episodes):
        r, st = run_episode(env, [policy] * env.info.n_agents, seed + k)
        rets.append(r)
        stats.append({name: float(np.mean(v)) for name, v in st.items()})
    rets = np.asarray(rets)
    out: Dict[str, Any] = {"mean": round(float(rets.mean()), 3), "std": round(float(rets.std()), 3), "n": int(n_episodes),
                           "first10_mean": round(float(rets[:10].mean()), 3)}  # cheap reproducibility check
    if stats and stats[0]:
        out["agent_stats_mean"] = {k: round(float(np.mean([s[k] for s in stats])), 3) for k in stats[0]}
    return out


def _find_heuristic(family: str) -> Optional[str]:
    for path in HEURISTIC_CANDIDATES.get(family, []):
        try:
            _import_fn(path)
            return path
        except ValueError as e:
            warnings.warn(f"scripted controller {path} unavailable: {e}", RuntimeWarning)
            continue
    return None


@dataclasses.dataclass
class Candidate:
    """A way to realise a pool level: a member ``kind`` + ``params``, optionally with one numeric
    ``knob`` (a param name) calibrated by bisection in [``lo``, ``hi``]."""

    kind: str
    params: Dict[str, Any]
    how: str
    knob: Optional[str] = None
    lo: float = 0.0
    hi: float = 1.0

    def member(self, value: Optional[float] = None, how: str = "") -> PoolMember:
        params = dict(self.params)
        if self.knob is not None:
            params[self.knob] = round(float(value), 4)
        return PoolMember(self.kind, params, how or self.how)


def default_candidates(env: CoopEnv, heuristic: Optional[str]) -> Dict[str, List[Candidate]]:
    """Per level, the candidate behaviour policies tried in order (first in range wins)."""
    from rllib_sit.envs.registry import parse_env_id

    family, _ = parse_env_id(env.info.env_id)
    rnd: List[Candidate] = [Candidate("uniform", {}, "uniformly random (available) action every step")]
    if not env.info.discrete:
        rnd.append(Candidate("uniform", {"support": "corners"},
                             "uniformly random corner of the action box every step (saturated random "
                             "actions, like an untrained tanh policy), used where box-uniform actions "
                             "score above the paper's random range"))
    if family == "smac":
        rnd.append(Candidate("uniform", {"attack_drop": 0.0}, "uniformly random available action; an attack "
                             "drawn is replaced by a random move/stop with probability attack_drop (calibrated), "
                             "used where a uniform team scores above the random range", knob="attack_drop"))
    out: Dict[str, List[Candidate]] = {"random": rnd, "medium": [], "expert": []}
    if heuristic is not None:
        out["random"].append(Candidate("heuristic", {"fn": heuristic, "skill": 0.0},
                                       "scripted controller degraded toward random (skill calibrated)", knob="skill"))
        out["medium"].append(Candidate("heuristic", {"fn": heuristic, "skill": 0.5},
                                       "scripted controller; with probability 1 - skill a uniformly random action "
                                       "(skill bisected so the return lands mid-range)", knob="skill"))
        out["expert"].append(Candidate("heuristic", {"fn": heuristic, "skill": 1.0},
                                       "scripted controller at full skill (the best policy available)"))
        out["expert"].append(Candidate("heuristic", {"fn": heuristic, "skill": 1.0},
                                       "scripted controller at calibrated skill (full skill scores above the "
                                       "expert range)", knob="skill"))
    return out


def calibrate(env: CoopEnv, cand: Candidate, rng_range: Tuple[float, float], n_episodes: int, seed: int,
              iters: int = 7, log=print) -> Optional[Tuple[PoolMember, float]]:
    """Find a member of ``cand`` whose mean return (``n_episodes``, common seeds) is in ``rng_range``.

    Without a knob: measure it once. With a knob: measure both ends (the return is assumed monotone
    in the knob) and bisect toward the middle of the reachable part of the range, stopping early
    once the mean lies in the central 40% of the range. Returns ``(member, mean)`` or ``None``.
    """
    lo_r, hi_r = rng_range

    def ret(member):
        return measure(env, member.build(), n_episodes, seed)["mean"]

    if cand.knob is None:
        m = ret(cand.member())
        log(f"    {cand.kind} {cand.params}: {m:.2f}")
        return (cand.member(), m) if lo_r <= m <= hi_r else None
    a, b = cand.lo, cand.hi
    fa, fb = ret(cand.member(a)), ret(cand.member(b))
    log(f"    {cand.kind} {cand.knob}={a}: {fa:.2f}, {cand.knob}={b}: {fb:.2f}")
    reach_lo, reach_hi = max(lo_r, min(fa, fb)), min(hi_r, max(fa, fb))
    if reach_lo > reach_hi:
        return None
    target = (reach_lo + reach_hi) / 2
    band = (lo_r + 0.3 * (hi_r - lo_r), hi_r - 0.3 * (hi_r - lo_r))
    increasing = fb >= fa
    best: Optional[Tuple[float, float]] = None
    for _ in range(iters):
        x = (a + b) / 2
        m = ret(cand.member(x))
        log(f"    {cand.knob}={x:.4f}: {m:.2f} (target {target:.2f})")
        if lo_r <= m <= hi_r and (best is None or abs(m - target) < abs(best[1] - target)):
            best = (x, m)
        if band[0] <= m <= band[1]:
            break
        if (m < target) == increasing:
            a = x
        else:
            b = x
    if best is None:
        return None
    return cand.member(best[0], cand.how.replace("calibrated", f"calibrated to {best[0]:.4f}")), best[1]


def build_pool(env_id: str, eval_episodes: Optional[int] = None, seed: int = 0,
               cal_episodes: Optional[int] = None, directory: Optional[os.PathLike] = None,
               log=print) -> Dict[str, Any]:
    """Calibrate the random/medium/expert members of ``env_id`` and write its pool card.

    For each level the candidates of :func:`default_candidates` are tried in order (random: uniform
    actions, then variants, then a degraded controller; medium: the controller with a bisected
    skill; expert: the controller at full skill, else a bisected skill). Every chosen member is
    then measured on ``eval_episodes`` fresh episodes (seeds ``seed``..``seed+eval_episodes-1``;
    calibration uses seeds from 1,000,000 + ``seed``). A level that no candidate reaches is listed
    under ``missing_levels`` with the best return seen.
    """
    from rllib_sit.envs.registry import make_env, parse_env_id

    family, _ = parse_env_id(env_id)
    eval_episodes = int(eval_episodes or EVAL_EPISODES.get(family, DEFAULT_EVAL_EPISODES))
    cal_episodes = int(cal_episodes or CAL_EPISODES.get(family, 20))
    if eval_episodes < 50:
        raise ValueError(f"eval_episodes must be >= 50 (pool cards report mean ± std over >= 50 episodes), got {eval_episodes}")
    spec = env_spec(env_id)
    env = make_env(env_id)
    if list(env.info.agents) != list(spec.agents):
        raise ValueError(f"{env_id}: data spec lists agents {spec.agents} but the env has {env.info.agents}")
    t0 = time.time()
    cands = default_candidates(env, _find_heuristic(family))
    levels: Dict[str, List[PoolMember]] = {}
    missing: Dict[str, str] = {}
    for lvl in POOL_LEVELS:
        log(f"{env_id}: {lvl} level, range {spec.pool_ranges[lvl]}")
        for cand in cands[lvl]:
            found = calibrate(env, cand, spec.pool_ranges[lvl], cal_episodes, 1_000_000 + seed, log=log)
            if found is not None:
                levels[lvl] = [found[0]]
                break
        else:
            missing[lvl] = (f"no candidate ({', '.join(c.kind + ('/' + c.knob if c.knob else '') for c in cands[lvl])}"
                            f") reached the range {list(spec.pool_ranges[lvl])}")
            log(f"{env_id}: {lvl} MISSING: {missing[lvl]}")
            if lvl == "expert" and cands[lvl]:
                # stand-in: the best policy available, flagged, so that datasets naming this level can
                # still be generated (their cards carry a warning)
                stand_in = cands[lvl][0].member(how=cands[lvl][0].how + "; STAND-IN: below the paper's expert range")
                levels[lvl] = [stand_in]
    for lvl, members in levels.items():
        lo, hi = spec.pool_ranges[lvl]
        for mem in members:
            res = measure(env, mem.build(), eval_episodes, seed)
            res["in_range"] = bool(lo <= res["mean"] <= hi)
            if lvl in missing and res["in_range"]:  # calibration probe was unlucky; the fresh seeds agree
                del missing[lvl]
                mem.how = mem.how.split("; STAND-IN")[0] + " (calibration probe fell just outside the range; " \
                    "the evaluation episodes are inside it)"
            elif lvl in missing:
                res["stand_in"] = True
            mem.measured = res
            log(f"{env_id}: {lvl:6s} {mem.kind:9s} {mem.params} -> {res['mean']:.2f} ± {res['std']:.2f} "
                f"in range [{lo}, {hi}]: {res['in_range']}")
    card = {
        "env": env_id,
        "paper_ranges": {k: list(v) for k, v in spec.pool_ranges.items()},
        "eval_episodes": eval_episodes,
        "eval_seeds": f"{seed}..{seed + eval_episodes - 1}",
        "rebuild": f"python -m rllib_sit.data.pools build --env {env_id}",
        "method": ("graded scripted policies (the paper snapshots online QMIX/FacMAC training, which the "
                   "CPU budget here does not allow); each member's return is measured with all agents at "
                   "that level"),
        "build_seconds": round(time.time() - t0, 1),
        "env_code": _env_code_version(family),
        "levels": {lvl: [m.describe() for m in ms] for lvl, ms in levels.items()},
        "missing_levels": missing,
    }
    write_pool_card(env_id, card, directory)
    return card


def _env_code_version(family: str) -> str:
    """Last git commit touching the env family's code (+ "dirty" if it has local edits): a pool's
    measured returns hold for that simulator version only."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    paths = [p for p in (f"rllib_sit/envs/{family}", f"rllib_sit/envs/{family}.py", f"rllib_sit/envs/{family}_policies.py")
             if (root / p).exists()]
    try:
        commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", *paths], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit or "uncommitted") + ("+dirty" if dirty else "")


def write_pool_card(env_id: str, card: Dict[str, Any], directory: Optional[os.PathLike] = None) -> Path:
    path = pool_card_path(env_id, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def pool_table(directory: Optional[os.PathLike] = None) -> List[Dict[str, Any]]:
    """One row per (env, level): paper range, member, measured return."""
    rows = []
    for p in sorted(Path(directory or pools_dir()).glob("*.json")):
        card = json.loads(p.read_text())
        for lvl in POOL_LEVELS:
            ms = card.get("levels", {}).get(lvl, [])
            rng = card["paper_ranges"][lvl]
            if not ms:
                rows.append({"env": card["env"], "level": lvl, "range": rng, "member": "MISSING",
                             "mean": None, "std": None, "in_range": False,
                             "why": card.get("missing_levels", {}).get(lvl, "")})
            for m in ms:
                mr = m.get("measured_return") or {}
                member = m["kind"] + "".join(f" {k}={v}" for k, v in m["params"].items() if k != "fn")
                if mr.get("stand_in"):
                    member += " (STAND-IN)"
                rows.append({"env": card["env"], "level": lvl, "range": rng, "member": member,
                             "mean": mr.get("mean"), "std": mr.get("std"), "n": mr.get("n"),
                             "in_range": mr.get("in_range")})
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rllib_sit.data.pools", description="build / show behaviour policy pools")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="calibrate and write pool cards")
    b.add_argument("--env", action="append", help="env id (repeatable); default: --all")
    b.add_argument("--all", action="store_true", help="every environment in the data specs")
    b.add_argument("--episodes", type=int, default=None, help=f"evaluation episodes per member (default {EVAL_EPISODES})")
    b.add_argument("--cal-episodes", type=int, default=None, help=f"episodes per calibration probe (default {CAL_EPISODES})")
    b.add_argument("--seed", type=int, default=0)
    sh = sub.add_parser("show", help="print the pool table")
    sh.add_argument("--markdown", action="store_true", help="as a Markdown table (docs/datasets.md)")
    args = p.parse_args(argv)
    if args.cmd == "show" and args.markdown:
        print("| map | level | paper range | member | measured return (mean ± std, n) | in range |")
        print("|---|---|---|---|---|---|")
        for r in pool_table():
            mean = "—" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f} ({r['n']})"
            ok = "yes" if r["in_range"] else "**no**"
            print(f"| {r['env']} | {r['level']} | {r['range'][0]} to {r['range'][1]} | {r['member']} | {mean} | {ok} |")
        return 0
    if args.cmd == "show":
        for r in pool_table():
            mean = "—" if r["mean"] is None else f"{r['mean']:.2f} ± {r['std']:.2f}"
            print(f"{r['env']:24s} {r['level']:7s} {str(r['range']):22s} {r['member']:22s} {mean:18s} {r['in_range']}")
        return 0
    from rllib_sit.data.composition import load_specs

    envs = args.env or (list(load_specs()) if args.all else None)
    if not envs:
        p.error("give --env ENV (repeatable) or --all")
    for env_id in envs:
        build_pool(env_id, eval_episodes=args.episodes, seed=args.seed, cal_episodes=args.cal_episodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
