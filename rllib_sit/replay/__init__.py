"""Replay structures: a vectorised NumPy sum tree and the samplers of training batches
(individual trajectories per module, joint episodes, one agent's one-step transitions), usable in-process or as Ray actors."""

from rllib_sit.replay.samplers import (IndividualTrajectorySampler, JointEpisodeSampler, TrajectoryGatherer,
                                       effective_sample_size, make_sampler_actor)
from rllib_sit.replay.sum_tree import SumTree
from rllib_sit.replay.transitions import AgentTransitionSampler, PerAgentSamplers

__all__ = ["AgentTransitionSampler", "PerAgentSamplers", "SumTree", "IndividualTrajectorySampler", "JointEpisodeSampler", "effective_sample_size",
           "make_sampler_actor", "TrajectoryGatherer"]
