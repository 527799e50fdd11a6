"""QMIX's agent module: the shared recurrent Q-network of one agent type and its target copy.

The base's :class:`~rllib_sit.models.recurrent_agent.RecurrentAgentTorchRLModule` already is a
recurrent Q-network: its ``GRUActor`` (fc -> GRU -> fc on τ_i = (o_i^t, a_i^{t-1})) called with
``avail=None`` returns raw outputs, here Q_i(τ_i, ·), and its greedy acting on EnvRunners is the
arg max of those outputs over the available actions — QMIX's decentralised greedy policy. The
mixer is the base's learner-only :class:`~rllib_sit.models.mixers.MixerTorchRLModule` (QMixer).
"""

from __future__ import annotations

import torch

from rllib_sit.algorithms.qmix.qmix_learner import Q_VALUES, TARGET_Q_VALUES
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent
from rllib_sit.replay import keys as K


class QMIXAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Q_i(τ_i, ·) of one agent type (``self.actor``, outputs = Q-values) and ``self.target_actor``
    (built and hard-copied by the learner through RLlib's ``TargetNetworkAPI``)."""

    target_networks = ("actor",)

    def get_non_inference_attributes(self):
        return ["target_actor"]

    def _forward_train(self, batch, **kwargs):
        """Online and target Q-values for every action at t = 0..L of each individual trajectory.

        The unroll covers L+1 steps: steps 0..L-1 give Q(τ^t, a^t), steps 1..L the bootstrap values
        at τ^{t+1} (step L is the final observation, stored by the schema). Nothing is masked here:
        the learner masks unavailable actions and padded steps.
        """
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L + 1]
        prev = batch[K.PREV_ACTIONS][:, :L + 1]
        out = {Q_VALUES: self.actor(own, prev)}
        with torch.no_grad():
            out[TARGET_Q_VALUES] = self.target_actor(own, prev)
        return out
