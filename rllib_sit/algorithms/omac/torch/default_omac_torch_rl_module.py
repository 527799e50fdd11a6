"""OMAC's networks: per-type agent modules (policy π_i, local Q_i, local V_i, target Q̄_i, all
recurrent on τ_i) and the learner-only coupled-credit-assignment mixer (w^v, w^q, V_share).

* **Discrete** (SMAC, MPE): Q_i(τ_i, ·) is a ``GRUActor`` with raw outputs (one value per action),
  V_i(τ_i) a ``GRUActor`` with one output, π_i the base's masked ``GRUActor``.
* **Continuous** (MAMuJoCo; this package's design, docs/algorithms/omac.md): Q_i(τ_i, a_i) is a
  GRU trunk over τ_i and an MLP head on [h^t ; a_i] (:class:`RecurrentActionValue`, actions scaled
  to [-1, 1]), V_i(τ_i) a GRU with one output (:class:`RecurrentStateValue`), π_i the base's
  tanh-Gaussian ``GaussianGRUActor``. w^q sees the joint action scaled to [-1, 1].
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_sit.models.gru_actor import GRUActor
from rllib_sit.models.recurrent_q import RecurrentActionValue
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent
from rllib_sit.replay import keys as K

Q_ALL = "q_all"                # Q_i(τ_i^t, ·) [R, L, A] (discrete only)
Q_TARGET_TAKEN = "q_target_taken"  # Q̄_i(τ_i^t, a_i^t) [R, L]
V = "v"                        # V_i(τ_i^t), t = 0..L [R, L+1]
W_V = "w_v"                    # w^v_i(o^t), t = 0..L [B, L+1, N]
W_Q = "w_q"                    # w^q_i(o^t, a^t) [B, L, N]
V_SHARE = "v_share"            # V_share(o^t), t = 0..L [B, L+1]


def unit_actions(actions: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Box actions in ``[low, high]`` -> [-1, 1] (the networks' continuous action input)."""
    return 2.0 * (actions - low) / (high - low) - 1.0


class RecurrentStateValue(nn.Module):
    """Continuous V_i(τ_i^t): ``fc -> ReLU -> GRU -> fc -> 1`` on (o^t, a^{t-1} in [-1, 1])."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.fc_in = nn.Linear(obs_dim + act_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.fc_out = nn.Linear(hidden, 1)

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        """``obs [B, T, od]``, ``prev_actions [B, T, A]`` (in [-1, 1]) -> V ``[B, T]``."""
        x = torch.relu(self.fc_in(torch.cat([obs, prev_actions], -1)))
        out, _ = self.gru(x, x.new_zeros(1, x.shape[0], self.hidden))
        return self.fc_out(out).squeeze(-1)


class OMACAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """π_i is the recurrent actor the base acts with; Q_i and V_i share its input τ_i = (o_i^t, a_i^{t-1})."""

    target_networks = ("q",)

    def setup_learner(self) -> None:
        mc = self.model_config
        if self.discrete:
            self.q = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"])
            self.v = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"], out_dim=1)
        else:  # head width = the GRU width (Table 2's hidden dimension 256 for the local value networks)
            self.q = RecurrentActionValue(mc["obs_dim"] + self.act_dim, self.act_dim, mc["rnn_hidden"], mc["rnn_hidden"])
            self.v = RecurrentStateValue(mc["obs_dim"], self.act_dim, mc["rnn_hidden"])

    def get_non_inference_attributes(self):
        return ["q", "v", "target_q"]

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        """Q_i(τ^t, a^t) (grad), Q̄_i(τ^t, a^t) (no grad) at the dataset's actions, V_i(τ^t) for
        t = 0..L (V_tot(o′) needs t + 1), log π_i(a^t | τ^t) of the dataset's actions and the policy's
        entropy (a diagnostic)."""
        if not self.discrete:
            return self._forward_train_continuous(batch)
        L = batch[K.FILLED].shape[1]
        own, prev, avail = self.own_trajectory(batch)
        own_all = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])  # [R, L+1, od]
        acts = batch[K.ACTIONS].long()
        q_all = self.q(own, prev)
        with torch.no_grad():
            q_target = self.target_q(own, prev).gather(-1, acts.unsqueeze(-1)).squeeze(-1)
        logp, entropy = self.log_prob_and_entropy(own, prev, acts, avail)
        return {Q_ALL: q_all, K.Q_TAKEN: q_all.gather(-1, acts.unsqueeze(-1)).squeeze(-1), Q_TARGET_TAKEN: q_target,
                V: self.v(own_all[:, :L + 1], batch[K.PREV_ACTIONS]).squeeze(-1), K.LOGP: logp, K.ENTROPY: entropy}

    def _forward_train_continuous(self, batch) -> Dict[str, Any]:
        L = batch[K.FILLED].shape[1]
        own_all = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L + 1]  # [R, L+1, od]
        prev_all = self.action_input(batch[K.PREV_ACTIONS][:, :L + 1])  # [R, L+1, A] in [-1, 1]
        acts = batch[K.ACTIONS]
        a_in = self.action_input(acts)
        q_taken = self.q.value(self.q.trunk(own_all[:, :L], prev_all[:, :L]), a_in)
        with torch.no_grad():
            q_target = self.target_q.value(self.target_q.trunk(own_all[:, :L], prev_all[:, :L]), a_in)
        logp, entropy = self.log_prob_and_entropy(own_all[:, :L], batch[K.PREV_ACTIONS][:, :L], acts)
        return {K.Q_TAKEN: q_taken, Q_TARGET_TAKEN: q_target, V: self.v(own_all, prev_all), K.LOGP: logp,
                K.ENTROPY: entropy}


class CCAMixerTorchRLModule(TorchRLModule):
    """Eq. 3: h_v = f_v1(o), h_q = f_q1(o, a), w^v = |f_v2(h_v)|, w^q = |f_q2([h_v; h_q])|, and V_share(o).

    o is the joint observation (every agent's o_i concatenated), a the joint action: one-hot per
    agent (discrete) or every agent's box action scaled to [-1, 1] (continuous), concatenated.
    """

    def setup(self):
        mc = self.model_config
        n, od, h = mc["n_agents"], mc["obs_dim"], mc["cca_hidden"]
        self.n_agents, self.discrete = n, bool(mc.get("discrete", True))
        self.n_actions, self.act_dim = int(mc.get("n_actions") or 0), int(mc.get("act_dim") or 0)
        self.low, self.high = float(mc.get("action_low", -1.0)), float(mc.get("action_high", 1.0))
        a_dim = self.n_actions if self.discrete else self.act_dim
        self.f_v1 = nn.Sequential(nn.Linear(n * od, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.f_v2 = nn.Linear(h, n)
        self.f_q1 = nn.Sequential(nn.Linear(n * od + n * a_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.f_q2 = nn.Linear(2 * h, n)
        hv = mc["hidden"]
        self.v_share = nn.Sequential(nn.Linear(n * od, hv), nn.ReLU(), nn.Linear(hv, hv), nn.ReLU(), nn.Linear(hv, 1))

    def action_features(self, actions: torch.Tensor) -> torch.Tensor:
        """Joint actions ``[.., N]`` (discrete) / ``[.., N, A]`` (continuous, box) -> ``[.., N·a_dim]``."""
        if self.discrete:
            a = nn.functional.one_hot(actions.long().clamp(min=0), self.n_actions).float()
        else:
            a = unit_actions(actions.float(), self.low, self.high)
        return a.flatten(-2)

    def weights(self, obs: torch.Tensor, actions: torch.Tensor):
        """``obs [.., N, od]``, ``actions [.., N(, A)]`` -> (w^v [.., N], w^q [.., N], V_share [..])."""
        o = obs.flatten(-2)
        h_v = self.f_v1(o)
        h_q = self.f_q1(torch.cat([o, self.action_features(actions)], -1))
        return (torch.abs(self.f_v2(h_v)), torch.abs(self.f_q2(torch.cat([h_v, h_q], -1))),
                self.v_share(o).squeeze(-1))

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        obs, acts = batch[K.OBS], batch[K.ACTIONS]  # [B, L+1, N, od], [B, L, N(, A)]
        L = acts.shape[1]
        w_v = torch.abs(self.f_v2(self.f_v1(obs.flatten(-2))))
        _, w_q, _ = self.weights(obs[:, :L], acts)
        return {W_V: w_v, W_Q: w_q, V_SHARE: self.v_share(obs.flatten(-2)).squeeze(-1)}

    def _forward(self, batch, **kwargs) -> Dict[str, Any]:
        return {}
