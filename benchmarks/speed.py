"""Speed of rllib_sit on this machine, each measurement beside its plain reference, in one run.

    python benchmarks/speed.py --out results/speed                    # the default sections (below)
    python benchmarks/speed.py --sections learner --algos SIT QMIX    # one section, two algorithms
    python benchmarks/speed.py --sections all --out results/speed     # also the sweep and memory sections
    python benchmarks/speed.py --tiny --data-dir /tmp/speed_tiny      # every cheap section in seconds (the test)
    python benchmarks/speed.py --sections learner --precision both --learner-threads 1 2   # fp32 vs bf16
    python benchmarks/speed.py --sections learner --device cuda --precision both          # the GPU learner

Sections (``--sections``; default ``learner stage2 sumtree read envs``; ``all`` adds the optional
``sweep`` and ``memory``):

learner  Per-update cost of every registered algorithm, each of its update phases (SIT: Stage I
         and Stage III; MABCQ: behaviour + BCQ; OMAC: value + policy), on synthetic episodes of
         the map's shapes (2s3z; FACMAC on HalfCheetah 2l): ``training_step()`` per update and
         ``learner_group.update`` per update, beside a plain PyTorch loop that runs the learner's
         own loss code (``compute_losses_for_module`` / ``compute_joint_losses``) on the same
         modules and the same recorded batches. Warm-up, then ``--repeats`` rounds of
         ``--updates`` updates per side, sides alternated in rotating order; median per side.
         ``--precision fp32|bf16|both`` (the learners' ``precision`` setting; ``both``: each
         algorithm in fp32 then in bf16, alternating per algorithm in one run), ``--learner-threads
         1 2`` (each algorithm at each thread count), ``--device cpu|cuda`` (``cuda``: a local
         learner with ``num_gpus_per_learner=1``; every side synchronises the GPU before its clock
         stops). The plain loop runs in the learner's own autocast context (the same math).
stage2   SIT Stage II (``stage2.decompose_episodes``: ARDNEM forward + Eq. 4-7) over every real
         agent-step of ``--stage2-episodes`` synthetic 2s3z episodes vs a bare forward of the same
         network over the same tensors (alternated, median).
sumtree  DPER sampling (``SumTree.sample``, what the DPER actor draws with) vs ``numpy``
         ``Generator.choice`` with the same probabilities, per batch.
read     Dataset read paths on synthetic 2s3z episodes: pyarrow streaming (our reader) vs Ray Data
         streaming of the same shards; the memory-mapped column cache (first build, re-open).
envs     Env steps/s of ``env.step`` under uniformly random available actions: SMAC 2s3z, MPE
         CN 3ls3l, MAMuJoCo HalfCheetah 2l.
sweep    (optional) one short SIT run vs the 12-trial alpha x beta x eta grid of
         ``tuned_examples/sit_2s3z_sweep.yaml`` (Stage I shared through the Stage I cache) at the
         same lengths, through ``rllib train file``: grid wall time / single-run wall time.
memory   (optional) peak memory of a short SIT run (Stage I, Stage II over every episode, Stage
         III) on ``--memory-episodes`` synthetic 1c3s5z episodes: the dataset on disk, the column
         cache, peak RSS summed over the driver and every process under it (Ray's GCS, raylet,
         workers, the DPER actor), peak private memory, and the cgroup's peak when readable.

Prints one Markdown table per section, the exact command and the machine (CPU model, cores,
torch threads, load average, versions); with ``--out FOLDER`` also writes ``speed.json``,
``speed.csv`` (long format: section, row, column, value) and ``speed.md`` there, each
atomically (temporary file + ``os.replace``). Synthetic datasets are generated once per (map,
episodes, seed) into ``--data-dir`` (default ``<data dir>/cache/speed``) and reused. Everything
is seeded from ``--seed``. No timing threshold is checked here: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

DEFAULT_SECTIONS = ["learner", "stage2", "sumtree", "read", "envs"]
OPTIONAL_SECTIONS = ["sweep", "memory"]
ALL_SECTIONS = DEFAULT_SECTIONS + OPTIONAL_SECTIONS
DISCRETE_MAP, CONTINUOUS_MAP, MEMORY_MAP = "smac:2s3z", "mamujoco:halfcheetah_2l", "smac:1c3s5z"
ENVS = ["smac:2s3z", "mpe:cn_3ls3l", "mamujoco:halfcheetah_2l"]
SWEEP_GRID = 12  # tuned_examples/sit_2s3z_sweep.yaml: alpha 3 x beta 2 x eta 2
MIB = 2 ** 20


# ---------------------------------------------------------------------------------------------
# Results: one table per section
# ---------------------------------------------------------------------------------------------
@dataclass
class Section:
    name: str
    title: str
    columns: List[str]  # the first is the row label
    rows: List[Dict[str, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, **row) -> Dict[str, Any]:
        self.rows.append(row)
        return row

    def markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
               "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"]
        for r in self.rows:
            out.append("| " + " | ".join(fmt(r.get(c, "")) for c in self.columns) + " |")
        out += [""] + [f"* {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return str(v)
        a = abs(v)
        if a == 0 or a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def median_ms(samples: Sequence[float]) -> float:
    return 1000.0 * statistics.median(samples)


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------------------------
def machine_facts(threads: int) -> Dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    facts: Dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu": cpu, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "torch": torch.__version__,
    }
    for mod in ("numpy", "ray", "pyarrow", "rllib_sit"):
        try:
            facts[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a fact we could not read
            facts[mod] = None
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        facts["git_commit"] = commit + ("+dirty" if dirty else "") if commit else None
    except (OSError, subprocess.SubprocessError):
        facts["git_commit"] = None
    return facts


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
def env_info(env_id: str):
    if env_id == DISCRETE_MAP:
        from rllib_sit.data.synthetic import SMAC_2S3Z_INFO

        return SMAC_2S3Z_INFO
    from rllib_sit.envs import make_env

    env = make_env(env_id)
    info = env.info
    env.close()
    return info


def synthetic_dataset(data_dir: str, env_id: str, episodes: int, seed: int) -> str:
    """A folder of ``episodes`` synthetic (schema-valid random) episodes with ``env_id``'s shapes,
    written once (atomically, by ``write_dataset``) and reused."""
    from rllib_sit.data import DatasetMeta, write_dataset
    from rllib_sit.data.synthetic import synthetic_rows

    path = os.path.join(data_dir, f"{env_id.replace(':', '_')}_{episodes}_{seed}")
    if os.path.exists(os.path.join(path, "card.json")):
        return path
    info = env_info(env_id)
    t0 = time.perf_counter()
    print(f"[speed] writing {episodes:,} synthetic {env_id} episodes to {path} ...", flush=True)
    write_dataset(synthetic_rows(info, episodes, seed=seed), path, DatasetMeta(env=info),
                  {"quality": "synthetic", "seed": seed}, overwrite=True)
    print(f"[speed]   done in {time.perf_counter() - t0:.0f} s ({folder_bytes(path) / 2**30:.2f} GiB)", flush=True)
    return path


def folder_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


# ---------------------------------------------------------------------------------------------
# 1. learner: RLlib vs a plain PyTorch loop on the same modules, losses and batches
# ---------------------------------------------------------------------------------------------
class _NullMetrics:
    """Swallows the learner's ``self.metrics.log_*`` calls inside its loss code (plain side)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def _to_torch(batch: Dict[str, np.ndarray], device=None):
    """What RLlib's ``convert_to_torch_tensor`` makes of a batch: ``from_numpy``, floats as float32,
    on the learner's device."""
    import torch

    out = {}
    for k, v in batch.items():
        t = torch.from_numpy(np.asarray(v))
        t = t.float() if t.is_floating_point() and t.dtype != torch.float16 else t
        out[k] = t if device is None else t.to(device)
    return out


def synchronize(device) -> None:
    """Wait for the GPU's queued kernels (a CUDA side's clock stops after them); nothing on the CPU."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


class PlainLoop:
    """One update of a learner's modules in plain PyTorch: forward_train of each module in the
    batch, the learner's own loss terms (``{term: (loss, [(module, optimizer), ...])}``), each
    term's gradient w.r.t. its optimizers' parameters only (``torch.autograd.grad``), global-norm
    clipping per optimizer (``clip_grad_norm_``), ``step()`` of the optimizers that got a gradient,
    target networks (hard copy every ``target_update_interval`` updates of the module, or Polyak
    with ``target_update_tau``). Own optimizers (same class and settings as the learner's) and own
    update counters; the modules are the learner's (the same parameters)."""

    def __init__(self, learner):
        from ray.rllib.core.rl_module.apis import TargetNetworkAPI

        self.learner = learner
        self.modules = {}
        for mid in learner.module.keys():
            m = learner.module[mid]
            self.modules[mid] = m.unwrapped() if hasattr(m, "unwrapped") else m
        self.configs = {mid: learner.config.get_config_for_module(mid) for mid in self.modules}
        self.params: Dict[tuple, list] = {}
        self.optims: Dict[tuple, Any] = {}
        for mid in self.modules:
            for name, opt in learner.get_optimizers_for_module(mid):
                params = list(learner.filter_param_dict_for_optimizer(learner._params, opt).values())
                self.params[(mid, name)] = params
                self.optims[(mid, name)] = type(opt)(params, **opt.defaults)
        self.targets = {mid for mid, m in self.modules.items() if isinstance(m, TargetNetworkAPI)}
        self.updates: Dict[str, int] = {}

    def loss_terms(self, batch, fwd):
        lr = self.learner
        if lr.joint_loss:
            return lr.compute_joint_losses(batch=batch, fwd_out=fwd)
        terms = {}
        for mid in batch:
            losses = lr.compute_losses_for_module(module_id=mid, config=self.configs[mid], batch=batch[mid],
                                                  fwd_out=fwd[mid])
            terms.update({f"{mid}/{n}": (loss, [(mid, n)]) for n, loss in losses.items()})
        return terms

    def step(self, batches: Dict[str, Dict[str, np.ndarray]]) -> None:
        import torch

        from rllib_sit.algorithms.common.torch_learner import to_fp32

        lr = self.learner
        batch = {mid: _to_torch(b, lr._device) for mid, b in batches.items() if mid in self.modules}
        metrics, lr.metrics = lr.metrics, _NullMetrics()
        try:
            with lr.precision_context():  # the learner's autocast (nothing in fp32): the same math
                fwd = to_fp32({mid: self.modules[mid].forward_train(b) for mid, b in batch.items()})
                terms = [(loss.float(), tg) for loss, tg in self.loss_terms(batch, fwd).values() if loss.requires_grad]
        finally:
            lr.metrics = metrics
        touched = list(dict.fromkeys(t for _, tg in terms for t in tg))
        for key in touched:
            self.optims[key].zero_grad(set_to_none=True)
        for i, (loss, tg) in enumerate(terms):
            params = [p for key in dict.fromkeys(tg) for p in self.params[key]]
            grads = torch.autograd.grad(loss, params, retain_graph=i < len(terms) - 1, allow_unused=True)
            for p, g in zip(params, grads):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
        for key in touched:
            clip = self.configs[key[0]].grad_clip
            if clip:
                torch.nn.utils.clip_grad_norm_(self.params[key], float(clip))
            self.optims[key].step()
        for mid in dict.fromkeys(m for m, _ in touched):
            self.updates[mid] = self.updates.get(mid, 0) + 1
            if mid not in self.targets:
                continue
            cfg = self.configs[mid]
            tau = getattr(cfg, "target_update_tau", None)
            if tau is None and self.updates[mid] % int(cfg.target_update_interval) != 0:
                continue
            with torch.no_grad():
                for main, target in self.modules[mid].get_target_network_pairs():
                    if tau is None:
                        target.load_state_dict(main.state_dict())
                    else:
                        for pt, p in zip(target.parameters(), main.parameters()):
                            pt.mul_(1.0 - tau).add_(p, alpha=tau)


def algorithm_map(name: str) -> str:
    """2s3z, or HalfCheetah 2l for an algorithm whose config rejects discrete actions (FACMAC), as
    the benchmark runner plans them (``profiles.algorithm_fits_map``)."""
    from rllib_sit.experiments.profiles import algorithm_fits_map

    return DISCRETE_MAP if algorithm_fits_map(name, continuous=False) else CONTINUOUS_MAP


def algorithm_config(name: str, path: str, args, cache_root: str, precision: str = "fp32",
                     threads: Optional[int] = None):
    import importlib

    from rllib_sit.algorithms import ALGORITHMS

    module, cls = ALGORITHMS[name]
    algo_cls = getattr(importlib.import_module(module), cls)
    cfg = (algo_cls.get_default_config()
           .environment(algorithm_map(name))
           .offline_data(input_=path)
           .training(batch_size_episodes=args.batch_episodes, column_cache_dir=cache_root,
                     validate_dataset="schema", num_torch_threads=threads or args.threads, precision=precision)
           .debugging(seed=args.seed))
    if getattr(args, "device", "cpu") == "cuda":
        cfg.learners(num_learners=0, num_gpus_per_learner=1)  # the local learner on cuda:0
    if name == "SIT":
        cfg.training(stage1_cache=False)  # this run trains its Stage I (nothing loaded from the store)
    return cfg


def same_gradients(algo, plain: PlainLoop, batch) -> float:
    """Max relative difference between the gradients (after clipping) that one RLlib update and
    one plain update compute from the same weights, target networks, torch RNG state and batch:
    the check that both sides do the same math. Weights are restored afterwards."""
    import copy

    import torch

    mods = plain.modules
    snap = {mid: copy.deepcopy(m.state_dict()) for mid, m in mods.items()}
    params = {id(p): p for ps in plain.params.values() for p in ps}
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def run(fn):
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        for p in params.values():
            p.grad = None
        fn(batch)
        grads = {k: p.grad.detach().clone() for k, p in params.items() if p.grad is not None}
        for mid, m in mods.items():
            m.load_state_dict(snap[mid])
        return grads

    g_rllib, g_plain = run(algo.update_learners), run(plain.step)
    if not g_rllib or set(g_rllib) != set(g_plain):
        return float("nan")  # nothing compared, or not the same parameters updated
    worst = 0.0
    for k in g_rllib:
        a = g_rllib.get(k, torch.zeros(()))
        b = g_plain.get(k, torch.zeros(()))
        scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
        worst = max(worst, float((a - b).abs().max()) / scale)
    return worst


PHASE_LABELS = {("SIT", "ardnem"): "Stage I (ardnem)", ("SIT", "agents"): "Stage III (agents)"}


def time_phase(algo, phase, plain: PlainLoop, args) -> Dict[str, float]:
    """Warm-up (one ``train()``, recording the batches it makes), then ``repeats`` rounds of
    ``updates`` updates per side (training_step(), learner_group.update, plain), the order rotating
    each round."""
    k, warm = args.updates, max(args.warmup, 1)
    recorded: List[Dict[str, Dict[str, np.ndarray]]] = []
    original = algo.update_learners

    def recording(batches):
        recorded.append(batches)
        return original(batches)

    algo.update_learners = recording
    try:
        phase.per_iteration = max(k, warm)
        algo.train()
    finally:
        del algo.update_learners  # back to the class's method
    batches = recorded[-k:]
    if len(batches) < k:
        raise RuntimeError(f"{phase.name}: recorded {len(batches)} batches, expected {k}")
    for b in recorded[:warm]:
        plain.step(b)
    grad_diff = same_gradients(algo, plain, batches[0])

    def run_train():
        phase.per_iteration = k
        algo.training_step()  # what train() runs per iteration, without RLlib's per-iteration results

    def run_learner():
        for b in batches:
            algo.update_learners(b)

    def run_plain():
        for b in batches:
            plain.step(b)

    sides = [("train", run_train), ("learner", run_learner), ("plain", run_plain)]
    samples: Dict[str, List[float]] = {s: [] for s, _ in sides}
    device = plain.learner._device
    for r in range(args.repeats):
        for s, fn in sides[r % 3:] + sides[:r % 3]:
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            samples[s].append((time.perf_counter() - t0) / k)
    out = {s: median_ms(v) for s, v in samples.items()}
    out["grad_diff"] = grad_diff
    out["batch_rows"] = float(np.mean([sum(len(next(iter(b.values()))) for b in rb.values()) for rb in batches]))
    return out


def section_learner(args, ctx) -> Section:
    import ray

    from rllib_sit.algorithms import ALGORITHMS

    import torch

    sec = Section("learner", "Per-update cost: RLlib vs a plain PyTorch loop (ms per update, median)",
                  ["algorithm (phase)", "map", "batch", "precision", "threads", "device", "training_step() ms",
                   "learner_group.update ms", "plain PyTorch ms", "training_step/plain", "update/plain",
                   "grad check"])
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    variants = [(threads, precision) for threads in args.learner_threads for precision in precisions]
    names = args.algos or list(ALGORITHMS)
    unknown = [n for n in names if n not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"--algos: unknown {unknown}; registered: {list(ALGORITHMS)}")
    ctx.ensure_ray()
    cache_root = tempfile.mkdtemp(prefix="speed_cache_", dir=ctx.tmp)
    paths = {}
    for name, (threads, precision) in [(n, v) for n in names for v in variants]:
        env_id = algorithm_map(name)
        if env_id not in paths:
            paths[env_id] = synthetic_dataset(args.data_dir, env_id, args.learner_episodes, args.seed)
        algo = algorithm_config(name, paths[env_id], args, cache_root, precision, threads).build_algo()
        try:
            learner = algo.learner_group._learner
            if learner is None:
                raise RuntimeError("expected a local learner (num_learners=0)")
            plain = PlainLoop(learner)
            sched = algo.schedule
            while not sched.finished:
                phase = sched.current
                if phase.one_shot:  # not reached: one-shot phases run inside the previous train()
                    algo.train()
                    continue
                phase.updates = sched.done[phase.name] + 10 ** 9  # never ends while timed
                t = time_phase(algo, phase, plain, args)
                label = f"{name} {PHASE_LABELS.get((name, phase.name), f'({phase.name})')}"
                if len(variants) > 1:  # one row label per (algorithm, phase, variant) in the CSV
                    label += f" [{precision}, {threads} thr]"
                sec.add(**{"algorithm (phase)": label, "map": env_id.split(":")[1],
                           "batch": f"{args.batch_episodes} ep ({t['batch_rows']:.0f} rows)",
                           "precision": precision, "threads": threads, "device": str(learner._device),
                           "training_step() ms": t["train"], "learner_group.update ms": t["learner"],
                           "plain PyTorch ms": t["plain"], "training_step/plain": ratio(t["train"], t["plain"]),
                           "update/plain": ratio(t["learner"], t["plain"]), "grad check": t["grad_diff"]})
                print(f"[speed] learner: {label}: training_step {t['train']:.1f} / update {t['learner']:.1f} / "
                      f"plain {t['plain']:.1f} ms", flush=True)
                # finish this phase (one update) so that the next one (and any one-shot phase
                # between, e.g. SIT's Stage II) runs
                phase.updates, phase.per_iteration = sched.done[phase.name] + 1, 1
                algo.train()
        finally:
            algo.stop()
    ray.shutdown()
    ctx.ray_started = False
    torch.set_num_threads(args.threads)  # the algorithms set their own; the next sections use --threads
    sec.notes += [
        f"synthetic episodes ({args.learner_episodes:,} per map, seed {args.seed}; 2s3z shapes, FACMAC on "
        f"HalfCheetah 2l), {args.batch_episodes} episodes per batch ('rows': the rows of all modules' batches; "
        f"SIT Stage I: real timesteps), torch threads {args.learner_threads}, precision {precisions} (each "
        f"algorithm in every (threads, precision) variant before the next algorithm), learner device "
        f"{args.device}; warm-up {args.warmup}, then "
        f"{args.repeats} rounds x {args.updates} updates per side, sides alternated; median.",
        "precision bf16: the learners' `precision=\"bf16\"` (torch.autocast around forwards and losses, "
        "network outputs back in fp32, parameters and optimizer state fp32); the plain loop runs in the "
        "learner's own autocast context, so the grad check compares like with like.",
        "training_step(): `algo.training_step()` (what `train()` runs per iteration) with the phase's "
        "`per_iteration` = updates, divided by the updates: batch sampling (SIT Stage III: the DPER actor round "
        "trip, prefetched), `learner_group.update` (NumPy -> torch, forward, the learner's losses, one backward "
        "per loss term, RLlib's per-optimizer clipping and non-finite check, optimizer steps, target networks, "
        "metrics), the phase bookkeeping and metrics logging; no evaluation, not RLlib's per-iteration results.",
        "learner_group.update: `algo.update_learners(batch)` on batches recorded from `train()` (no sampling).",
        "plain PyTorch: the same batches and the same module objects; NumPy -> torch as RLlib converts; "
        "`forward_train`; the learner's own `compute_losses_for_module` / `compute_joint_losses` (its metric "
        "logging swallowed; its `.item()` reads stay); per term `torch.autograd.grad` w.r.t. its optimizers' "
        "parameters; `clip_grad_norm_` per optimizer; `step()`; target copy / Polyak on the same schedule. "
        "Own optimizers of the learner's class and settings.",
        "grad check: max relative difference of the (clipped) gradients one RLlib update and one plain update "
        "compute from the same weights, torch RNG state and batch (0 up to float round-off = the same math).",
        "Goal (issue): RLlib <= 1.15x plain, read on update/plain (same batches); training_step/plain adds "
        "batch sampling, which the plain loop does not do."]
    return sec


# ---------------------------------------------------------------------------------------------
# 2. SIT Stage II vs a bare forward
# ---------------------------------------------------------------------------------------------
def section_stage2(args, ctx) -> Section:
    import torch

    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.algorithms.sit import sit_learner as K
    from rllib_sit.algorithms.sit import stage2
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode_store import EpisodeStore

    sec = Section("stage2", "SIT Stage II vs a bare forward of the same ARDNEM (seconds per pass, median)",
                  ["measurement", "episodes", "agent-steps", "SIT s", "bare forward s", "SIT/bare"])
    path = synthetic_dataset(args.data_dir, DISCRETE_MAP, args.stage2_episodes, args.seed)
    store = EpisodeStore.open(path, validate="schema", cache_root=os.path.join(args.data_dir, "column_cache"))
    episodes = store.columns
    filled = np.asarray(episodes[S.FILLED]).astype(bool)
    cfg = SITConfig().environment(DISCRETE_MAP).offline_data(input_=path)
    spec = cfg.build_module_specs(store.info)
    torch.manual_seed(args.seed)
    net = spec.rl_module_specs[K.ARDNEM_MODULE_ID].build().ardnem.eval()
    chunk = cfg.stage2_batch_episodes
    K_eps = filled.shape[0]

    def bare():
        with torch.no_grad():
            for lo in range(0, K_eps, chunk):
                sl = slice(lo, lo + chunk)
                f = filled[sl]
                T = f.shape[1]
                net.weighted_rewards(torch.as_tensor(episodes[S.OBS][sl, :T][f]),
                                     torch.as_tensor(episodes[S.ACTIONS][sl][f]),
                                     torch.as_tensor(episodes[S.STATE][sl, :T][f]))

    def sit():
        stage2.decompose_episodes(net, episodes, cfg.gamma, chunk)

    stage2.decompose_batch(net, {k: v[:min(64, K_eps)] for k, v in episodes.items()}, cfg.gamma)  # warm-up
    samples: Dict[str, List[float]] = {"sit": [], "bare": []}
    sides = [("sit", sit), ("bare", bare)]
    for r in range(args.stage2_repeats):
        for s, fn in (sides if r % 2 == 0 else sides[::-1]):
            t0 = time.perf_counter()
            fn()
            samples[s].append(time.perf_counter() - t0)
    sit_s, bare_s = statistics.median(samples["sit"]), statistics.median(samples["bare"])
    steps = int(filled.sum()) * store.info.n_agents
    sec.add(**{"measurement": "Stage II pass (local, over the memory-mapped columns)", "episodes": K_eps,
               "agent-steps": steps, "SIT s": sit_s, "bare forward s": bare_s, "SIT/bare": ratio(sit_s, bare_s)})
    if args.stage2_ray_data:
        ctx.ensure_ray()
        sd = {k: v.numpy() for k, v in net.state_dict().items()}
        t0 = time.perf_counter()
        stage2.decompose_with_ray_data(path, spec.rl_module_specs[K.ARDNEM_MODULE_ID].model_config, sd, cfg.gamma,
                                       episodes[S.EPISODE_ID], chunk)
        rd = time.perf_counter() - t0
        sec.add(**{"measurement": "Stage II pass, Ray Data map_batches (stage2_backend='ray_data'), once",
                   "episodes": K_eps, "agent-steps": steps, "SIT s": rd, "bare forward s": bare_s,
                   "SIT/bare": ratio(rd, bare_s)})
    sec.notes += [
        f"{K_eps:,} synthetic 2s3z episodes (lengths uniform in [20, 120]), the paper's ARDNEM (M = 5, hidden 64), "
        f"untrained weights (seed {args.seed}), chunks of {chunk} episodes, {args.threads} torch thread(s); "
        f"{args.stage2_repeats} passes per side, alternated, median.",
        "SIT: `stage2.decompose_episodes` (what SIT's Stage II runs by default): gather of the real steps, "
        "ARDNEM forward, r-hat = ensemble mean of lambda*r, u-hat = ensemble std, Monte Carlo returns, episode "
        "priorities (Eq. 4-7), back into [K, T, N] arrays.",
        "bare forward: the same chunks, the same gather of the real steps (obs, actions, state), "
        "`ardnem.weighted_rewards` under `torch.no_grad()`, results dropped."]
    return sec


# ---------------------------------------------------------------------------------------------
# 3. Sum-tree sampling vs NumPy choice
# ---------------------------------------------------------------------------------------------
def section_sumtree(args, ctx) -> Section:
    from rllib_sit.replay.sum_tree import SumTree

    sec = Section("sumtree", "DPER sampling: sum tree vs NumPy (microseconds per batch, median)",
                  ["leaves", "batch", "sum tree us", "Generator.choice(p=) us", "sum tree/choice",
                   "searchsorted(CDF) us"])
    rng = np.random.default_rng(args.seed)
    for n in args.sumtree_leaves:
        # Eq. 7-like: softmax(priority / alpha) of priorities spread over [0, 20], alpha = 1
        z = rng.uniform(0, 20, n)
        p = np.exp(z - z.max())
        p /= p.sum()
        tree = SumTree(n)
        tree.set_all(p)
        cdf = np.cumsum(p)
        b = args.sumtree_batch
        r1, r2, r3 = (np.random.default_rng(args.seed + i) for i in range(3))
        fns = {"tree": lambda tree=tree, b=b, r=r1: tree.sample(b, r),
               "choice": lambda n=n, b=b, p=p, r=r2: r.choice(n, b, p=p),
               "search": lambda n=n, b=b, cdf=cdf, r=r3: np.minimum(
                   np.searchsorted(cdf, r.random(b) * cdf[-1], side="right"), n - 1)}
        samples: Dict[str, List[float]] = {k: [] for k in fns}
        for fn in fns.values():
            fn()
        per_round = max(1, args.sumtree_draws // max(args.repeats, 1))
        keys = list(fns)
        for r in range(args.repeats):
            for kname in keys[r % 3:] + keys[:r % 3]:
                fn = fns[kname]
                t0 = time.perf_counter()
                for _ in range(per_round):
                    fn()
                samples[kname].append((time.perf_counter() - t0) / per_round)
        t_tree, t_choice, t_search = (1e6 * statistics.median(samples[k]) for k in keys)
        sec.add(**{"leaves": n, "batch": b, "sum tree us": t_tree, "Generator.choice(p=) us": t_choice,
                   "sum tree/choice": ratio(t_tree, t_choice), "searchsorted(CDF) us": t_search})
    sec.notes += [
        "sum tree: `SumTree.sample(batch, rng)` (what the DPER sampler's `sample_indices` draws with; one "
        "vectorised descent, O(batch log n)); priorities softmax(U[0, 20]) as after Eq. 7.",
        "Generator.choice(p=): `rng.choice(n, batch, p=p)` with the same normalised probabilities (it checks p "
        "and builds the CDF on every call, O(n)).",
        "searchsorted(CDF): for reference, a CDF computed once and `np.searchsorted` per batch (valid only "
        "while the probabilities do not change).",
        f"leaves: 10,000 2s3z episodes x 3 zealots = 30,000 (the larger DPER tree); {args.repeats} rounds, "
        "alternated, median."]
    return sec


# ---------------------------------------------------------------------------------------------
# 4. Dataset read paths
# ---------------------------------------------------------------------------------------------
def section_read(args, ctx) -> Section:
    from ray.data import DataContext

    from rllib_sit.data import read_dataset
    from rllib_sit.data.episode_store import EpisodeStore

    sec = Section("read", "Dataset read paths: pyarrow (ours) vs Ray Data (seconds per full read, median)",
                  ["read", "episodes", "MB", "ours s", "Ray Data s", "ours/Ray Data", "ours episodes/s",
                   "Ray Data episodes/s", "ours MB/s"])
    path = synthetic_dataset(args.data_dir, DISCRETE_MAP, args.read_episodes, args.seed)
    ctx.ensure_ray()
    DataContext.get_current().enable_progress_bars = False
    ds = read_dataset(path, validate="schema")
    bs = args.read_batch
    counted = {}

    def stream(backend):
        n = 0
        nbytes = 0
        for b in ds.iter_batches(bs, backend=backend):
            n += len(b["length"])
            nbytes += sum(np.asarray(v).nbytes for v in b.values())
        counted[backend] = (n, nbytes)

    stream("arrow")
    stream("ray")  # warm-up both (Ray Data starts its workers on first use)
    samples: Dict[str, List[float]] = {"arrow": [], "ray": []}
    for r in range(args.read_repeats):
        for backend in (("arrow", "ray") if r % 2 == 0 else ("ray", "arrow")):
            t0 = time.perf_counter()
            stream(backend)
            samples[backend].append(time.perf_counter() - t0)
    n_eps, raw = counted["arrow"]
    if counted["ray"][0] != n_eps:
        raise RuntimeError(f"read: pyarrow read {n_eps} episodes, Ray Data {counted['ray'][0]}")
    a, r_ = statistics.median(samples["arrow"]), statistics.median(samples["ray"])
    mb = raw / MIB
    sec.add(**{"read": f"stream batches of {bs} episodes (NumPy)", "episodes": n_eps, "MB": mb, "ours s": a,
               "Ray Data s": r_, "ours/Ray Data": ratio(a, r_), "ours episodes/s": n_eps / a,
               "Ray Data episodes/s": n_eps / r_, "ours MB/s": mb / a})
    root = tempfile.mkdtemp(prefix="speed_colcache_", dir=ctx.tmp)
    t0 = time.perf_counter()
    EpisodeStore.open(path, validate="full", cache_root=root)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = EpisodeStore.open(path, validate="full", cache_root=root)
    reopen = time.perf_counter() - t0
    cache_mb = sum(np.asarray(v).nbytes for v in store.columns.values()) / MIB
    sec.add(**{"read": "column cache: first build (Parquet -> .npy memory maps, values validated)",
               "episodes": n_eps, "MB": cache_mb, "ours s": build, "ours episodes/s": n_eps / build,
               "ours MB/s": cache_mb / build})
    sec.add(**{"read": "column cache: re-open", "episodes": n_eps, "MB": cache_mb, "ours s": reopen})
    del store
    shutil.rmtree(root, ignore_errors=True)
    sec.notes += [
        f"{n_eps:,} synthetic 2s3z episodes ({len(ds.files)} zstd Parquet shards, {folder_bytes(path) / MIB:,.0f} MB "
        f"on disk; MB = the NumPy bytes delivered); {args.read_repeats} full reads per side, alternated, median.",
        "ours: `OfflineDataset.iter_batches(backend='arrow')` (pyarrow, in this process); Ray Data: "
        "`iter_batches(backend='ray')` (`ray.data.read_parquet`, one block per shard) of the same shards, "
        "batch_format numpy.",
        "column cache: what the algorithms open (`EpisodeStore.open`), a fresh cache folder, then re-opened."]
    return sec


# ---------------------------------------------------------------------------------------------
# 5. Env steps/s
# ---------------------------------------------------------------------------------------------
def section_envs(args, ctx) -> Section:
    from rllib_sit.envs import make_env, uniform_random_actions
    from rllib_sit.envs.base import actions_to_dict

    sec = Section("envs", "Env steps/s under uniformly random available actions",
                  ["env", "agents", "steps", "steps/s (env.step)", "steps/s (with policy + resets)"])
    for env_id in args.envs:
        env = make_env(env_id)
        rng = np.random.default_rng(args.seed)
        steps, step_time, ep = 0, 0.0, 0
        env.reset(seed=args.seed)
        t_all = time.perf_counter()
        while steps < args.env_steps:
            acts = actions_to_dict(env, uniform_random_actions(env, rng))
            t0 = time.perf_counter()
            _, _, term, trunc, _ = env.step(acts)
            step_time += time.perf_counter() - t0
            steps += 1
            if any(term.values()) or any(trunc.values()):
                ep += 1
                env.reset(seed=args.seed + ep)
        total = time.perf_counter() - t_all
        sec.add(**{"env": env_id, "agents": env.info.n_agents, "steps": steps,
                   "steps/s (env.step)": steps / step_time, "steps/s (with policy + resets)": steps / total})
        env.close()
    sec.notes += [f"PettingZoo `ParallelEnv.step` of each env, {args.env_steps:,} joint steps, random available "
                  f"actions (`uniform_random_actions`), resets with seeds {args.seed}, {args.seed}+1, ...; one "
                  "process, no Ray. SMAC runs on the package's NumPy simulator."]
    return sec


# ---------------------------------------------------------------------------------------------
# 6. The sweep in single-run units
# ---------------------------------------------------------------------------------------------
def section_sweep(args, ctx) -> Section:
    from rllib_sit.data.generation import ensure_dataset
    from rllib_sit.data.paths import data_dir

    sec = Section("sweep", "The 12-trial alpha x beta x eta grid in single-run units (wall seconds)",
                  ["measurement", "trials", "wall s", "single runs"])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ensure_dataset(DISCRETE_MAP, "low", n_episodes=args.sweep_episodes, seed=args.seed)  # before the clocks start
    import ray

    if ray.is_initialized():  # generation may have started Ray here: leave the CPUs to the runs
        ray.shutdown()
        ctx.ray_started = False
    a_it = args.sweep_ardnem_per_iteration
    s_it = args.sweep_agent_per_iteration
    iters = math.ceil(args.sweep_ardnem_updates / a_it) + math.ceil(args.sweep_agent_updates / s_it)
    common = {"dataset": {"quality": "low", "episodes": args.sweep_episodes, "seed": args.seed},
              "ardnem_updates": args.sweep_ardnem_updates, "ardnem_updates_per_iteration": a_it,
              "agent_updates": args.sweep_agent_updates, "agent_updates_per_iteration": s_it,
              "evaluation_interval": iters, "evaluation_duration": args.sweep_eval_episodes}
    storage = tempfile.mkdtemp(prefix="speed_sweep_", dir=ctx.tmp)
    stop = json.dumps({"training_iteration": iters})
    rllib = [sys.executable, "-c", "import sys; from rllib_sit.cli.rllib_cmd import main; sys.exit(main())"]
    single = rllib + ["train", "file", os.path.join(root, "tuned_examples", "sit_2s3z.yaml"), "--config",
                      json.dumps(dict(common, stage1_cache=False, num_torch_threads=args.sweep_single_threads)),
                      "--stop", stop, "--storage-path", os.path.join(storage, "single")]
    grid = rllib + ["train", "file", os.path.join(root, "tuned_examples", "sit_2s3z_sweep.yaml"), "--config",
                    json.dumps(dict(common, stage1_cache=os.path.join(storage, "stage1_store"))),
                    "--stop", stop, "--max-concurrent-trials", str(args.sweep_concurrent),
                    "--storage-path", os.path.join(storage, "grid")]
    walls = {}
    for label, cmd in (("single", single), ("grid", grid)):
        print(f"[speed] sweep: {shlex.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=os.getcwd(), capture_output=True, text=True,
                              env=dict(os.environ, RLLIB_SIT_DATA_DIR=str(data_dir())))
        walls[label] = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"sweep: {label} run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
    statuses = stage1_statuses(os.path.join(storage, "grid"))
    trials = sum(statuses.values())
    if trials != SWEEP_GRID:
        raise RuntimeError(f"sweep: expected {SWEEP_GRID} finished grid trials, found {trials} ({statuses})")
    sec.add(**{"measurement": "one SIT run (sit_2s3z.yaml, Stage I trained, stage1_cache off)", "trials": 1,
               "wall s": walls["single"], "single runs": 1.0})
    sec.add(**{"measurement": f"grid (sit_2s3z_sweep.yaml, {args.sweep_concurrent} trials at a time, Stage I "
                              "cache: trained once)", "trials": SWEEP_GRID, "wall s": walls["grid"],
               "single runs": ratio(walls["grid"], walls["single"])})
    shutil.rmtree(storage, ignore_errors=True)
    sec.notes += [
        f"both through `rllib train file` with `--config {json.dumps(common)}` and `--stop {stop}` "
        f"({iters} iterations: Stage I, Stage II, Stage III, one evaluation of {args.sweep_eval_episodes} episodes at "
        f"the end); the single run with {args.sweep_single_threads} torch thread(s) as sit_2s3z.yaml sets; the grid "
        "with the sweep YAML's threads (1 per trial, 2 for the trial training Stage I) and a fresh Stage I store; "
        f"Stage I status of the grid's trials: {statuses}.",
        f"dataset: smac:2s3z low, {args.sweep_episodes:,} episodes, seed {args.seed} (generated before timing); wall "
        "time includes Ray/Tune start-up, trial start, checkpoints."]
    return sec


def stage1_statuses(folder: str) -> Dict[str, int]:
    """``{Stage I cache status: trials}`` from the last result of every Tune trial under ``folder``."""
    counts: Dict[str, int] = {}
    for root, _, files in os.walk(folder):
        if "result.json" not in files:
            continue
        last = None
        with open(os.path.join(root, "result.json")) as f:
            for line in f:
                if line.strip():
                    last = line
        status = (json.loads(last).get("stage1_cache") or {}).get("status") if last else None
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------
# 7. Peak memory of a short SIT run on a large dataset
# ---------------------------------------------------------------------------------------------
def _proc_tree(root_pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_kb(pid: int) -> Dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
                    break
    except OSError:
        pass
    return out


def _cgroup_peak() -> Optional[int]:
    for p in ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes"):
        try:
            with open(p) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


class MemorySampler:
    """Samples the summed PSS, RSS and private RssAnon of this process and all its descendants."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak_rss = self.peak_anon = self.peak_pss = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = _proc_tree(os.getpid())
        tot = [_rss_kb(p) for p in pids]
        self.peak_rss = max(self.peak_rss, sum(t.get("VmRSS", 0) for t in tot) * 1024)
        self.peak_anon = max(self.peak_anon, sum(t.get("RssAnon", 0) for t in tot) * 1024)
        self.peak_pss = max(self.peak_pss, sum(t.get("Pss", 0) for t in tot) * 1024)
        self.peak_procs = max(self.peak_procs, len(pids))

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def section_memory(args, ctx) -> Section:
    import ray

    from rllib_sit.algorithms.sit import SITConfig

    sec = Section("memory", "Peak memory of a short SIT run (GiB)",
                  ["measurement", "value", "unit"])
    info = env_info(MEMORY_MAP)
    n = args.memory_episodes
    T1 = info.episode_limit + 1
    raw = n * (T1 * info.n_agents * info.obs_dim + T1 * info.state_dim + T1 * info.n_agents * info.n_actions) * 4
    path = synthetic_dataset(args.data_dir, MEMORY_MAP, n, args.seed)
    cache_root = tempfile.mkdtemp(prefix="speed_memcache_", dir=args.memory_cache_dir or ctx.tmp)
    if ray.is_initialized():
        ray.shutdown()
    cg0 = _cgroup_peak()
    t0 = time.perf_counter()
    with MemorySampler() as mem:
        ctx.ensure_ray()
        cfg = (SITConfig().environment(MEMORY_MAP).offline_data(input_=path)
               .training(ardnem_updates=args.memory_updates, ardnem_updates_per_iteration=args.memory_updates,
                         agent_updates=args.memory_updates, agent_updates_per_iteration=args.memory_updates,
                         batch_size_episodes=args.batch_episodes, column_cache_dir=cache_root, stage1_cache=False,
                         num_torch_threads=args.threads)
               .debugging(seed=args.seed))
        algo = cfg.build_algo()
        try:
            while not algo.schedule.finished:
                algo.train()
                mem.sample()
        finally:
            algo.stop()
        mem.sample()
        ray.shutdown()
        ctx.ray_started = False
    wall = time.perf_counter() - t0
    cg1 = _cgroup_peak()
    cache_bytes = folder_bytes(cache_root)
    shutil.rmtree(cache_root, ignore_errors=True)
    gib = 2 ** 30
    sec.add(measurement=f"dataset: {n:,} synthetic {MEMORY_MAP} episodes, float32 arrays (obs + state + avail)",
            value=raw / gib, unit="GiB")
    sec.add(measurement="dataset on disk (zstd Parquet)", value=folder_bytes(path) / gib, unit="GiB")
    sec.add(measurement="column cache on disk (memory-mapped .npy)", value=cache_bytes / gib, unit="GiB")
    sec.add(measurement=f"peak PSS, summed over the driver and the processes under it ({mem.peak_procs} in all; "
                        "shared pages split between their processes)", value=mem.peak_pss / gib, unit="GiB")
    sec.add(measurement="peak RSS, summed (shared pages counted in each process)", value=mem.peak_rss / gib,
            unit="GiB")
    sec.add(measurement="peak private memory (RssAnon), summed", value=mem.peak_anon / gib, unit="GiB")
    if cg1 is not None:
        sec.add(measurement="cgroup memory peak (whole container, page cache included; before the run: "
                            f"{(cg0 or 0) / gib:.2f})", value=cg1 / gib, unit="GiB")
    sec.add(measurement="wall time of the run (column cache build, Stage I, Stage II, Stage III)", value=wall,
            unit="s")
    sec.notes += [
        f"SIT with {args.memory_updates} Stage I updates, Stage II over all {n:,} episodes (r-hat, u-hat, "
        f"priorities, the DPER actor), {args.memory_updates} Stage III updates, batch {args.batch_episodes} episodes, "
        f"{args.threads} torch thread(s); a fresh column cache (built in the run, values validated).",
        "Sampled every 0.5 s (and after every iteration) from /proc over this process and every descendant "
        "(Ray's GCS, raylet, workers, the DPER actor): PSS from smaps_rollup (the all-processes total that counts "
        "a shared page once), VmRSS and RssAnon from status. The memory-mapped columns are file-backed pages: "
        "in the RSS of each process that touches them, evictable by the kernel; RssAnon is what cannot be evicted.",
        f"fits 24 GiB (peak PSS sum < 24 GiB): {mem.peak_pss < 24 * gib}."]
    return sec


SECTIONS: Dict[str, Callable] = {"learner": section_learner, "stage2": section_stage2, "sumtree": section_sumtree,
                                 "read": section_read, "envs": section_envs, "sweep": section_sweep,
                                 "memory": section_memory}


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
class Context:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="rllib_sit_speed_")
        self.ray_started = False

    def ensure_ray(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=self.args.num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=True, logging_level="ERROR")
            self.ray_started = True


TINY = {"learner_episodes": 8, "batch_episodes": 2, "updates": 2, "repeats": 2, "warmup": 1, "stage2_episodes": 16,
        "stage2_repeats": 1, "sumtree_leaves": [1000], "sumtree_draws": 20, "read_episodes": 16, "read_repeats": 1,
        "read_batch": 4, "env_steps": 50, "memory_episodes": 16, "memory_updates": 2, "sweep_episodes": 20,
        "sweep_ardnem_updates": 2, "sweep_agent_updates": 2, "sweep_ardnem_per_iteration": 2,
        "sweep_agent_per_iteration": 2, "sweep_eval_episodes": 1}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=DEFAULT_SECTIONS, choices=ALL_SECTIONS + ["all"])
    p.add_argument("--out", help="folder for speed.json, speed.csv and speed.md (written atomically)")
    p.add_argument("--data-dir", help="where synthetic datasets are generated once and reused "
                                      "(default <data dir>/cache/speed: $RLLIB_SIT_DATA_DIR or ./offline_data, git-ignored)")
    p.add_argument("--seed", type=int, default=0, help="seeds the datasets, the algorithms and the samplers")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: what a 1-CPU Tune trial gets)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--tiny", action="store_true", help="every size at its smallest (seconds per section; the test)")
    g = p.add_argument_group("learner")
    g.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="the learner's device (cuda: a local learner with num_gpus_per_learner=1)")
    g.add_argument("--precision", choices=["fp32", "bf16", "both"], default="fp32",
                   help="the learners' precision setting (both: fp32 then bf16 for each algorithm, in one run)")
    g.add_argument("--learner-threads", type=int, nargs="+",
                   help="torch thread counts the learner section times each algorithm at (default: --threads)")
    g.add_argument("--algos", nargs="+", help="registered algorithm names (default: all registered)")
    g.add_argument("--learner-episodes", type=int, default=1000, help="synthetic episodes per map")
    g.add_argument("--batch-episodes", type=int, default=32, help="episodes per batch (paper: 32)")
    g.add_argument("--updates", type=int, default=10, help="updates per side and round")
    g.add_argument("--repeats", type=int, default=5, help="rounds (sides alternated); also the sum-tree rounds")
    g.add_argument("--warmup", type=int, default=5, help="warm-up updates per side")
    g = p.add_argument_group("stage2")
    g.add_argument("--stage2-episodes", type=int, default=10000)
    g.add_argument("--stage2-repeats", type=int, default=3)
    g.add_argument("--stage2-ray-data", action="store_true", help="also time the Ray Data Stage II pass (once)")
    g = p.add_argument_group("sumtree")
    g.add_argument("--sumtree-leaves", type=int, nargs="+", default=[20000, 30000])
    g.add_argument("--sumtree-batch", type=int, default=32)
    g.add_argument("--sumtree-draws", type=int, default=2000, help="batches per side, over all rounds")
    g = p.add_argument_group("read")
    g.add_argument("--read-episodes", type=int, default=2000)
    g.add_argument("--read-batch", type=int, default=32)
    g.add_argument("--read-repeats", type=int, default=3)
    g = p.add_argument_group("envs")
    g.add_argument("--envs", nargs="+", default=ENVS)
    g.add_argument("--env-steps", type=int, default=5000)
    g = p.add_argument_group("sweep (optional)")
    g.add_argument("--sweep-episodes", type=int, default=1000, help="2s3z low dataset size (generated with the "
                                                                     "simulator on first use)")
    g.add_argument("--sweep-ardnem-updates", type=int, default=2000)
    g.add_argument("--sweep-agent-updates", type=int, default=1500)
    g.add_argument("--sweep-ardnem-per-iteration", type=int, default=1000)
    g.add_argument("--sweep-agent-per-iteration", type=int, default=500)
    g.add_argument("--sweep-eval-episodes", type=int, default=32)
    g.add_argument("--sweep-concurrent", type=int, default=2, help="grid trials at a time")
    g.add_argument("--sweep-single-threads", type=int, default=2, help="torch threads of the single run "
                                                                        "(sit_2s3z.yaml: 2)")
    g = p.add_argument_group("memory (optional)")
    g.add_argument("--memory-episodes", type=int, default=10000, help="synthetic 1c3s5z episodes (10,000: "
                                                                       "13 GiB of float32)")
    g.add_argument("--memory-updates", type=int, default=20, help="Stage I and Stage III updates")
    g.add_argument("--memory-cache-dir", help="where the run's column cache is built (default: a temp folder)")
    args = p.parse_args(argv)
    explicit = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])
                if a.startswith("--")}
    if args.tiny:
        for k, v in TINY.items():
            if k not in explicit:
                setattr(args, k, v)
    if "all" in args.sections:
        args.sections = list(ALL_SECTIONS)
    args.sections = [s for s in ALL_SECTIONS if s in args.sections]
    for name in ("learner_episodes", "batch_episodes", "updates", "repeats", "warmup", "stage2_episodes",
                 "stage2_repeats", "sumtree_batch", "sumtree_draws", "read_episodes", "read_batch", "read_repeats",
                 "env_steps", "threads", "memory_episodes", "memory_updates", "sweep_episodes",
                 "sweep_ardnem_updates", "sweep_agent_updates", "sweep_ardnem_per_iteration",
                 "sweep_agent_per_iteration", "sweep_eval_episodes", "sweep_concurrent", "sweep_single_threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(n < 2 for n in args.sumtree_leaves):
        p.error(f"--sumtree-leaves must be >= 2, got {args.sumtree_leaves}")
    args.learner_threads = args.learner_threads or [args.threads]
    if any(n < 1 for n in args.learner_threads):
        p.error(f"--learner-threads must be >= 1 each, got {args.learner_threads}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if args.data_dir is None:
        from rllib_sit.data.paths import data_dir

        args.data_dir = str(data_dir() / "cache" / "speed")
    args.data_dir = os.path.abspath(args.data_dir)
    return args


def to_csv(sections: List[Section]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "row", "column", "value"])
    for s in sections:
        for r in s.rows:
            label = r.get(s.columns[0], "")
            for c in s.columns[1:]:
                if c in r:
                    w.writerow([s.name, label, c, r[c]])
    return buf.getvalue()


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*not writable.*")
    os.makedirs(args.data_dir, exist_ok=True)
    command = "python benchmarks/speed.py " + shlex.join(list(argv if argv is not None else sys.argv[1:]))
    facts = machine_facts(args.threads)
    ctx = Context(args)
    sections: List[Section] = []
    try:
        for name in args.sections:
            print(f"[speed] section {name} ...", flush=True)
            t0 = time.perf_counter()
            sec = SECTIONS[name](args, ctx)
            sec.seconds = time.perf_counter() - t0
            sections.append(sec)
            print(f"[speed] section {name}: {sec.seconds:.1f} s\n\n{sec.markdown()}", flush=True)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    facts["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    md = [f"command: `{command}`", "",
          "machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), ""]
    for s in sections:
        md += [s.markdown(), f"(section time {s.seconds:.0f} s)", ""]
    text = "\n".join(md)
    print("\n" + text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        doc = {"command": command, "machine": facts, "args": vars(args),
               "sections": [{"name": s.name, "title": s.title, "columns": s.columns,
                             "rows": [{k: _jsonable(v) for k, v in r.items()} for r in s.rows], "notes": s.notes,
                             "seconds": s.seconds} for s in sections]}
        atomic_write(os.path.join(args.out, "speed.json"), json.dumps(doc, indent=2, default=str) + "\n")
        atomic_write(os.path.join(args.out, "speed.csv"), to_csv(sections))
        atomic_write(os.path.join(args.out, "speed.md"), text)
        print(f"[speed] wrote {args.out}/speed.json, speed.csv, speed.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
