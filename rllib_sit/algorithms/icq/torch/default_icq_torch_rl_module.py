"""ICQ's agent module: the base's recurrent actor π_i(a_i | τ_i), a recurrent critic Q_i(τ_i, ·)
and its frozen target copy, one module per agent type. The mixer (Q_tot = Σ_i w_i(s) Q_i + b(s))
is the base's learner-only :class:`~rllib_sit.models.mixers.MixerTorchRLModule`.

Critic networks:

* discrete — :class:`~rllib_sit.models.gru_actor.GRUActor` used unmasked: ``fc -> ReLU -> GRU ->
  fc`` on τ_i^t = (o_i^t, one-hot a_i^{t-1}) gives Q_i(τ_i^t, a) for every action a;
* continuous — :class:`RecurrentActionValue`: the same GRU trunk on (o_i^t, a_i^{t-1}) and an MLP
  head on [h_t ; a] (actions scaled to [-1, 1]) gives the scalar Q_i(τ_i^t, a).
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from rllib_sit.algorithms.icq.icq_learner import PI_PROBS, Q_BASELINE, Q_VALUES
from rllib_sit.models.gru_actor import GRUActor
from rllib_sit.models.recurrent_q import RecurrentActionValue
from rllib_sit.models.recurrent_agent import (RecurrentAgentTorchRLModule, TargetNetworksMixin, discrete_entropy,
                                             gather_agent)
from rllib_sit.replay import keys as K


class ICQAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Actor (acting on EnvRunners, inherited), critic and target critic of one agent type.

    ``model_config``: the recurrent agent's (obs_dim, discrete, n_actions, act_dim, action_low,
    action_high, rnn_hidden) + ``critic_hidden`` (continuous critic head) + ``n_action_samples``
    (continuous: actions drawn from π for the advantage baseline). EnvRunners build only the actor.
    """

    target_networks = ("critic",)

    def setup_learner(self) -> None:
        mc = self.model_config
        if self.discrete:
            self.critic = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"])
        else:
            self.critic = RecurrentActionValue(mc["obs_dim"] + self.act_dim, self.act_dim, mc["rnn_hidden"],
                                               mc.get("critic_hidden", 32))
        self.n_action_samples = int(mc.get("n_action_samples", 10))

    def get_non_inference_attributes(self):
        return ["critic", "target_critic"]

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        """On individual trajectories ``[B, L(+1), ...]``: log π(a^t | τ^t) of the dataset's actions,
        Q_i(τ^t, a^t) (with gradient), the target critic's Q_i'(τ^{t+1}, a^{t+1}) at the dataset's
        next action (no gradient), and what the advantage baseline needs: discrete — Q_i(τ^t, ·)
        and π(· | τ^t); continuous — the mean of Q_i(τ^t, ã) over ``n_action_samples`` ã ~ π(·|τ^t); and
        the policy's entropy (a diagnostic)."""
        L = batch[K.FILLED].shape[1]
        obs_full = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])  # [B, L+1, od]
        prev_full = batch[K.PREV_ACTIONS]  # [B, L+1(, A)]
        own, prev, avail = obs_full[:, :L], prev_full[:, :L], batch.get(K.AVAIL_ACTIONS)
        avail = None if avail is None else avail[:, :L]
        acts = batch[K.ACTIONS]
        if self.discrete:
            logits = self.actor(own, prev, avail)  # masked to the available actions
            log_pi = torch.log_softmax(logits, -1)
            logp = log_pi.gather(-1, acts.long().unsqueeze(-1)).squeeze(-1)
            q_values = self.critic(own, prev)  # [B, L, n_actions], unmasked outputs = Q values
            q_taken = q_values.gather(-1, acts.long().unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                q_next = self.target_critic(obs_full, prev_full)[:, 1:L + 1]
                q_next = q_next.gather(-1, batch[K.NEXT_ACTIONS].long().unsqueeze(-1)).squeeze(-1)
            return {K.LOGP: logp, K.Q_TAKEN: q_taken, K.Q_NEXT_TARGET: q_next,
                    Q_VALUES: q_values, PI_PROBS: log_pi.detach().exp(), K.ENTROPY: discrete_entropy(log_pi)}
        means = self.actor(own, prev)  # pre-tanh means [B, L, A]
        logp = self.actor.log_prob(means, acts)
        prev_in = self.action_input(prev_full)
        h = self.critic.trunk(obs_full[:, :L], prev_in[:, :L])
        q_taken = self.critic.value(h, self.action_input(acts))
        with torch.no_grad():
            h_t = self.target_critic.trunk(obs_full, prev_in)[:, 1:L + 1]
            q_next = self.target_critic.value(h_t, self.action_input(batch[K.NEXT_ACTIONS]))
            # Baseline Σ_a π(a|τ) Q(τ, a) estimated with M actions drawn from the tanh-Gaussian
            # (in [-1, 1], the critic's action scale); critic and policy detached.
            log_std = self.actor.log_std.clamp(self.actor.LOG_STD_MIN, self.actor.LOG_STD_MAX)
            eps = torch.randn(*means.shape[:2], self.n_action_samples, means.shape[-1],
                              dtype=means.dtype, device=means.device)
            sampled = torch.tanh(means.detach().unsqueeze(2) + log_std.exp() * eps)  # [B, L, M, A]
            q_base = self.critic.value(h.detach().unsqueeze(2), sampled).mean(-1)
        return {K.LOGP: logp, K.Q_TAKEN: q_taken, K.Q_NEXT_TARGET: q_next, Q_BASELINE: q_base,
                K.ENTROPY: self.gaussian_entropy(logp.shape)}
