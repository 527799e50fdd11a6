"""Experiments: the benchmark runner behind ``rllib-sit benchmark`` (profiles, plan, Tune runner,
Table 1 in Markdown, the paper's figures). See docs/benchmarks.md."""

from rllib_sit.experiments.plan import AlgoSpec, Cell, DatasetRef, Plan, build_plan, parse_algorithms
from rllib_sit.experiments.profiles import PROFILES, Profile, get_profile
from rllib_sit.experiments.runner import BenchmarkReport, run_benchmark

__all__ = ["AlgoSpec", "BenchmarkReport", "Cell", "DatasetRef", "PROFILES", "Plan", "Profile", "build_plan",
           "get_profile", "parse_algorithms", "run_benchmark"]
