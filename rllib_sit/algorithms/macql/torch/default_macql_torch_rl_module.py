"""MACQL's agent module: one per agent type (shared by its agents, the SIT paper's setting).

* **Discrete** (SMAC, MPE): the per-agent Q-network Q_i(τ_i, ·) is ``q``, the base's recurrent
  network (:class:`~rllib_sit.models.gru_actor.GRUActor`, fc → GRU → fc over τ_i = (o_i^t, a_i^{t-1}))
  called without a mask (the raw values of every action). It is also what the agent acts with:
  ``actor`` (read by the base's greedy acting, evaluation and export) is ``q``, whose arg max over
  the available actions is the Q-learning policy. Its target copy ``target_q`` comes from RLlib's
  ``TargetNetworkAPI`` (``target_networks = ("q",)``).
* **Continuous** (MAMuJoCo; our design, see ``docs/algorithms/macql.md``): the base's tanh-Gaussian
  GRU actor π_i acts; the shared recurrent critic Q_i(τ_i, a_i)
  (:class:`~rllib_sit.models.recurrent_q.RecurrentActionValue`: fc(o ⊕ a^{t-1}) → ReLU → GRU, then
  an MLP head on [h^t ; a]) with a target copy, and a learned entropy temperature ``log_alpha``
  (SAC) live on the learner only.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import torch
from torch import nn

from rllib_sit.algorithms.macql.macql_learner import (LOG_PROPOSAL, LOGP_NEXT, LOGP_PI, Q_ALL, Q_ALL_TARGET, Q_PI,
                                                      Q_SAMPLES)
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent
from rllib_sit.models.recurrent_q import RecurrentActionValue
from rllib_sit.replay import keys as K


def tanh_gaussian_sample(means: torch.Tensor, log_std: torch.Tensor, n: int | None = None
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample u = tanh(μ + σ ε) in [-1, 1] and its log density **in that [-1, 1]
    space** (SAC's convention): Σ_d [log N(μ + σ ε; μ, σ) − log(1 − u² + 1e-6)].

    ``means [..., A]``; with ``n``, ``n`` samples per position: ``[..., n, A]`` and ``[..., n]``.
    """
    if n is not None:
        means = means.unsqueeze(-2).expand(*means.shape[:-1], n, means.shape[-1])
    std = log_std.exp()
    eps = torch.randn_like(means)
    pre = means + std * eps
    u = torch.tanh(pre)
    logp = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    logp = logp - torch.log(1 - u ** 2 + 1e-6).sum(-1)
    return u, logp


class MACQLAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Per-agent-type Q-network (discrete) or actor + critic (continuous) of MACQL.

    ``model_config``: the recurrent agent's (obs_dim, discrete, n_actions, act_dim, action_low,
    action_high, rnn_hidden) + ``critic_hidden``, ``cql_num_samples``, ``initial_alpha``
    (continuous only). EnvRunners use the actor (the greedy Q-network for discrete actions).
    """

    @property
    def actor(self) -> nn.Module:
        """The network the agent acts with (what the base's acting, evaluation and export read): the
        Q-network ``q`` (greedy arg max over the available actions) for discrete actions, the
        tanh-Gaussian policy for continuous ones."""
        return self._modules["q"] if "q" in self._modules else self._modules["actor"]

    def setup_learner(self) -> None:
        mc = self.model_config
        if self.discrete:
            # The base built its GRU (fc → GRU → fc on τ_i): it is Q_i(τ_i, ·), registered as ``q``.
            self.q = self._modules.pop("actor")
            self.target_networks = ("q",)
            return
        self.target_networks = ("critic",)
        self.critic = RecurrentActionValue(mc["obs_dim"] + self.act_dim, self.act_dim, mc["rnn_hidden"],
                                           mc["critic_hidden"])
        self.log_alpha = nn.Parameter(torch.tensor(math.log(float(mc.get("initial_alpha", 1.0)))))
        self.num_samples = int(mc.get("cql_num_samples", 10))

    def get_non_inference_attributes(self):
        if self.discrete:
            return ["target_q"]
        return ["critic", "target_critic", "log_alpha"]

    # -- discrete --------------------------------------------------------------------------------
    def q_values(self, batch: Dict[str, Any], target: bool = False) -> torch.Tensor:
        """Q_i(τ_i^t, ·) for t = 0..L of an individual-trajectory batch: ``[B, L+1, n_actions]``
        (raw values: unavailable actions are masked by the losses, not here)."""
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])
        net = self.target_q if target else self.q
        return net(own, batch[K.PREV_ACTIONS])

    # -- continuous ------------------------------------------------------------------------------
    def _log_std(self) -> torch.Tensor:
        a = self.actor
        return a.log_std.clamp(a.LOG_STD_MIN, a.LOG_STD_MAX)

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def _forward_train_continuous(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])  # [B, L+1, od]
        prev = batch[K.PREV_ACTIONS]  # [B, L+1, A] box actions
        prev_scaled = self.action_input(prev)
        means = self.actor(own, prev)  # [B, L+1, A] pre-tanh
        log_std = self._log_std()
        h = self.critic.trunk(own, prev_scaled)  # [B, L+1, H]
        h_now = h[:, :L]
        q_data = self.critic.value(h_now, self.action_input(batch[K.ACTIONS]))
        # Actor / temperature: one reparameterised sample ã ~ π_i(τ_i^t).
        u_pi, logp_pi = tanh_gaussian_sample(means[:, :L], log_std)
        q_pi = self.critic.value(h_now, u_pi)
        # CQL(H): n uniform samples on [-1, 1]^A (density 2^-A) and n policy samples (detached).
        n = self.num_samples
        B = own.shape[0]
        u_unif = torch.rand(B, L, n, self.act_dim, device=own.device) * 2.0 - 1.0
        logq_unif = torch.full((B, L, n), -self.act_dim * math.log(2.0), device=own.device)
        with torch.no_grad():
            u_pol, logq_pol = tanh_gaussian_sample(means[:, :L], log_std, n)
        q_samples = self.critic.value(h_now.unsqueeze(-2), torch.cat([u_unif, u_pol], 2))  # [B, L, 2n]
        # SAC target: a' ~ π_i(τ_i^{t+1}) on the target critic.
        with torch.no_grad():
            u_next, logp_next = tanh_gaussian_sample(means[:, 1:L + 1], log_std)
            h_target = self.target_critic.trunk(own, prev_scaled)
            q_next = self.target_critic.value(h_target[:, 1:L + 1], u_next)
        return {K.Q_TAKEN: q_data, Q_PI: q_pi, LOGP_PI: logp_pi, Q_SAMPLES: q_samples,
                LOG_PROPOSAL: torch.cat([logq_unif, logq_pol], 2), K.Q_NEXT_TARGET: q_next, LOGP_NEXT: logp_next}

    def _forward_train(self, batch, **kwargs):
        if self.discrete:
            with torch.no_grad():
                q_target = self.q_values(batch, target=True)
            return {Q_ALL: self.q_values(batch), Q_ALL_TARGET: q_target}
        return self._forward_train_continuous(batch)
