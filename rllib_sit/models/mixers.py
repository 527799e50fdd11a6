"""Value-mixing networks (no algorithm logic): state-conditioned monotonic mixers of per-agent values.

* :class:`MonotonicHyperWeights` — non-negative weights ``w(s) [.., N]`` and a bias ``b(s)``
  (also SIT's E.1 "monotonic decomposition" ablation).
* :class:`StateLinearMixer` — ``Q_tot = Σ_i w_i(s) Q_i + b(s)``, ``w ≥ 0``: the value
  decomposition of ICQ that the SIT paper uses for MABCQ, MACQL and ICQ (∂Q_tot/∂Q_i = w_i(s)).
* :class:`QMixer` — QMIX's two-layer hypernetwork mixer (Rashid et al. 2018): monotonic, non-linear.
* :class:`MixerTorchRLModule` — a learner-only RLModule holding one of them and its target copy
  (RLlib's ``TargetNetworkAPI``), for the joint-loss path of the algorithm base.
"""

from __future__ import annotations

from typing import Any, Dict

import torch
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_sit.models.recurrent_agent import TargetNetworksMixin


class MonotonicHyperWeights(nn.Module):
    """State-conditioned non-negative weights ``w(s) [.., N]`` and bias ``b(s) [..]`` (Rashid et al. 2018).

    ``r_tot ≈ Σ_i w_i(s) r_i + b(s)`` is monotonic in every ``r_i`` because ``w = |hyper(s)|``.
    """

    def __init__(self, state_dim: int, n_agents: int, hidden: int):
        super().__init__()
        self.hyper_w = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_agents))
        self.hyper_b = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state: torch.Tensor):
        return torch.abs(self.hyper_w(state)), self.hyper_b(state).squeeze(-1)


class StateLinearMixer(nn.Module):
    """``Q_tot(s, Q) = Σ_i w_i(s) Q_i + b(s)`` with ``w_i(s) = |hyper_w(s)_i| ≥ 0`` (ICQ's mixer)."""

    def __init__(self, state_dim: int, n_agents: int, hidden: int = 64):
        super().__init__()
        self.hyper = MonotonicHyperWeights(state_dim, n_agents, hidden)

    def weights(self, state: torch.Tensor):
        """``(w [.., N], b [..])``: ∂Q_tot/∂Q_i = w_i(s)."""
        return self.hyper(state)

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``agent_qs [.., N]``, ``state [.., S]`` -> ``Q_tot [..]``."""
        w, b = self.hyper(state)
        return (w * agent_qs).sum(-1) + b


class QMixer(nn.Module):
    """QMIX: ``Q_tot = w_2(s)ᵀ ELU(W_1(s) Q + b_1(s)) + V(s)`` with ``W_1, w_2 = |hyper(s)|``.

    pymarl's defaults: mixing embed 32, hypernetwork hidden 64 (two-layer hypernetworks).
    """

    def __init__(self, state_dim: int, n_agents: int, embed: int = 32, hyper_hidden: int = 64):
        super().__init__()
        self.n_agents, self.embed = n_agents, embed
        self.hyper_w1 = nn.Sequential(nn.Linear(state_dim, hyper_hidden), nn.ReLU(),
                                      nn.Linear(hyper_hidden, embed * n_agents))
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hyper_hidden), nn.ReLU(), nn.Linear(hyper_hidden, embed))
        self.v = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``agent_qs [.., N]``, ``state [.., S]`` -> ``Q_tot [..]``."""
        lead = agent_qs.shape[:-1]
        q = agent_qs.reshape(-1, 1, self.n_agents)
        s = state.reshape(-1, state.shape[-1])
        w1 = torch.abs(self.hyper_w1(s)).view(-1, self.n_agents, self.embed)
        hidden = nn.functional.elu(torch.bmm(q, w1) + self.hyper_b1(s).unsqueeze(1))  # [n, 1, E]
        w2 = torch.abs(self.hyper_w2(s)).view(-1, self.embed, 1)
        out = torch.bmm(hidden, w2).view(-1) + self.v(s).view(-1)
        return out.view(lead)


MIXERS = {"linear": StateLinearMixer, "qmix": QMixer}


def build_mixer(kind: str, state_dim: int, n_agents: int, **kwargs) -> nn.Module:
    if kind not in MIXERS:
        raise ValueError(f"mixer={kind!r} is invalid; expected one of {sorted(MIXERS)}")
    return MIXERS[kind](state_dim, n_agents, **kwargs)


class MixerTorchRLModule(TargetNetworksMixin, TorchRLModule):
    """A learner-only module: ``self.mixer`` (``model_config``: ``mixer`` kind, ``state_dim``,
    ``n_agents``, ``mixer_kwargs``) and ``self.target_mixer`` (built and synced by the learner).

    Its ``_forward_train`` returns nothing: joint losses call :meth:`mix` / :meth:`mix_target`
    with the agents' values they stacked (``rllib_sit.algorithms.common.joint.stack_agents``).
    """

    target_networks = ("mixer",)

    def setup(self):
        mc = self.model_config
        self.mixer = build_mixer(mc["mixer"], mc["state_dim"], mc["n_agents"], **dict(mc.get("mixer_kwargs") or {}))

    def mix(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.mixer(agent_qs, state)

    def mix_target(self, agent_qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.target_mixer(agent_qs, state)

    def weights(self, state: torch.Tensor):
        """``(w(s) [.., N], b(s) [..])`` of a linear mixer (``StateLinearMixer``): ∂Q_tot/∂Q_i = w_i(s)."""
        if not hasattr(self.mixer, "weights"):
            raise TypeError(f"{type(self.mixer).__name__} is not linear in the agents' values: it has no weights(state)")
        return self.mixer.weights(state)

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        return {}

    def _forward(self, batch, **kwargs) -> Dict[str, Any]:
        return {}
