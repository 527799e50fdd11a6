"""OMAC's networks: per-type agent modules (policy π_i, local Q_i, local V_i, target Q̄_i, all
recurrent on τ_i) and the learner-only coupled-credit-assignment mixer (w^v, w^q, V_share)."""

from __future__ import annotations

from typing import Any, Dict

import torch
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_sit.models.gru_actor import GRUActor
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin
from rllib_sit.replay import keys as K

Q_ALL = "q_all"                # Q_i(τ_i^t, ·) [R, L, A]
Q_TARGET_TAKEN = "q_target_taken"  # Q̄_i(τ_i^t, a_i^t) [R, L]
V = "v"                        # V_i(τ_i^t), t = 0..L [R, L+1]
W_V = "w_v"                    # w^v_i(o^t), t = 0..L [B, L+1, N]
W_Q = "w_q"                    # w^q_i(o^t, a^t) [B, L, N]
V_SHARE = "v_share"            # V_share(o^t), t = 0..L [B, L+1]


class OMACAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """π_i is the recurrent actor the base acts with; Q_i and V_i share its input τ_i = (o_i^t, a_i^{t-1})."""

    target_networks = ("q",)

    def setup_learner(self) -> None:
        mc = self.model_config
        self.q = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"])
        self.v = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"], out_dim=1)

    def get_non_inference_attributes(self):
        return ["q", "v", "target_q"]

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        L = batch[K.FILLED].shape[1]
        own, prev, avail = self.own_trajectory(batch)
        own_all = torch.gather(batch[K.OBS_ALL], 2, batch[K.AGENT_INDEX].long().view(-1, 1, 1, 1).expand(
            -1, L + 1, 1, batch[K.OBS_ALL].shape[-1])).squeeze(2)  # [R, L+1, od]
        acts = batch[K.ACTIONS].long()
        q_all = self.q(own, prev)
        with torch.no_grad():
            q_target = self.target_q(own, prev).gather(-1, acts.unsqueeze(-1)).squeeze(-1)
        return {Q_ALL: q_all, K.Q_TAKEN: q_all.gather(-1, acts.unsqueeze(-1)).squeeze(-1), Q_TARGET_TAKEN: q_target,
                V: self.v(own_all, batch[K.PREV_ACTIONS]).squeeze(-1),
                K.LOGP: self.log_prob(own, prev, acts, avail)}


class CCAMixerTorchRLModule(TorchRLModule):
    """Eq. 3: h_v = f_v1(o), h_q = f_q1(o, a), w^v = |f_v2(h_v)|, w^q = |f_q2([h_v; h_q])|, and V_share(o).

    o is the joint observation (every agent's o_i concatenated), a the joint action (one-hot).
    """

    def setup(self):
        mc = self.model_config
        n, od, h = mc["n_agents"], mc["obs_dim"], mc["cca_hidden"]
        self.n_agents, self.n_actions = n, mc["n_actions"]
        self.f_v1 = nn.Sequential(nn.Linear(n * od, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.f_v2 = nn.Linear(h, n)
        self.f_q1 = nn.Sequential(nn.Linear(n * od + n * self.n_actions, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.f_q2 = nn.Linear(2 * h, n)
        hv = mc["hidden"]
        self.v_share = nn.Sequential(nn.Linear(n * od, hv), nn.ReLU(), nn.Linear(hv, hv), nn.ReLU(), nn.Linear(hv, 1))

    def weights(self, obs: torch.Tensor, actions: torch.Tensor):
        """``obs [.., N, od]``, ``actions [.., N]`` -> (w^v [.., N], w^q [.., N], V_share [..])."""
        o = obs.flatten(-2)
        h_v = self.f_v1(o)
        a = nn.functional.one_hot(actions.long().clamp(min=0), self.n_actions).float().flatten(-2)
        h_q = self.f_q1(torch.cat([o, a], -1))
        return (torch.abs(self.f_v2(h_v)), torch.abs(self.f_q2(torch.cat([h_v, h_q], -1))),
                self.v_share(o).squeeze(-1))

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        obs, acts = batch[K.OBS], batch[K.ACTIONS]  # [B, L+1, N, od], [B, L, N]
        L = acts.shape[1]
        w_v = torch.abs(self.f_v2(self.f_v1(obs.flatten(-2))))
        _, w_q, _ = self.weights(obs[:, :L], acts)
        return {W_V: w_v, W_Q: w_q, V_SHARE: self.v_share(obs.flatten(-2)).squeeze(-1)}

    def _forward(self, batch, **kwargs) -> Dict[str, Any]:
        return {}
