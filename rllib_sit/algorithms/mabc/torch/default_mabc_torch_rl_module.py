"""MABC's agent module: the shared recurrent actor alone (no critic), trained on log-likelihoods."""

from __future__ import annotations

import torch

from rllib_sit.algorithms.mabc.mabc_learner import GREEDY_MATCH
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, discrete_entropy
from rllib_sit.replay import keys as K


class MABCAgentTorchRLModule(RecurrentAgentTorchRLModule):
    """GRU actor of one agent type (:class:`RecurrentAgentTorchRLModule`: masked logits or
    tanh-Gaussian; acting on EnvRunners). ``_forward_train`` returns log π(a^t | τ^t) of the
    dataset's actions on an individual-trajectory batch (Eq. 11's term), the policy's entropy and,
    for discrete actions, whether the greedy action matches them."""

    def _forward_train(self, batch, **kwargs):
        own, prev, avail = self.own_trajectory(batch)
        acts = batch[K.ACTIONS]
        if not self.discrete:
            logp, entropy = self.log_prob_and_entropy(own, prev, acts)
            return {K.LOGP: logp, K.ENTROPY: entropy}
        # One unroll for every output (RecurrentAgentTorchRLModule.log_prob returns no logits).
        logits = self.actor(own, prev, avail)  # masked to the available actions
        a = acts.long()
        log_pi = torch.log_softmax(logits, -1)
        logp = log_pi.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        return {K.LOGP: logp, GREEDY_MATCH: (logits.argmax(-1) == a).float(), K.ENTROPY: discrete_entropy(log_pi)}
