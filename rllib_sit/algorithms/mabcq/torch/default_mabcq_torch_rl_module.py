"""MABCQ's networks as RLModules: one agent module per agent type (mixed by the shared
``StateLinearMixer`` module, ``rllib_sit.models.mixers.MixerTorchRLModule``).

* **Discrete** (:class:`MABCQDiscreteAgentTorchRLModule`): the base's ``GRUActor`` with raw outputs
  is the recurrent Q-network Q_i(τ_i, ·) (``actor``; target copy ``target_actor``), a second
  ``GRUActor`` is the behaviour model μ_i (``behaviour``, logits masked to the available actions).
  Eq. 12's max runs over the actions that pass :func:`bcq_action_filter`, in the TD target *and*
  when acting greedily on the EnvRunners, so ``behaviour`` is part of the inference module (and of
  the exported policy: :func:`bcq_act_step` is the acting rule of both).
* **Continuous** (:class:`MABCQContinuousAgentTorchRLModule`, this package's design, see
  docs/algorithms/mabcq.md): BCQ's conditional VAE and perturbation model ξ per agent type,
  conditioned on the agent's step input x^t = (o_i^t, a_i^{t-1}), and a recurrent Q_i(τ_i, a_i)
  (GRU over τ_i, then an MLP head on [h^t, a]). The max of Eq. 12 runs over n actions sampled from
  the VAE and perturbed by ξ.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_sit.algorithms.mabcq import mabcq_learner as N
from rllib_sit.models.blocks import mlp
from rllib_sit.models.discrete import bcq_action_filter, bcq_filtered_logits, masked_argmax
from rllib_sit.models.gru_actor import GRUActor
from rllib_sit.models.recurrent_q import RecurrentActionValue
from rllib_sit.models.recurrent_agent import (RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent,
                                              split_env_obs)
from rllib_sit.replay import keys as K


# ---------------------------------------------------------------------------------------------
# Eq. 12's action filter (discrete BCQ) when acting: the one rule of the module and of its export
# ---------------------------------------------------------------------------------------------

def bcq_act_step(actor: GRUActor, behaviour: GRUActor, zeta: float, obs: torch.Tensor, prev_action: torch.Tensor,
                 h: torch.Tensor, h_mu: torch.Tensor, avail: Optional[torch.Tensor]):
    """One acting step of a discrete MABCQ agent: ``(logits [B, A], h', h_mu')``, the logits being
    Q_i(τ_i, ·) with every action that fails :func:`bcq_action_filter` under μ_i (and every
    unavailable one) at ``MASKED_LOGIT``. Greedy = their arg max, sampled = a draw from their
    softmax. Used by the RLlib module's ``_act`` and traced by its export (:class:`MABCQActStep`)."""
    q, h = actor.step(obs, prev_action, h)
    mu_logits, h_mu = behaviour.step(obs, prev_action, h_mu, avail)
    return bcq_filtered_logits(q, mu_logits, avail, zeta), h, h_mu


class MABCQActStep(nn.Module):
    """The exported step of a discrete MABCQ agent (``rllib_sit.export``): ``(obs, prev_action, h,
    action_mask) -> (filtered logits, h_out)`` by :func:`bcq_act_step`, the two GRU states carried as
    one vector ``h = [h ⊕ h_mu]`` (``hidden`` = the two widths; ``h_parts`` names them)."""

    def __init__(self, actor: GRUActor, behaviour: GRUActor, zeta: float):
        super().__init__()
        self.actor, self.behaviour, self.zeta = actor, behaviour, float(zeta)
        self.obs_dim, self.n_actions, self.act_dim = actor.obs_dim, actor.n_actions, 0
        self.hidden = actor.hidden + behaviour.hidden
        self.h_parts = (("h", actor.hidden), ("h_mu", behaviour.hidden))

    def forward(self, obs, prev_action, h, action_mask):
        H = self.actor.hidden
        logits, h_q, h_mu = bcq_act_step(self.actor, self.behaviour, self.zeta, obs, prev_action, h[:, :H], h[:, H:],
                                         action_mask)
        return logits, torch.cat([h_q, h_mu], -1)


# ---------------------------------------------------------------------------------------------
# Discrete: recurrent Q-network + recurrent behaviour model
# ---------------------------------------------------------------------------------------------

class MABCQDiscreteAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Q_i(τ_i, ·) (``actor``: the base's ``GRUActor`` called without a mask), its target
    ``target_actor`` (learner-only, built and synced by the learner) and the behaviour model μ_i
    (``behaviour``, a ``GRUActor``; on the EnvRunners too, for the filtered greedy action).

    ``model_config``: the recurrent agent's + ``zeta`` (ζ) and ``double_q``.
    """

    target_networks = ("actor",)

    def setup_learner(self) -> None:
        mc = self.model_config
        self.behaviour = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"])
        self.zeta = float(mc["zeta"])
        self.double_q = bool(mc.get("double_q", True))

    def get_non_inference_attributes(self) -> List[str]:
        return ["target_actor"]  # `behaviour` stays: greedy acting filters with it

    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        """Q_i(τ^t, a^t), μ_i(a^t | τ^t) and Eq. 12's target-side value at t+1, all on one unroll
        over t = 0..L: a* = arg max over the filtered actions at τ^{t+1} of the online Q (double
        Q; the target Q with ``double_q=False``), valued by the target Q."""
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L + 1]
        prev = batch[K.PREV_ACTIONS][:, :L + 1]
        avail = batch.get(K.AVAIL_ACTIONS)
        avail = None if avail is None else avail[:, :L + 1]
        acts = batch[K.ACTIONS].long().unsqueeze(-1)
        q = self.actor(own, prev)  # [B, L+1, A], raw values
        mu_logits = self.behaviour(own, prev, avail)  # masked to the available actions
        logp = torch.log_softmax(mu_logits[:, :L], -1).gather(-1, acts).squeeze(-1)
        with torch.no_grad():
            target_q = self.target_actor(own, prev)
            allowed = bcq_action_filter(mu_logits[:, 1:], None if avail is None else avail[:, 1:], self.zeta)
            a_star = masked_argmax((q if self.double_q else target_q)[:, 1:], allowed)
            q_next = target_q[:, 1:].gather(-1, a_star.unsqueeze(-1)).squeeze(-1)
            match = (mu_logits[:, :L].argmax(-1) == acts.squeeze(-1)).float()
        return {K.Q_TAKEN: q[:, :L].gather(-1, acts).squeeze(-1), K.Q_NEXT_TARGET: q_next, K.LOGP: logp,
                N.ALLOWED_NEXT: allowed.float(), N.NEXT_ACTION: a_star, N.BEHAVIOUR_MATCH: match}

    # -- acting on the EnvRunners ----------------------------------------------------------------
    def get_initial_state(self) -> Any:
        h = torch.zeros(self.actor.hidden)
        return {"h": h, "h_mu": h.clone(), "prev_action": torch.tensor(-1, dtype=torch.long)}

    def _act(self, batch, explore: bool) -> Dict[str, Any]:
        """Greedy: arg max of Q_i over the actions that pass :func:`bcq_action_filter` under μ_i
        (the same filter as the TD target). ``explore``: a sample of softmax(Q_i) over them. Both
        from :func:`bcq_act_step`'s logits, which the exported policy computes too."""
        o, avail, time_rank = split_env_obs(batch)
        state = batch[Columns.STATE_IN]
        logits, h, h_mu = bcq_act_step(self.actor, self.behaviour, self.zeta, o, state["prev_action"], state["h"],
                                       state["h_mu"], avail)
        a = torch.distributions.Categorical(logits=logits).sample() if explore else logits.argmax(-1)
        return {Columns.ACTIONS: a.unsqueeze(1) if time_rank else a,
                Columns.STATE_OUT: {"h": h, "h_mu": h_mu, "prev_action": a}}

    def export_step(self) -> nn.Module:
        """The exported step: the filtered logits of :func:`bcq_act_step`, state ``[h ⊕ h_mu]``."""
        return MABCQActStep(self.actor, self.behaviour, self.zeta)


# ---------------------------------------------------------------------------------------------
# Continuous: recurrent Q(τ, a) + BCQ's VAE and perturbation model
# ---------------------------------------------------------------------------------------------

class VAEEncoder(nn.Module):
    """BCQ's encoder: ``(x, a) -> (mean, std)`` of z, log-std clamped to [−4, 15] as in BCQ."""

    def __init__(self, in_dim: int, act_dim: int, latent: int, hidden: int):
        super().__init__()
        self.latent = latent
        self.net = mlp(in_dim + act_dim, [hidden, hidden], 2 * latent)

    def forward(self, x: torch.Tensor, a: torch.Tensor):
        mean, log_std = self.net(torch.cat([x, a], -1)).split(self.latent, -1)
        return mean, log_std.clamp(-4.0, 15.0).exp()


class VAEDecoder(nn.Module):
    """BCQ's decoder: ``(x, z) -> a = tanh(MLP([x, z]))`` in [-1, 1]."""

    def __init__(self, in_dim: int, act_dim: int, latent: int, hidden: int):
        super().__init__()
        self.latent = latent
        self.net = mlp(in_dim + latent, [hidden, hidden], act_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(torch.cat([x, z], -1)))


class Perturbation(nn.Module):
    """BCQ's perturbation model: ``ã = clip(a + Φ·tanh(MLP([x, a])), −1, 1)``, |ξ| ≤ Φ (units of [-1, 1])."""

    def __init__(self, in_dim: int, act_dim: int, hidden: int, phi: float):
        super().__init__()
        self.phi = float(phi)
        self.net = mlp(in_dim + act_dim, [hidden, hidden], act_dim)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return (a + self.phi * torch.tanh(self.net(torch.cat([x, a], -1)))).clamp(-1.0, 1.0)


class MABCQContinuousAgentTorchRLModule(TargetNetworksMixin, TorchRLModule, InferenceOnlyAPI):
    """Continuous MABCQ agent of one type: ``q`` (+ ``target_q``), ``vae_encoder``/``vae_decoder``,
    ``perturb`` (+ ``target_perturb``). Actions inside the networks are scaled to [-1, 1].

    ``model_config``: obs_dim, act_dim, action_low, action_high, rnn_hidden, vae_hidden,
    vae_latent_dim (None: 2·act_dim, BCQ), perturb_hidden, perturbation_scale (Φ),
    num_sampled_actions (n).
    """

    target_networks = ("q", "perturb")

    def setup(self):
        mc = self.model_config
        self.discrete = False
        self.act_dim = int(mc["act_dim"])
        self.low, self.high = float(mc.get("action_low", -1.0)), float(mc.get("action_high", 1.0))
        self.num_samples = int(mc["num_sampled_actions"])
        latent = int(mc.get("vae_latent_dim") or 2 * self.act_dim)
        in_dim = int(mc["obs_dim"]) + self.act_dim
        self.q = RecurrentActionValue(in_dim, self.act_dim, int(mc["rnn_hidden"]))
        self.vae_encoder = VAEEncoder(in_dim, self.act_dim, latent, int(mc["vae_hidden"]))
        self.vae_decoder = VAEDecoder(in_dim, self.act_dim, latent, int(mc["vae_hidden"]))
        self.perturb = Perturbation(in_dim, self.act_dim, int(mc["perturb_hidden"]), float(mc["perturbation_scale"]))

    def get_non_inference_attributes(self) -> List[str]:
        return ["vae_encoder", "target_q", "target_perturb"]

    # -- helpers ---------------------------------------------------------------------------------
    def unit(self, a: torch.Tensor) -> torch.Tensor:
        """Box actions -> [-1, 1]."""
        return 2.0 * (a - self.low) / (self.high - self.low) - 1.0

    def box(self, u: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> box actions."""
        return self.low + (u + 1.0) * 0.5 * (self.high - self.low)

    def sample_latent(self, lead, like: torch.Tensor) -> torch.Tensor:
        """BCQ's decoder prior sample: z ~ N(0, 1) clipped to [−0.5, 0.5], shape ``[*lead, latent]``."""
        return torch.randn(*lead, self.vae_decoder.latent, device=like.device).clamp(-0.5, 0.5)

    def candidates(self, x: torch.Tensor, perturb: nn.Module) -> torch.Tensor:
        """n actions per step input: a^{[j]} ~ VAE decoder(x), ã^{[j]} = ξ(x, a^{[j]}) -> ``[.., n, A]``."""
        xs = x.unsqueeze(-2).expand(*x.shape[:-1], self.num_samples, x.shape[-1])
        with torch.no_grad():
            a = self.vae_decoder(xs, self.sample_latent(xs.shape[:-1], x))
        return perturb(xs, a)

    def best_candidate(self, q: RecurrentActionValue, h: torch.Tensor, cand: torch.Tensor):
        """Eq. 12's max over the candidates: ``h [.., H]``, ``cand [.., n, A]`` -> (value [..], action [.., A])."""
        values = q.value(h.unsqueeze(-2).expand(*cand.shape[:-1], h.shape[-1]), cand)
        best = values.argmax(-1, keepdim=True)
        action = cand.gather(-2, best.unsqueeze(-1).expand(*best.shape, cand.shape[-1])).squeeze(-2)
        return values.gather(-1, best).squeeze(-1), action

    def _step_inputs(self, batch) -> torch.Tensor:
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L + 1]
        return torch.cat([own, self.unit(batch[K.PREV_ACTIONS][:, :L + 1])], -1)  # [B, L+1, in]

    # -- training --------------------------------------------------------------------------------
    def _forward_train(self, batch, **kwargs) -> Dict[str, Any]:
        """Q_i(τ^t, a^t); the VAE's reconstruction of a^t; Q_i(τ^t, ξ(x^t, a)) with a ~ VAE (the
        perturbation objective, BCQ); and Eq. 12's target-side value at t+1: the best of n
        VAE-sampled actions perturbed by the target ξ, valued by the target Q."""
        L = batch[K.FILLED].shape[1]
        x = self._step_inputs(batch)
        h = self.q.trunk(x)
        acts = self.unit(batch[K.ACTIONS])
        mean, std = self.vae_encoder(x[:, :L], acts)
        recon = self.vae_decoder(x[:, :L], mean + std * torch.randn_like(std))
        with torch.no_grad():
            sampled = self.vae_decoder(x[:, :L], self.sample_latent(x[:, :L].shape[:-1], x))
        q_perturbed = self.q.value(h[:, :L].detach(), self.perturb(x[:, :L], sampled))
        with torch.no_grad():
            cand = self.candidates(x[:, 1:], self.target_perturb)
            q_next, a_next = self.best_candidate(self.target_q, self.target_q.trunk(x)[:, 1:], cand)
        return {K.Q_TAKEN: self.q.value(h[:, :L], acts), K.Q_NEXT_TARGET: q_next, N.NEXT_ACTION: a_next,
                N.Q_PERTURBED: q_perturbed, N.VAE_RECON: recon, N.VAE_MEAN: mean, N.VAE_STD: std,
                N.ACTIONS_UNIT: acts}

    # -- acting on the EnvRunners ----------------------------------------------------------------
    def get_initial_state(self) -> Any:
        return {"h": torch.zeros(self.q.hidden), "prev_action": torch.zeros(self.act_dim)}

    def _act(self, batch, explore: bool) -> Dict[str, Any]:
        """BCQ's action selection: n VAE samples perturbed by ξ, the one with the highest Q_i
        (``explore``: one of the n at random). Output in [-1, 1] (RLlib maps it onto the box)."""
        o, _, time_rank = split_env_obs(batch)
        state = batch[Columns.STATE_IN]
        x = torch.cat([o, self.unit(state["prev_action"])], -1)
        h = self.q.step(x, state["h"])
        cand = self.candidates(x, self.perturb)  # [B, n, A]
        if explore:
            pick = torch.randint(0, self.num_samples, (cand.shape[0],), device=cand.device)
            a = cand[torch.arange(cand.shape[0], device=cand.device), pick]
        else:
            a = self.best_candidate(self.q, h, cand)[1]
        return {Columns.ACTIONS: a.unsqueeze(1) if time_rank else a,
                Columns.STATE_OUT: {"h": h, "prev_action": self.box(a)}}

    def _forward_inference(self, batch, **kwargs):
        return self._act(batch, explore=False)

    def _forward_exploration(self, batch, **kwargs):
        return self._act(batch, explore=True)

    def _forward(self, batch, **kwargs):
        return self._act(batch, explore=False)
