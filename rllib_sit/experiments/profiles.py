"""Benchmark profiles: which maps, qualities, seeds and training lengths ``rllib-sit benchmark`` runs.

``paper``  the SIT paper's Table 1: eleven maps × {low, medium} × 5 seeds, 10,000-episode datasets,
           every algorithm's own (the papers') lengths: 15,000 policy updates (Table 11), SIT +
           20,000 ARDNEM updates (Table 10); 32 evaluation episodes at 10 points of training (each
           evaluation runs them twice: a greedy and a sampled pass, issue 26).
``quick``  one map (smac:2s3z) × its Table 1 qualities {low, medium} × 3 seeds, 1,000-episode
           datasets, 500 policy updates for every algorithm (SIT + 500 ARDNEM, OMAC + 500 value
           updates), 16 evaluation episodes at 4 points, OMAC at the SIT paper's shared RNN width
           (64, Table 11) instead of its own 256 (OMAC Table 2): under an hour on 2 CPUs
           (:func:`estimate_seconds`; docs/benchmarks.md shows the estimate).
``ablations``, ``balanced``, ``sensitivity``  the quick lengths on the data of the paper's
           Figures 4a/b, 4c and 8 (2s3z).

Hyper-parameters are each algorithm's config defaults (the papers' values, as in
``tuned_examples/``); a profile sets lengths, the evaluation schedule and, where it says so
(``Profile.settings``), a setting that makes an algorithm affordable at its lengths.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

# The SIT paper's maps (Tables 2, 3; Figure 6) and Table 1 qualities.
PAPER_MAPS: Tuple[str, ...] = (
    "smac:2s_vs_1sc", "smac:3s_vs_5z", "smac:2s3z", "smac:8m", "smac:1c3s5z", "smac:10m_vs_11m",
    "mpe:cn_3ls3l", "mpe:cn_4ls4l", "mpe:pp_3p1p", "mamujoco:halfcheetah_2l", "mamujoco:walker_2l")
PAPER_QUALITIES: Tuple[str, ...] = ("low", "medium")

# Table 1's columns in the paper's order: (header, algorithms whose rows fill it). "QMIX/FacMAC"
# holds QMIX on discrete maps and FACMAC on continuous ones (MAMuJoCo).
TABLE1_COLUMNS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("Behaviour", ()), ("MABC", ("MABC",)), ("QMIX/FacMAC", ("QMIX", "FACMAC")), ("MABCQ", ("MABCQ",)),
    ("MACQL", ("MACQL",)), ("ICQ", ("ICQ",)), ("OMAC", ("OMAC",)), ("SIT", ("SIT",)))
TABLE1_ALGORITHMS: Tuple[str, ...] = tuple(a for _, algos in TABLE1_COLUMNS for a in algos)

# SIT's ablation switches (Figure 4a/b) as algorithm variants, with the paper's legend names.
ABLATIONS: Dict[str, str] = {
    "SIT[decomposition=none]": "w/o decomp",
    "SIT[use_attention=False]": "w/o attention",
    "SIT[ensemble=False]": "w/o ensemble",
    "SIT[use_gat=False]": "w/o GAT",
    "SIT[prioritized=False]": "w/o priority",
}
# The α × β × η grid of the paper's Figure 8 (tuned_examples/sit_2s3z_sweep.yaml).
SENSITIVITY_GRID = "SIT[alpha=0.2|1|5,beta=0.1|1,eta=1|2]"

# Per-update cost on smac:2s3z in ms (batch of 32 episodes, ONE torch thread), for the time
# estimates: measured by ``benchmarks/speed.py --sections learner`` on the idle 2-core VM (commit
# 2a874d8; docs/benchmarks.md, "Speed -> Results": the RLlib update column). MABCQ's is its behaviour
# + BCQ update; OMAC's are at its Table 2 width of 256 (value / policy phase); VD+TN's per-agent
# transition batches of 32 episodes.
UPDATE_MS: Dict[str, float] = {"SIT": 99.0, "SIT/ardnem_updates": 162.0, "MABC": 58.0, "QMIX": 161.0,
                               "FACMAC": 158.0, "MABCQ": 249.0, "MACQL": 153.0, "ICQ": 256.0,
                               "OMAC": 1362.0, "OMAC/value_updates": 1815.0,
                               # VD+TN: td phase / fit phase (HalfCheetah 2l for TD3+BC)
                               "VDTN_BCQ": 36.3, "VDTN_BCQ/fit_updates": 65.7, "VDTN_CQL": 33.8,
                               "VDTN_CQL/fit_updates": 54.7, "VDTN_TD3BC": 21.7, "VDTN_TD3BC/fit_updates": 19.8}
# Settings an algorithm's cost scales with: (setting, value measured at, exponent). A recurrent
# layer's work grows with the square of its width, so OMAC at 64 costs ~(64/256)^2 of the above
# (an estimate: fixed costs such as the CCA mixer do not shrink).
COST_SCALING: Dict[str, Tuple[str, float, float]] = {"OMAC": ("hidden", 256.0, 2.0)}
DEFAULT_UPDATE_MS = 80.0
TRIAL_OVERHEAD_S = 15.0  # trial process start (torch + RLlib import), algorithm build, checkpoint
EVAL_STEP_MS = 3.0  # one evaluation step: simulator step + GRU forward of every module
EVAL_STEPS_PER_EPISODE = 60  # 2s3z episodes last 30-120 steps
GENERATION_EPISODES_PER_S = 13.0  # 2s3z, 2 workers (docs/datasets.md: 12.8-14.3 episodes/s)


# The setting of each algorithm's policy-training phase (its last phase, the one evaluated) and of
# its updates per iteration; algorithms not listed use ("agent_updates", "agent_updates_per_iteration").
POLICY_PHASE: Dict[str, Tuple[str, str]] = {"OMAC": ("policy_updates", "policy_updates_per_iteration"),
                                            **{a: ("td_updates", "updates_per_iteration")
                                               for a in ("VDTN_BCQ", "VDTN_CQL", "VDTN_TD3BC")}}
DEFAULT_POLICY_PHASE = ("agent_updates", "agent_updates_per_iteration")
# Length settings of the phases before it (pre-training), per algorithm.
PRETRAIN_KEYS: Dict[str, Tuple[str, ...]] = {"SIT": ("ardnem_updates",), "OMAC": ("value_updates",),
                                             "MABCQ": ("behaviour_pretrain_updates",),
                                             **{a: ("fit_updates",) for a in ("VDTN_BCQ", "VDTN_CQL", "VDTN_TD3BC")}}


def policy_keys(algorithm: str) -> Tuple[str, str]:
    """(length setting, per-iteration setting) of ``algorithm``'s policy-training phase."""
    return POLICY_PHASE.get(algorithm, DEFAULT_POLICY_PHASE)


@dataclass(frozen=True)
class Profile:
    """What a profile runs. ``policy_updates`` (None: each algorithm's own default, the papers'
    values) is every algorithm's policy-phase length; ``pretrain`` sets phases before it."""

    name: str
    description: str
    maps: Tuple[str, ...]
    qualities: Tuple[str, ...]
    seeds: Tuple[int, ...]
    episodes: int
    policy_updates: Optional[int] = None
    pretrain: Dict[str, Dict[str, int]] = field(default_factory=dict)
    eval_points: int = 10
    eval_episodes: int = 32
    algorithms: Optional[Tuple[str, ...]] = None  # None: every registered Table 1 algorithm
    dataset_seed: int = 0
    # Non-length settings fixed per algorithm (under --config and a variant's own overrides).
    settings: Dict[str, Dict[str, object]] = field(default_factory=dict)

    def lengths(self, algorithm: str) -> Dict[str, int]:
        """Length settings this profile gives ``algorithm`` (on top of its config defaults)."""
        out = {} if self.policy_updates is None else {policy_keys(algorithm)[0]: int(self.policy_updates)}
        out.update(self.pretrain.get(algorithm, {}))
        return out


# quick: the same policy-phase length for every algorithm; the pre-training phases (SIT's ARDNEM,
# OMAC's value phase) as long as it. OMAC runs at the SIT paper's shared RNN width (Table 11,
# "Shared": RNN hidden 64, what every other algorithm here uses): at its own Table 2 width of 256,
# one OMAC update costs 1.4-1.8 s on one thread (docs/benchmarks.md, Speed), and its six quick
# trials alone would take ~80 min of the profile's hour.
_QUICK = dict(seeds=(0, 1, 2), episodes=1000, policy_updates=500,
              pretrain={"SIT": {"ardnem_updates": 500}, "OMAC": {"value_updates": 500}},
              settings={"OMAC": {"hidden": 64}}, eval_points=4, eval_episodes=16)

PROFILES: Dict[str, Profile] = {
    "paper": Profile(
        name="paper", description="SIT paper Table 1: 11 maps x {low, medium} x 5 seeds, paper lengths",
        maps=PAPER_MAPS, qualities=PAPER_QUALITIES, seeds=(0, 1, 2, 3, 4), episodes=10000,
        # policy_updates None: every algorithm's default, i.e. Table 11's 15,000 updates (SIT + Table
        # 10's 20,000 ARDNEM updates; OMAC 10,000 value + 10,000 policy updates, its config's values)
        eval_points=10, eval_episodes=32),
    "quick": Profile(
        name="quick", description="smac:2s3z x {low, medium} x 3 seeds, shortened lengths (< 1 h on 2 CPUs)",
        maps=("smac:2s3z",), qualities=PAPER_QUALITIES, **_QUICK),
    "ablations": Profile(
        name="ablations", description="Figure 4a/b: SIT and its ablations on smac:2s3z low and extreme, quick lengths",
        maps=("smac:2s3z",), qualities=("low", "extreme"), algorithms=("SIT",) + tuple(ABLATIONS), **_QUICK),
    "balanced": Profile(
        name="balanced", description="Figure 4c: smac:2s3z balanced-random/-medium/-expert, quick lengths",
        maps=("smac:2s3z",), qualities=("balanced-random", "balanced-medium", "balanced-expert"), **_QUICK),
    "sensitivity": Profile(
        name="sensitivity", description="Figure 8: SIT's alpha x beta x eta grid on smac:2s3z low, quick lengths",
        maps=("smac:2s3z",), qualities=("low",), algorithms=(SENSITIVITY_GRID,), **_QUICK),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"--profile {name!r} is unknown; expected one of {sorted(PROFILES)}")
    return PROFILES[name]


@functools.lru_cache(maxsize=None)
def is_continuous_map(map_id: str) -> bool:
    """Whether ``map_id``'s actions are continuous, as its env says (MAMuJoCo, MPE's differential game)."""
    from rllib_sit.envs.registry import make_env

    env = make_env(map_id)
    try:
        return not env.info.discrete
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()


def algorithm_fits_map(algorithm: str, continuous: bool) -> bool:
    """Whether ``algorithm``'s config accepts the map's action space (its ``action_spaces``: QMIX
    discrete only, FACMAC continuous only). Unregistered names fit everything."""
    import importlib

    from rllib_sit.algorithms import ALGORITHMS

    if algorithm not in ALGORITHMS:
        return True
    module, cls = ALGORITHMS[algorithm]
    config_class = type(getattr(importlib.import_module(module), cls).get_default_config())
    return ("continuous" if continuous else "discrete") in config_class.action_spaces


def policy_iteration_size(agent_updates: int, eval_points: int) -> int:
    """Updates per ``train()`` in the policy phase: one evaluation after each iteration of it."""
    return max(1, math.ceil(int(agent_updates) / max(1, int(eval_points))))


def evaluation_passes() -> int:
    """Passes of every evaluation (greedy and sampled, issue 26): the number
    ``OfflineMARLAlgorithm.evaluate`` runs (``evaluation.EVALUATION_PASSES``), each
    ``eval_episodes`` episodes long."""
    from rllib_sit.algorithms.common.evaluation import EVALUATION_PASSES

    return len(EVALUATION_PASSES)


def evaluation_seconds(eval_points: int, eval_episodes: int, passes: Optional[int] = None) -> float:
    """One trial's evaluations: ``eval_points`` × ``passes`` (default :func:`evaluation_passes`) ×
    ``eval_episodes`` episodes of ``EVAL_STEPS_PER_EPISODE`` steps at ``EVAL_STEP_MS``."""
    passes = evaluation_passes() if passes is None else int(passes)
    return eval_points * passes * eval_episodes * EVAL_STEPS_PER_EPISODE * EVAL_STEP_MS / 1000.0


def estimate_seconds(cells: Sequence[Tuple[str, Dict[str, int]]], eval_points: int, eval_episodes: int,
                     datasets_to_generate: int = 0, episodes: int = 0, concurrent: int = 1,
                     eval_passes: Optional[int] = None) -> Dict[str, float]:
    """Wall-clock estimate on 2s3z-sized maps: ``cells`` = [(algorithm, its settings)] run
    ``concurrent`` at a time, each at the per-update costs above (one torch thread per trial,
    scaled by ``COST_SCALING``) plus its evaluations (:func:`evaluation_seconds`: every evaluation
    point runs ``eval_passes`` passes, default :func:`evaluation_passes`, i.e. greedy + sampled);
    dataset generation at 2s3z's rate. Returns ``{"data_s", "trials_s", "total_s"}``."""
    evaluation = evaluation_seconds(eval_points, eval_episodes, eval_passes)
    trials = 0.0
    for algo, lengths in cells:
        scale = 1.0
        if algo in COST_SCALING:
            key, at, power = COST_SCALING[algo]
            scale = (float(lengths.get(key, at)) / at) ** power
        base = UPDATE_MS.get(algo, DEFAULT_UPDATE_MS)
        t = TRIAL_OVERHEAD_S + lengths.get(policy_keys(algo)[0], 0) * base * scale / 1000.0
        for key in PRETRAIN_KEYS.get(algo, ()):
            t += lengths.get(key, 0) * UPDATE_MS.get(f"{algo}/{key}", base) * scale / 1000.0
        t += evaluation
        trials += t
    data = datasets_to_generate * episodes / GENERATION_EPISODES_PER_S
    trials /= max(1, concurrent)
    return {"data_s": data, "trials_s": trials, "total_s": data + trials}
