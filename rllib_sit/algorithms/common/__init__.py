"""The shared base of the package's offline multi-agent algorithms (see docs/adding_an_algorithm.md):
``OfflineMARLConfig`` (config), ``OfflineMARLAlgorithm`` (algorithm + phases),
``OfflineMARLTorchLearner`` (losses per optimizer, joint losses, target networks),
``TeamMetricsCallback`` (evaluation) and the agent -> module mappings."""

from rllib_sit.algorithms.common.algorithm import ALGORITHM_RESULTS, PHASE_RESULTS, OfflineMARLAlgorithm
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.evaluation import TeamMetricsCallback
from rllib_sit.algorithms.common.mapping import AgentModuleMapping
from rllib_sit.algorithms.common.phases import Phase, PhaseSchedule

__all__ = ["OfflineMARLAlgorithm", "OfflineMARLConfig", "TeamMetricsCallback", "AgentModuleMapping", "Phase",
           "PhaseSchedule", "ALGORITHM_RESULTS", "PHASE_RESULTS"]
