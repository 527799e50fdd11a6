"""Generate agent-wise imbalanced offline datasets from the behaviour policy pools.

``generate_dataset("smac:2s3z", quality="low")`` looks up the composition of that quality in the
data specs (or takes ``composition=``), assigns every episode to a composition component
(largest-remainder counts, then a seeded shuffle), rolls the episodes out in parallel Ray tasks
(chunks of contiguous episode indices, ``num_cpus=1`` each, at most #CPUs in flight) and streams
the rows, in episode order, into :func:`rllib_sit.data.write_dataset` (schema-v1 Parquet +
``card.json``).

Determinism: everything derives from ``seed``. Episode ``k`` uses
``SeedSequence([seed, k])`` → (env reset seed, one generator per agent, member choice); the
component of each episode is fixed by ``SeedSequence([seed, COMPONENT_STREAM])``. The result does
not depend on the number of workers or the chunk size.

Datasets are cached at ``<root>/<family>_<scenario>/<quality>_<n>_<seed>/`` with ``root =
<data dir>/datasets``, the data dir being ``$RLLIB_SIT_DATA_DIR`` or ``./offline_data`` of the
working directory (:mod:`rllib_sit.data.paths`); :func:`ensure_dataset` returns the cached path or
generates it.

Behaviour probabilities: for discrete-action envs whose members all expose their exact action
distribution (:func:`rllib_sit.data.pool_card.member_action_probs`: uniform members, the SMAC and
MPE heuristics), every row also gets the optional column ``behaviour_logp`` ``[T, N]``: log of the
probability, under the member chosen for that agent and episode and the component's ``noise``
option (:func:`noisy_action_probs`), of the action the agent took, computed in closed form at the
state it was taken in (no RNG is drawn, so the other columns are those of a run without it); 0 on
padding. Which member an episode's agent got is a known latent: the column is the conditional
μ_i(a | s, member), not the mixture over the level's members. Continuous-action datasets have no
column (members mix point masses, e.g. box corners, with densities: no common dominating measure).

:func:`decentralize` splits a dataset into one single-agent dataset
per agent (the offline *decentralized* MARL setting: each agent's own observations and actions,
the team reward, no other agent's action).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np

from rllib_sit._version import __version__
from rllib_sit.data import schema as S
from rllib_sit.data.composition import COMPONENT_OPTIONS, Composition, dataset_spec, parse_composition
from rllib_sit.data.paths import datasets_dir, display_path
from rllib_sit.data.pool_card import AgentPolicy, Pool, load_pool, member_action_probs

COMPONENT_STREAM = 0xC0FFEE
DEFAULT_EPISODES = 10_000  # SIT paper Appendix C.3: 10,000 trajectories per dataset
# Version of what a generated dataset of a given name holds (specs + shipped pools). It is part of
# the card and of the cache folder name, so a dataset made under older pools is never reused silently.
# 1: mid-band pool members; 2: members fitted to the paper's Table 7-9 dataset averages (issue 20).
DATA_VERSION = 2
DEFAULT_CHUNK = 25


def datasets_root() -> Path:
    """``<data dir>/datasets``: ``$RLLIB_SIT_DATA_DIR/datasets`` or ``./offline_data/datasets``."""
    return datasets_dir()


def dataset_path(env_id: str, quality: str, n_episodes: int, seed: int, root: Optional[os.PathLike] = None) -> Path:
    family, scenario = env_id.split(":")
    return Path(root or datasets_root()) / f"{family}_{scenario}" / f"{quality}_{n_episodes}_{seed}_v{DATA_VERSION}"


def custom_quality_name(composition: Composition) -> str:
    """Cache name of a command-line composition: ``custom-<8 hex of its canonical string>``."""
    return "custom-" + hashlib.sha1(composition.to_string().encode()).hexdigest()[:8]


def component_assignment(composition: Composition, n_episodes: int, seed: int) -> np.ndarray:
    """Component index of every episode: exact counts per component, order shuffled by ``seed``."""
    counts = composition.episode_counts(n_episodes)
    comp = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), COMPONENT_STREAM]))
    return rng.permutation(comp)


# ------------------------------------------------------------------------------------------------
# Rolling out one chunk (runs inside a Ray task, or inline with num_workers=0)
# ------------------------------------------------------------------------------------------------

def noisy_action(env, i: int, action, noise: float, rng: np.random.Generator):
    """Agent ``i``'s ``action`` perturbed by the composition option ``noise=σ``
    (:data:`rllib_sit.data.composition.COMPONENT_OPTIONS`): continuous actions get Gaussian noise of
    std ``σ (high - low) / 2``, clipped to the action box; a discrete action is replaced, with
    probability σ, by a uniformly random available action. ``noise == 0`` returns ``action``
    unchanged and draws nothing from ``rng``."""
    if noise <= 0:
        return action
    info = env.info
    if info.discrete:
        if rng.random() < noise:
            return int(rng.choice(np.flatnonzero(env.action_masks()[i] > 0)))
        return action
    low, high = np.asarray(info.action_low, np.float64), np.asarray(info.action_high, np.float64)
    a = np.asarray(action, np.float64) + rng.normal(0.0, noise * (high - low) / 2.0, info.act_dim)
    return np.clip(a, low, high).astype(np.float32)


def noisy_action_probs(env, i: int, probs: np.ndarray, noise: float) -> np.ndarray:
    """Exact distribution of :func:`noisy_action` applied to a discrete action drawn from ``probs``
    (``[n_actions]``): ``(1 - σ) probs + σ avail_i / |avail_i|``; ``probs`` itself for σ = 0."""
    if noise <= 0:
        return probs
    avail = (env.action_masks()[i] > 0).astype(np.float64)
    return (1.0 - noise) * np.asarray(probs, np.float64) + noise * avail / avail.sum()


BEHAVIOUR_LOGP_HOW = "pool members' exact probabilities (chosen member per agent and episode)"


def behaviour_logp_unavailable(info, policies: Dict[str, List[AgentPolicy]]) -> Optional[str]:
    """None if the generator can record ``behaviour_logp`` for ``policies`` (level -> built
    members) on an env with ``info``, else why not (continuous actions, or a member without exact
    probabilities)."""
    if not info.discrete:
        return ("continuous actions: members mix point masses (box corners, scripted gaits) with "
                "densities, so there is no exact log-probability to record")
    missing = sorted(level for level, acts in policies.items() if any(member_action_probs(a) is None for a in acts))
    if missing:
        return f"member(s) of level(s) {missing} expose no exact action probabilities"
    return None


def _episode_row(env, policies: Dict[str, list], level_names: Sequence[str], seed: int, k: int,
                 noise: float = 0.0, record_logp: bool = False) -> dict:
    """Episode ``k``: agent i acts with a member of level ``level_names[i]`` (actions perturbed by
    ``noise``, see :func:`noisy_action`), all seeded from (seed, k). ``record_logp``: add the
    column ``behaviour_logp`` (log-probability of every action taken under the chosen member and
    the noise, computed before the step and without drawing from any RNG)."""
    from rllib_sit.data.episode import rollout_episode

    n = env.info.n_agents
    ss = np.random.SeedSequence([int(seed), int(k)])
    env_ss, member_ss, *agent_ss = ss.spawn(2 + n)
    member_rng = np.random.default_rng(member_ss)
    rngs = [np.random.default_rng(s) for s in agent_ss]
    acts = []
    for i in range(n):
        choices = policies[level_names[i]]
        acts.append(choices[int(member_rng.integers(len(choices)))])

    probs = [member_action_probs(a) for a in acts] if record_logp else None
    logps: List[np.ndarray] = []

    def joint(env_, obs):
        p = [noisy_action_probs(env_, i, probs[i](env_, i), noise) for i in range(n)] if record_logp else None
        out = [noisy_action(env_, i, acts[i](env_, i, rngs[i], obs), noise, rngs[i]) for i in range(n)]
        if not env_.info.discrete:
            return np.stack(out).astype(np.float32)
        out = np.asarray(out, np.int64)
        if record_logp:
            taken = np.array([p[i][out[i]] for i in range(n)], np.float64)
            if not (taken > 0).all():
                i = int(np.argmin(taken))
                raise RuntimeError(f"{env_.info.env_id} episode {k}: agent {i} took action {int(out[i])}, which "
                                   f"its member's exact distribution gives probability {taken[i]} "
                                   f"({p[i].tolist()}); the member's action_probs disagrees with its act")
            logps.append(np.log(taken))
        return out

    levels = [S.LEVELS[l[0]] for l in level_names]
    row = rollout_episode(env, joint, seed=int(env_ss.generate_state(1)[0]), episode_id=int(k), policy_levels=levels)
    if record_logp:
        lp = np.zeros((env.info.episode_limit, n), np.float32)
        lp[:len(logps)] = np.asarray(logps, np.float32).reshape(len(logps), n)
        if len(logps) != int(row[S.LENGTH]):
            raise RuntimeError(f"episode {k}: {len(logps)} recorded log-probabilities for {int(row[S.LENGTH])} steps")
        row[S.BEHAVIOUR_LOGP] = lp
    return row


def rollout_chunk(env_fn: Callable, pool: Pool, composition: Composition, assignment: np.ndarray,
                  seed: int, start: int, stop: int) -> List[dict]:
    """Episodes ``start..stop-1`` as schema rows (episode_id = episode index)."""
    env = env_fn()
    words = {"r": "random", "m": "medium", "e": "expert"}
    policies = {w: pool.policies(w) for w in {words[l] for l in composition.levels_used()}}
    record_logp = behaviour_logp_unavailable(env.info, policies) is None
    rows = []
    for k in range(start, stop):
        comp = composition.components[int(assignment[k])]
        level_names = [words[comp.level_of(a)] for a in env.info.agents]
        rows.append(_episode_row(env, policies, level_names, seed, k, comp.noise, record_logp))
    env.close()
    return rows


def _iter_rows(env_fn, pool, composition, assignment, seed, n_episodes, num_workers, chunk, progress, desc) -> Iterator[dict]:
    """Yield rows in episode order; chunks run as Ray tasks (bounded in flight) or inline."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_episodes, desc=desc, unit="ep", smoothing=0.1)
    bounds = [(s, min(s + chunk, n_episodes)) for s in range(0, n_episodes, chunk)]
    try:
        if num_workers == 0:
            for s, e in bounds:
                rows = rollout_chunk(env_fn, pool, composition, assignment, seed, s, e)
                if bar:
                    bar.update(len(rows))
                yield from rows
            return
        import ray

        task = ray.remote(num_cpus=1)(rollout_chunk)
        env_ref, pool_ref = ray.put(env_fn), ray.put(pool)
        comp_ref, assign_ref = ray.put(composition), ray.put(assignment)
        pending = collections.deque()
        todo = iter(bounds)
        max_in_flight = num_workers + 1  # one queued so a worker never idles while we write

        def submit():
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, task.remote(env_ref, pool_ref, comp_ref, assign_ref, seed, *nxt)))

        for _ in range(max_in_flight):
            submit()
        finished = set()  # chunks known to be done (progress), yielded strictly in order
        while pending:
            (s, e), ref = pending[0]
            while ref not in finished:
                waiting = [r for _, r in pending if r not in finished]
                ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0, fetch_local=False)
                for r in ready:
                    finished.add(r)
                    if bar:
                        bar.update(next(b[1] - b[0] for b, rr in pending if rr == r))
            pending.popleft()
            finished.discard(ref)
            rows = ray.get(ref)
            submit()
            yield from rows
    finally:
        if bar:
            bar.close()


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------

def _resolve(env_id: str, quality: Optional[str], composition: Optional[str], agents: Sequence[str]):
    if composition is not None:
        comp = parse_composition(composition, agents) if isinstance(composition, str) else composition
        if quality is None:
            quality = custom_quality_name(comp)
        return quality, comp, None
    if quality is None:
        raise ValueError("give a dataset quality (e.g. 'low', 'medium') or a composition")
    spec = dataset_spec(env_id, quality)
    if list(spec.composition.agents) != list(agents):
        raise ValueError(f"{env_id}: data spec agents {spec.composition.agents} differ from the env's {list(agents)}")
    return quality, spec.composition, spec


def generate_dataset(env_id: str, quality: Optional[str] = None, composition: Optional[str] = None,
                     n_episodes: int = DEFAULT_EPISODES, seed: int = 0, out: Optional[os.PathLike] = None,
                     num_workers: Optional[int] = None, progress: bool = True, overwrite: bool = False,
                     chunk_size: int = DEFAULT_CHUNK, pool: Optional[Pool] = None,
                     env_fn: Optional[Callable] = None) -> str:
    """Generate ``n_episodes`` of ``env_id`` with the composition of ``quality`` (or ``composition``).

    Args:
        env_id: ``"family:scenario"``.
        quality: a quality of the data specs (``low``, ``medium``, ``low-closer-look``, ...).
        composition: a composition string; overrides the spec (``quality`` then only names it).
        n_episodes: dataset size (paper: 10,000).
        seed: the one seed everything derives from.
        out: dataset folder; default the cache path :func:`dataset_path`.
        num_workers: parallel Ray tasks (default: the cluster's CPUs); 0 runs inline.
        progress: show a progress bar.
        overwrite: replace an existing dataset at ``out`` (otherwise it is an error).
        pool / env_fn: inject a pool and an env factory (tests, custom envs); default
            ``load_pool(env_id)`` and ``make_env(env_id)``.

    Returns:
        the dataset folder.
    """
    from rllib_sit.data import write_dataset
    from rllib_sit.data.schema import DatasetMeta

    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if num_workers is not None and int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0 (0 = no Ray), got {num_workers}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_episodes, seed = int(n_episodes), int(seed)
    if env_fn is None:
        from functools import partial

        from rllib_sit.envs.registry import make_env

        env_fn = partial(make_env, env_id)
    probe = env_fn()
    info = probe.info
    probe.reset(seed=0)
    stat_names = list(probe.agent_stats().keys())
    probe.close()
    quality, comp, spec = _resolve(env_id, quality, composition, info.agents)
    pool = pool if pool is not None else load_pool(env_id)
    for l in comp.levels_used():  # fail before any work if a level is missing
        pool.members(l)
    words = {"r": "random", "m": "medium", "e": "expert"}
    no_logp = behaviour_logp_unavailable(info, {words[l]: pool.policies(words[l]) for l in comp.levels_used()})
    path = Path(out) if out is not None else dataset_path(env_id, quality, n_episodes, seed)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) or another --out")
    if num_workers is None:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        else:  # inside a running job (e.g. an algorithm's setup): use only the free CPUs, or none
            num_workers = int(ray.available_resources().get("CPU", 0))
            if num_workers < 1 and progress:
                print(f"{env_id}: no free CPU in the Ray cluster; generating in this process")
    elif num_workers > 0:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=num_workers, include_dashboard=False, log_to_driver=False)
        num_workers = max(1, min(num_workers, int(ray.cluster_resources().get("CPU", 1))))
    assignment = component_assignment(comp, n_episodes, seed)
    counts = comp.episode_counts(n_episodes)
    scenario = env_id.split(":")[1]
    t0 = time.time()
    rows = _iter_rows(env_fn, pool, comp, assignment, seed, n_episodes, num_workers, chunk_size, progress,
                      f"{env_id} {quality}")
    card = {
        "env": env_id,
        "scenario": scenario,
        "quality": quality,
        "composition": comp.to_string(),
        "episodes_per_component": counts,
        "paper_average_return": spec.paper_average_return if spec else None,
        "generating_policies": {
            "pool_card": None if pool.card_path is None else display_path(pool.card_path),
            **{l: [m.describe() for m in pool.members(l)] for l in
               [{"r": "random", "m": "medium", "e": "expert"}[x] for x in comp.levels_used()]},
        },
        "seed": seed,
        "data_version": DATA_VERSION,
        "seeding": "episode k: SeedSequence([seed, k]) -> env reset seed, member choice, one rng per agent; "
                   "components: counts by largest remainder, order shuffled by SeedSequence([seed, 0xC0FFEE])",
        "package_version": __version__,
        "generator": "rllib_sit.data.generation.generate_dataset",
    }
    if spec is not None and spec.note:
        card["note"] = spec.note
    if any(c.noise > 0 for c in comp.components):
        card["component_options"] = {"noise": COMPONENT_OPTIONS["noise"]}
    if no_logp is None:
        card["behaviour_logp"] = BEHAVIOUR_LOGP_HOW + (", composed with the component's noise option"
                                                       if any(c.noise > 0 for c in comp.components) else "")
    else:
        card["behaviour_logp"] = None
        card["behaviour_logp_missing"] = no_logp
    pool_warnings = [w for l in comp.levels_used() for w in pool.warnings(l)]
    if pool_warnings:
        card["pool_warnings"] = pool_warnings
        if progress:
            print("WARNING: " + "\nWARNING: ".join(pool_warnings))
    meta = DatasetMeta(env=info, agent_stat_names=stat_names)
    result = write_dataset(rows, str(path), meta, card=card, overwrite=overwrite)
    elapsed = time.time() - t0
    if progress:
        print(f"{env_id} {quality}: {n_episodes} episodes in {elapsed:.1f} s "
              f"({n_episodes / max(elapsed, 1e-9):.1f} episodes/s, {num_workers} workers) -> {result}")
    return str(result)


def ensure_dataset(env_id: str, quality: str, n_episodes: int = DEFAULT_EPISODES, seed: int = 0,
                   root: Optional[os.PathLike] = None, **kwargs) -> str:
    """The cached dataset of (env, quality, n, seed), generated on first use."""
    path = dataset_path(env_id, quality, n_episodes, seed, root)
    if (path / "card.json").exists():
        return _check_not_stale(path, env_id, kwargs.get("pool"))
    if in_ray_worker():
        # Inside a Tune trial (or any Ray task/actor) the CPUs belong to the trials: Ray tasks
        # asking for one more would wait forever on a small machine. Generate in this process.
        kwargs["num_workers"] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.parent / f".{path.name}.lock"):
        # Concurrent trials (processes or nodes sharing the folder) generate one copy: the first
        # holds the lock and writes (atomically); the others find its card when they get the lock.
        if (path / "card.json").exists():
            return _check_not_stale(path, env_id, kwargs.get("pool"))
        return generate_dataset(env_id, quality=quality, n_episodes=n_episodes, seed=seed, out=path, **kwargs)


def _check_not_stale(path: Path, env_id: str, pool: Optional[Pool] = None) -> str:
    """``path`` if its card's generating members (kind + params per level) are the current pool's;
    else a ``ValueError`` naming the dataset, the level and both members (a pool card rebuilt since)."""
    import json

    card = json.loads((path / "card.json").read_text())
    gen = card.get("generating_policies") or {}
    try:
        pool = pool if pool is not None else load_pool(env_id)
    except (OSError, ValueError):
        return str(path)  # no pool card to compare with (e.g. an env without a pool): nothing to check
    for level, members in gen.items():
        if level == "pool_card" or level not in pool.levels:
            continue
        then = [(m.get("kind"), m.get("params")) for m in members]
        now = [(m.kind, m.params) for m in pool.levels[level]]
        if then != now:
            raise ValueError(f"{path}: stale dataset: its {level} members {then} are not the current pool's {now} "
                             f"(the pool card was rebuilt since); delete the folder or regenerate with --overwrite")
    return str(path)


def in_ray_worker() -> bool:
    """True inside a Ray task or actor (e.g. a Tune trial), False on a driver or without Ray."""
    import sys

    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """An exclusive advisory lock (``fcntl.flock``) on ``lock_path`` for the ``with`` block."""
    import fcntl

    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def decentralize(path: os.PathLike, out: os.PathLike, agents: Optional[Sequence[str]] = None,
                 overwrite: bool = False, card_extra: Optional[dict] = None) -> Dict[str, str]:
    """Split a joint dataset into one single-agent dataset per agent (decentralized MARL).

    Following the offline decentralized MARL paper (papers/offline_decentralized_marl_vd_tn.md,
    "the dataset of each agent ... contains its own action instead of the joint action"), agent
    i's dataset B_i holds its own observations, its own actions and action masks, its policy level
    and statistics, the team reward and the global state, but no other agent's observation or
    action. Every per-agent dataset is schema v1 with N = 1 (``EnvInfo.agents == [agent]``) and
    is written to ``<out>/<agent>/``; its card adds ``decentralized_agent``, ``decentralized_mode``
    (``"shared"``: every agent's dataset comes from the same joint episodes) and ``source_dataset``,
    then ``card_extra``. :func:`decentralize_independent` gives each agent its own episodes.

    Returns ``{agent: path}``.
    """
    import dataclasses

    from rllib_sit.data import read_dataset, write_dataset
    from rllib_sit.data.schema import DatasetMeta

    ds = read_dataset(str(path), validate="schema")
    info = ds.meta.env
    agents = list(agents or info.agents)
    unknown = [a for a in agents if a not in info.agents]
    if unknown:
        raise ValueError(f"decentralize: unknown agent(s) {unknown}; expected some of {info.agents}")
    # column -> axis of N in the per-episode array
    agent_axis = {S.OBS: 1, S.ACTIONS: 1, S.AVAIL_ACTIONS: 1, S.POLICY_LEVELS: 0, S.AGENT_STATS: 0,
                  S.BEHAVIOUR_LOGP: 1}
    out = Path(out)
    result = {}
    for a in agents:
        i = info.agents.index(a)
        sub_info = dataclasses.replace(info, agents=[a], agent_types=[info.agent_types[i]])
        meta = DatasetMeta(env=sub_info, agent_stat_names=list(ds.meta.agent_stat_names))

        def rows(i=i):
            for batch in ds.iter_batches(64, backend="arrow"):
                for k in range(len(batch[S.EPISODE_ID])):
                    yield {c: (np.take(v[k], [i], axis=agent_axis[c]) if c in agent_axis else v[k])
                           for c, v in batch.items()}

        card = {k: v for k, v in ds.card.items()
                if k not in ("n_episodes", "return_mean", "return_std", "return_min", "return_max", "agents",
                             "agent_types")}
        card.update({"decentralized_agent": a, "decentralized_mode": "shared",
                     "source_dataset": str(Path(path).resolve()), "quality": f"{ds.card.get('quality')}/{a}"})
        card.update(card_extra or {})
        result[a] = str(write_dataset(rows(), str(out / a), meta, card=card, overwrite=overwrite))
    return result


INDEPENDENT_STREAM = 0xDEC


def independent_seed(seed: int, agent_index: int) -> int:
    """Seed of the joint run that agent ``agent_index``'s independent dataset is cut from: ``seed``
    itself for the first agent, ``SeedSequence([seed, 0xDEC, agent_index])`` (one uint32) otherwise."""
    if agent_index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), INDEPENDENT_STREAM, int(agent_index)]).generate_state(1)[0])


def decentralize_independent(path: os.PathLike, out: os.PathLike, overwrite: bool = False,
                             num_workers: Optional[int] = None, progress: bool = True,
                             pool: Optional[Pool] = None, env_fn: Optional[Callable] = None) -> Dict[str, str]:
    """Per-agent datasets from *independent* runs (the offline decentralized MARL paper: "the
    datasets are fully independent without any common information").

    The joint dataset at ``path`` fixes the recipe (env, quality or composition, episode count,
    seed). The first agent's dataset is split from it; agent i's (i >= 1) from a fresh joint run of
    the same recipe with seed :func:`independent_seed` ``(seed, i)``, generated in a temporary folder
    next to ``out`` and deleted once agent i's part is written. So every agent's dataset has the
    recipe's composition, but no two share an episode. Costs one extra generation per agent after
    the first. Cards add ``decentralized_mode: "independent"`` and ``source_seed``.

    Returns ``{agent: path}`` (``<out>/<agent>/``).
    """
    import tempfile

    from rllib_sit.data import read_dataset

    ds = read_dataset(str(path), validate="schema")
    card, agents = ds.card, list(ds.meta.env.agents)
    missing = [k for k in ("env", "quality", "composition", "seed", "n_episodes") if k not in card]
    if missing:
        raise ValueError(f"decentralize_independent: {path}/card.json lacks {missing}; expected a dataset written "
                         "by generate_dataset (its card names the recipe to re-run)")
    env_id, quality, seed = card["env"], card["quality"], int(card["seed"])
    composition = card["composition"]
    try:  # a spec quality keeps its name, paper average and note in the new runs' cards
        if str(dataset_spec(env_id, quality).composition) == composition:
            composition = None
    except ValueError:
        pass
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"decentralized_mode": "independent", "source_seed": seed}
    result = decentralize(path, out, agents=agents[:1], overwrite=overwrite, card_extra=extra)
    for i, agent in enumerate(agents[1:], start=1):
        seed_i = independent_seed(seed, i)
        with tempfile.TemporaryDirectory(dir=out, prefix=f".joint-{agent}-") as tmp:
            joint = generate_dataset(env_id, quality=quality, composition=composition,
                                     n_episodes=int(card["n_episodes"]), seed=seed_i, out=Path(tmp) / "joint",
                                     num_workers=num_workers, progress=progress, pool=pool, env_fn=env_fn)
            result.update(decentralize(joint, out, agents=[agent], overwrite=overwrite,
                                       card_extra={**extra, "source_seed": seed_i, "source_dataset": None}))
    return result
