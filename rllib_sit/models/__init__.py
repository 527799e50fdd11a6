"""Reusable torch building blocks (no algorithm logic): MLPs, GRU actors, GAT, mixing networks,
ensemble layers. Algorithms compose them in their own RLModules."""

from rllib_sit.models.blocks import mlp, EnsembleLinear, EnsembleMLP
from rllib_sit.models.gru_actor import GRUActor, GaussianGRUActor
from rllib_sit.models.gat import GATAggregator, gat_attention_weights
from rllib_sit.models.mixers import MonotonicHyperWeights

__all__ = ["mlp", "EnsembleLinear", "EnsembleMLP", "GRUActor", "GaussianGRUActor", "GATAggregator",
           "gat_attention_weights", "MonotonicHyperWeights"]
