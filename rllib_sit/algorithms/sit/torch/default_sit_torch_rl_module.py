"""SIT's torch networks as RLModules: one ``SITAgentTorchRLModule`` per agent type (actor + GAT
critic + frozen target critic) and one ``ARDNEMTorchRLModule`` (the Stage I reward-decomposition
ensemble)."""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn
from ray.rllib.core.rl_module.torch import TorchRLModule

from rllib_sit.algorithms.sit.sit_learner import WEIGHTED_REWARDS
from rllib_sit.models import EnsembleLinear, EnsembleMLP, GATAggregator, mlp
from rllib_sit.models.mixers import MonotonicHyperWeights
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent
from rllib_sit.replay import keys as K

# ---------------------------------------------------------------------------------------------
# Stage I: ARDNEM (Eq. 1–3)
# ---------------------------------------------------------------------------------------------


def action_features(actions: torch.Tensor, discrete: bool, n_actions: int) -> torch.Tensor:
    """One-hot of int actions (discrete) or the float action vector itself (continuous)."""
    if discrete:
        return nn.functional.one_hot(actions.long().clamp(min=0), n_actions).float()
    return actions.float()


class ARDNEM(nn.Module):
    """Attention-based Reward Decomposition Network with Ensemble Mechanism.

    For every member m: r_{i,m} = f_m(o_i, a_i) (shared across agents), and a weight λ_{i,m}:
    ``"attention"`` — softmax over agents of (W_q e_s)^T (W_k e_i) (Eq. 1); ``"none"`` — λ ≡ 1
    (Figure 4a "w/o attention"); ``"monotonic"`` — QMIX-style |hyper(s)| weights plus a state
    bias shared equally by the agents (E.1). ``weighted_rewards`` returns λ·r ``[M, n, N]``.
    """

    def __init__(self, obs_dim: int, state_dim: int, n_agents: int, act_feat_dim: int, discrete: bool,
                 ensemble_size: int = 5, reward_hidden: int = 64, attention_hidden: int = 64,
                 weight_mode: str = "attention"):
        super().__init__()
        self.M, self.n_agents, self.discrete, self.act_feat_dim = ensemble_size, n_agents, discrete, act_feat_dim
        self.weight_mode = weight_mode
        d_in = obs_dim + act_feat_dim
        self.reward_net = EnsembleMLP(ensemble_size, d_in, [reward_hidden, reward_hidden], 1)
        if weight_mode == "attention":
            self.state_embed = EnsembleMLP(ensemble_size, state_dim, [attention_hidden], attention_hidden)
            self.agent_embed = EnsembleMLP(ensemble_size, d_in, [attention_hidden], attention_hidden)
            self.w_q = EnsembleLinear(ensemble_size, attention_hidden, attention_hidden)
            self.w_k = EnsembleLinear(ensemble_size, attention_hidden, attention_hidden)
        elif weight_mode == "monotonic":
            self.hyper = nn.ModuleList(MonotonicHyperWeights(state_dim, n_agents, attention_hidden)
                                       for _ in range(ensemble_size))

    def _features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(o_i, a_i) per agent, repeated for the ensemble: ``[M, n, N, obs_dim + A]``."""
        x = torch.cat([obs, action_features(actions, self.discrete, self.act_feat_dim)], -1)
        return x.unsqueeze(0).expand(self.M, *x.shape)

    def _attention(self, xm: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Eq. 1: λ_i = softmax_i (e_s^T W_q^T W_k e_i), ``[M, n, N]``.

        W_k is applied to the query (q' = W_k^T W_q e_s, once per timestep) instead of to every
        agent's key (once per agent): the same bilinear form and parameters at 1/N of the cost.
        The key bias adds q·b_k, the same for every agent, which the softmax over agents cancels;
        it is kept so the value is exactly (W_q e_s)^T (W_k e_i + b_k).
        """
        sm = state.unsqueeze(0).expand(self.M, *state.shape)
        q = self.w_q(self.state_embed(sm))  # [M, n, H]
        q_key = torch.bmm(q, self.w_k.weight.transpose(1, 2))  # [M, n, H] = q W_k^T
        q_bias = (q * self.w_k.bias).sum(-1, keepdim=True)  # [M, n, 1]
        e = self.agent_embed(xm)  # [M, n, N, H]
        # A product and a sum, not an einsum: the einsum is M·n batched [1, H] x [H, N] matmuls, whose
        # layout copies cost more than the arithmetic (and, under bf16 autocast, more than all of
        # Stage I's bf16 matmuls saved: profile in docs/benchmarks.md). Sums in fp32 (e is fp32).
        scores = (q_key.unsqueeze(2) * e).sum(-1) + q_bias
        return torch.softmax(scores.float(), dim=-1)  # fp32 softmax under bf16 autocast (bf16 bmm)

    def weighted_rewards(self, obs: torch.Tensor, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``obs [n, N, obs_dim]``, ``actions [n, N(, A)]``, ``state [n, S]`` -> λ·r ``[M, n, N]`` (Eq. 2)."""
        xm = self._features(obs, actions)
        r = self.reward_net(xm).squeeze(-1)  # [M, n, N]
        if self.weight_mode == "attention":
            return self._attention(xm, state) * r
        if self.weight_mode == "monotonic":
            outs = []
            for m, hyper in enumerate(self.hyper):
                w, b = hyper(state)
                outs.append(w * r[m] + b.unsqueeze(-1) / self.n_agents)
            return torch.stack(outs, 0)
        return r

    def attention_weights(self, obs, actions, state) -> torch.Tensor:
        """λ ``[M, n, N]`` (ones unless ``weight_mode == "attention"``)."""
        xm = self._features(obs, actions)
        if self.weight_mode != "attention":
            return torch.ones(xm.shape[:-1], device=xm.device)
        return self._attention(xm, state)


def build_ardnem(mc: Dict[str, Any]) -> ARDNEM:
    return ARDNEM(obs_dim=mc["obs_dim"], state_dim=mc["state_dim"], n_agents=mc["n_agents"],
                  act_feat_dim=mc["n_actions"] if mc["discrete"] else mc["act_dim"], discrete=mc["discrete"],
                  ensemble_size=mc["ensemble_size"], reward_hidden=mc["reward_hidden"],
                  attention_hidden=mc["attention_hidden"], weight_mode=mc["weight_mode"])


class ARDNEMTorchRLModule(TorchRLModule):
    """RLModule wrapper of :class:`ARDNEM` so the LearnerGroup trains and checkpoints it."""

    def setup(self):
        self.ardnem = build_ardnem(self.model_config)

    def _forward(self, batch, **kwargs):
        return {WEIGHTED_REWARDS: self.ardnem.weighted_rewards(batch[K.OBS], batch[K.ACTIONS], batch[K.STATE])}


# ---------------------------------------------------------------------------------------------
# Stage III: actor + GAT critic (Eq. 8–10)
# ---------------------------------------------------------------------------------------------


class GATCritic(nn.Module):
    """Q_i(τ_i, a_i, o_{-i}) = f_agg([f_local(τ_i, a_i) ; e_global]) (Eq. 8 + §"Conservative Policy Learning").

    τ_i = (o_i^t, a_i^{t-1}). Discrete: outputs Q for every action ``[.., n_actions]``;
    continuous: takes a_i as input and outputs a scalar. ``use_gat=False`` drops e_global.
    """

    def __init__(self, obs_dim: int, n_actions: int, act_dim: int, discrete: bool, hidden: int = 32,
                 use_gat: bool = True):
        super().__init__()
        self.discrete, self.n_actions, self.use_gat = discrete, n_actions, use_gat
        a_feat = n_actions if discrete else act_dim
        local_in = obs_dim + a_feat + (0 if discrete else act_dim)
        self.f_local = mlp(local_in, [hidden], hidden, out_act=nn.ReLU)
        self.gat = GATAggregator(obs_dim, hidden) if use_gat else None
        self.f_agg = mlp(hidden * (2 if use_gat else 1), [hidden], n_actions if discrete else 1)

    def forward(self, obs_all: torch.Tensor, agent_index: torch.Tensor, prev_action_feat: torch.Tensor,
                action: torch.Tensor | None = None) -> torch.Tensor:
        """``obs_all [B, T, N, od]``, ``agent_index [B]``, ``prev_action_feat [B, T, A]`` -> Q."""
        parts = [gather_agent(obs_all, agent_index), prev_action_feat] + ([] if self.discrete else [action])
        e = [self.f_local(torch.cat(parts, -1))]
        if self.use_gat:
            e.append(self.gat(obs_all, agent_index))
        q = self.f_agg(torch.cat(e, -1))
        return q if self.discrete else q.squeeze(-1)


class SITAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Shared actor and GAT critic of one agent type, plus the frozen target critic (built and
    synced by the learner through RLlib's ``TargetNetworkAPI``).

    ``model_config``: the recurrent agent's (obs_dim, discrete, n_actions, act_dim, action_low,
    action_high, rnn_hidden) + n_agents, critic_hidden, use_gat. EnvRunners build only the actor.
    """

    target_networks = ("critic",)

    def setup_learner(self) -> None:
        mc = self.model_config
        self.critic = GATCritic(mc["obs_dim"], self.n_actions, self.act_dim, self.discrete,
                                mc["critic_hidden"], mc["use_gat"])

    def get_non_inference_attributes(self):
        return ["critic", "target_critic"]

    def sync_target_critic(self) -> None:
        self.target_critic.load_state_dict(self.critic.state_dict())

    def _forward_train(self, batch, **kwargs):
        """Q(τ_i, a_i, o_{-i}) at the data's a^t, the target critic's Q at t+1 with the data's
        a^{t+1} (Eq. 9's in-sample target), log π(a^t | τ_i) (Eq. 10) and the policy's entropy."""
        obs_all, idx = batch[K.OBS_ALL], batch[K.AGENT_INDEX].long()
        L = batch[K.FILLED].shape[1]
        prev_feat = self.prev_action_feat(batch[K.PREV_ACTIONS])  # [B, L+1, A]
        own, prev, avail = self.own_trajectory(batch)
        acts = batch[K.ACTIONS]
        logp, entropy = self.log_prob_and_entropy(own, prev, acts, avail)
        if self.discrete:
            q_taken = self.critic(obs_all[:, :L], idx, prev_feat[:, :L]).gather(
                -1, acts.long().unsqueeze(-1)).squeeze(-1)
            with torch.no_grad():
                q_next = self.target_critic(obs_all[:, 1:L + 1], idx, prev_feat[:, 1:L + 1]).gather(
                    -1, batch[K.NEXT_ACTIONS].long().unsqueeze(-1)).squeeze(-1)
        else:
            q_taken = self.critic(obs_all[:, :L], idx, prev_feat[:, :L], self.action_input(acts))
            with torch.no_grad():
                q_next = self.target_critic(obs_all[:, 1:L + 1], idx, prev_feat[:, 1:L + 1],
                                            self.action_input(batch[K.NEXT_ACTIONS]))
        return {K.Q_TAKEN: q_taken, K.Q_NEXT_TARGET: q_next, K.LOGP: logp, K.ENTROPY: entropy}
