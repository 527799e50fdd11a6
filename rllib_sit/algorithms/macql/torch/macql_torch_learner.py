"""MACQL's losses (SIT paper, Appendix B, Eq. 13; CQL, Kumar et al. 2020) and the TorchLearner.

Value decomposition (the SIT paper follows ICQ): Q_tot(s, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s),
w_i(s) ≥ 0 (:class:`~rllib_sit.models.mixers.StateLinearMixer`). Eq. 13 trains the agents' Q
networks and the mixer jointly on

    L = β_CQL · E[ conservative penalty ] + ½ · E[(y − Q_tot(s, a_data))²].

Every expectation is a mean over the **real** steps of the batch (``filled`` = 1), and every
logsumexp over discrete actions runs over the **available** actions only.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, JointView
from rllib_sit.algorithms.common.losses import masked_mean
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.macql.macql_learner import (
    ACTOR_LOSS, ALPHA, CQL_PENALTY, DATA_ACTION_GAP, ENTROPY, GREEDY_ACCURACY, LOG_PROPOSAL, LOGP_NEXT,
    LOGP_PI, LOSS, MIXER_WEIGHTS, PER_AGENT, Q_ALL, Q_ALL_TARGET, Q_PI, Q_SAMPLES,
    Q_TOT_MEAN, TARGET_MEAN, TD_LOSS)
from rllib_sit.replay import keys as K

NEG_INF = float("-inf")


# -- helpers ---------------------------------------------------------------------------------------

def safe_avail(avail: torch.Tensor) -> torch.Tensor:
    """Availability masks with all-zero rows (padded steps) replaced by all-ones, so that a
    logsumexp / arg max / sample over them stays finite; the losses mask those steps out."""
    none = (avail > 0).sum(-1, keepdim=True) == 0
    return torch.where(none, torch.ones_like(avail), (avail > 0).to(avail.dtype))


def masked_logsumexp(values: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """log Σ_{a available} exp(values[..., a]); unavailable entries never enter (nor get gradient)."""
    return torch.logsumexp(values.masked_fill(safe_avail(avail) <= 0, NEG_INF), -1)


def greedy_available(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """arg max_a over the available actions of ``q [..., A]`` -> ``[...]`` (int64)."""
    return q.masked_fill(safe_avail(avail) <= 0, NEG_INF).argmax(-1)


def sample_available_uniform(avail: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` actions per position drawn uniformly (with replacement) from the available ones:
    ``avail [..., A]`` -> ``[..., n]`` (int64). Unavailable actions have probability 0."""
    probs = safe_avail(avail).reshape(-1, avail.shape[-1]).float()
    idx = torch.multinomial(probs, n, replacement=True, generator=generator)
    return idx.reshape(*avail.shape[:-1], n)


# -- Eq. 13 ------------------------------------------------------------------------------------------

def td_targets(reward: torch.Tensor, terminated: torch.Tensor, q_tot_next_target: torch.Tensor,
               gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) Q'_tot(s', a') ``[B, L]`` (one-step; Eq. 13's y_CQL, see the doc)."""
    return reward + gamma * (1.0 - terminated) * q_tot_next_target


def td_loss(q_tot: torch.Tensor, y: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Eq. 13, second line: ½ E[(y − Q_tot(s, a_data))²] over the real steps (y is not differentiated)."""
    return 0.5 * masked_mean((y.detach() - q_tot) ** 2, filled)


def per_agent_cql_penalty(q_all: torch.Tensor, actions: torch.Tensor, avail: torch.Tensor, scale: torch.Tensor,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13's penalty, per agent, exact over discrete actions: per step ``[B, L]``

        Σ_i [ log Σ_{a_i ∈ A_i(s)} exp(c_i Q_i(τ_i, a_i)) − c_i Q_i(τ_i, a_i^data) ]   (+ (N − 1)·b(s))

    ``q_all [B, L, N, A]``, ``actions [B, L, N]``, ``avail [B, L, N, A]``, ``scale`` c ``[B, L, N]``
    (the mixer weights w_i(s) as Eq. 13 writes, or ones). Each agent's term is Eq. 13's
    log Σ exp(w_i Q_i + b) minus its share w_i Q_i(a_data) + b of the mixed data value, so b(s)
    cancels. With ``bias`` b(s) ``[B, L]`` the literal Eq. 13 is returned instead,
    Σ_i log Σ_{a_i} exp(w_i Q_i + b) − Q_tot(s, a_data), which counts b(s) N times against once:
    (N − 1)·b(s) more (see the doc for why that is not the default).
    """
    lse = masked_logsumexp(scale.unsqueeze(-1) * q_all, avail)  # [B, L, N]
    data = scale * q_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    out = (lse - data).sum(-1)
    if bias is not None:
        out = out + (q_all.shape[2] - 1) * bias
    return out


def sampled_per_agent_cql_penalty(q_samples: torch.Tensor, log_proposal: torch.Tensor, q_data: torch.Tensor,
                                  scale: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The per-agent penalty with sampled actions (continuous; CQL(H)'s importance-sampled logsumexp):

        Σ_i [ logsumexp_k (c_i Q_i(τ_i, a_i^k) − log q(a_i^k)) − log S − c_i Q_i(τ_i, a_i^data) ]

    ``q_samples, log_proposal [B, L, N, S]`` (S samples of each agent, each with the log density of
    the proposal it came from), ``q_data, scale [B, L, N]``; ``bias``: as :func:`per_agent_cql_penalty`.
    logsumexp_k(f − log q) − log S estimates log ∫ exp f(a) da, the continuous Σ_{a_i}.
    """
    S = q_samples.shape[-1]
    lse = torch.logsumexp(scale.unsqueeze(-1) * q_samples - log_proposal, -1) - math.log(S)
    out = (lse - scale * q_data).sum(-1)
    if bias is not None:
        out = out + (q_samples.shape[2] - 1) * bias
    return out


def joint_cql_penalty(q_samples: torch.Tensor, log_proposal: torch.Tensor, q_data: torch.Tensor,
                      w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The joint variant: S sampled joint actions a^k (sample k of every agent) through the mixer,

        logsumexp_k (Q_tot(s, a^k) − Σ_i log q(a_i^k)) − log S − Q_tot(s, a_data),
        Q_tot(s, a) = Σ_i w_i(s) Q_i(τ_i, a_i) + b(s),

    per step ``[B, L]``. ``q_samples, log_proposal [B, L, N, S]``, ``q_data, w [B, L, N]``, ``b [B, L]``.
    With uniform samples over the available actions (discrete), −Σ_i log q = Σ_i log |A_i(s)| and the
    first term estimates log Σ_a exp Q_tot(s, a) over all available joint actions; the constants do
    not change the gradient.
    """
    S = q_samples.shape[-1]
    q_tot_samples = (w.unsqueeze(-1) * q_samples).sum(2) + b.unsqueeze(-1)  # [B, L, S]
    lse = torch.logsumexp(q_tot_samples - log_proposal.sum(2), -1) - math.log(S)
    return lse - ((w * q_data).sum(-1) + b)


class MACQLTorchLearner(OfflineMARLTorchLearner):
    """Joint loss over every agent module and the mixer (see the module docstring).

    Optimizers: discrete — ``"q"`` per agent module (its Q-network), ``"mixer"`` (the mixer), both
    at ``lr``; continuous — ``"critic"`` (``lr``), ``"actor"`` (``actor_lr``), ``"alpha"``
    (``alpha_lr``) per agent module and ``"mixer"`` (``lr``). Terms: ``critic`` (TD + β_CQL ·
    penalty) reaches the Q-networks/critics and the mixer; ``actor`` and ``alpha`` (continuous)
    reach only the actors and temperatures.
    """

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.mixer.parameters(), config.lr)}
        if module.discrete:
            return {"q": (module.q.parameters(), config.lr)}
        return {"critic": (module.critic.parameters(), config.lr),
                "actor": (module.actor.parameters(), config.actor_lr),
                "alpha": ([module.log_alpha], config.alpha_lr)}

    # -------------------------------------------------------------------------------------------
    def compute_joint_losses(self, *, batch, fwd_out) -> Dict[str, Tuple[torch.Tensor, list]]:
        jv = JointView(self, batch, fwd_out)
        if self.module[jv.modules[0]].unwrapped().discrete:
            return self._discrete_losses(self.config, jv)
        return self._continuous_losses(self.config, jv)

    def _penalty_bias(self, cfg, b):
        return b if cfg.cql_bias_per_agent else None

    def _discrete_losses(self, cfg, jv: JointView):
        mb, filled, L = jv.joint, jv.filled, jv.L
        q = jv.stack(Q_ALL)  # [B, L+1, N, A]
        q_target = jv.stack(Q_ALL_TARGET)
        avail = mb[K.AVAIL_ACTIONS][:, :L + 1]
        actions = mb[K.ACTIONS].long()  # [B, L, N]
        w, b = jv.mixer.weights(mb[K.STATE][:, :L])  # [B, L, N], [B, L]
        q_now = q[:, :L]
        q_data = q_now.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [B, L, N]
        q_tot = (w * q_data).sum(-1) + b
        with torch.no_grad():
            # Double Q (pymarl): a' = arg max over the available actions of the online Q at t+1.
            chooser = q[:, 1:L + 1] if cfg.double_q else q_target[:, 1:L + 1]
            a_next = greedy_available(chooser.detach(), avail[:, 1:L + 1])
            q_next = q_target[:, 1:L + 1].gather(-1, a_next.unsqueeze(-1)).squeeze(-1)
            y = td_targets(mb[K.REWARD], mb[K.TERMINATED], jv.mix_target(q_next), cfg.gamma)
        td = td_loss(q_tot, y, filled)
        avail_now = avail[:, :L]
        if cfg.cql_variant == PER_AGENT:
            scale = w if cfg.cql_agent_weights == MIXER_WEIGHTS else torch.ones_like(w)
            pen = per_agent_cql_penalty(q_now, actions, avail_now, scale, self._penalty_bias(cfg, b))
        else:
            sampled = sample_available_uniform(avail_now, cfg.cql_num_samples)  # [B, L, N, S]
            q_samples = q_now.gather(-1, sampled)
            log_q = -torch.log(safe_avail(avail_now).sum(-1, keepdim=True)).expand_as(q_samples)
            pen = joint_cql_penalty(q_samples, log_q, q_data, w, b)
        penalty = masked_mean(pen, filled)
        loss = td + cfg.cql_beta * penalty
        with torch.no_grad():
            self._log_discrete(q_now, avail_now, actions, jv.members, filled)
            self._log_joint({LOSS: loss, TD_LOSS: td, CQL_PENALTY: penalty, Q_TOT_MEAN: masked_mean(q_tot, filled),
                             TARGET_MEAN: masked_mean(y, filled)})
        return {"critic": (loss, jv.targets("q", "mixer"))}

    def _log_joint(self, values: Dict[str, torch.Tensor]) -> None:
        self.metrics.log_dict({k: float(v) for k, v in values.items()}, key=MIXER_MODULE_ID, window=1)

    def _log_discrete(self, q_now, avail_now, actions, members, filled) -> None:
        """Per module: share of real steps whose greedy action is the data's, and the mean margin
        Q_i(a_data) − max over the other available actions (> 0: data actions valued highest)."""
        av = safe_avail(avail_now) > 0
        q_data = q_now.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        others = q_now.masked_fill(~av, NEG_INF).scatter(-1, actions.unsqueeze(-1), NEG_INF).max(-1).values
        has_other = torch.isfinite(others)
        greedy = greedy_available(q_now, avail_now)
        for m, idx in members.items():
            f = filled.unsqueeze(-1).expand(-1, -1, len(idx))
            valid = (f > 0) & has_other[:, :, idx]
            gap = torch.where(valid, q_data[:, :, idx] - others[:, :, idx], torch.zeros_like(q_data[:, :, idx]))
            self.metrics.log_dict({
                GREEDY_ACCURACY: float(((greedy[:, :, idx] == actions[:, :, idx]).float() * f).sum() / f.sum()),
                DATA_ACTION_GAP: float(gap.sum() / valid.sum().clamp(min=1)),
            }, key=m, window=1)

    def _continuous_losses(self, cfg, jv: JointView):
        mb, filled, L, stack, modules = jv.joint, jv.filled, jv.L, jv.stack, jv.modules
        alpha_by_module = {m: self.module[m].unwrapped().alpha() for m in modules}
        alpha = torch.stack([alpha_by_module[m] for m in jv.agent_modules]).detach()  # [N]
        w, b = jv.mixer.weights(mb[K.STATE][:, :L])
        q_data = stack(K.Q_TAKEN)  # [B, L, N]
        q_tot = (w * q_data).sum(-1) + b
        with torch.no_grad():
            soft_next = jv.mix_target(stack(K.Q_NEXT_TARGET)) - (alpha * stack(LOGP_NEXT)).sum(-1)
            y = td_targets(mb[K.REWARD], mb[K.TERMINATED], soft_next, cfg.gamma)
        td = td_loss(q_tot, y, filled)
        q_samples, log_q = stack(Q_SAMPLES), stack(LOG_PROPOSAL)  # [B, L, N, 2n]
        if cfg.cql_variant == PER_AGENT:
            scale = w if cfg.cql_agent_weights == MIXER_WEIGHTS else torch.ones_like(w)
            pen = sampled_per_agent_cql_penalty(q_samples, log_q, q_data, scale, self._penalty_bias(cfg, b))
        else:
            pen = joint_cql_penalty(q_samples, log_q, q_data, w, b)
        penalty = masked_mean(pen, filled)
        critic_loss = td + cfg.cql_beta * penalty
        # Actor (SAC through the mixer): E[Σ_i α_i log π_i(ã_i) − Q_tot(s, ã)], only the actors move.
        logp_pi = stack(LOGP_PI)
        q_tot_pi = (w.detach() * stack(Q_PI)).sum(-1) + b.detach()
        actor_loss = masked_mean((alpha * logp_pi).sum(-1) - q_tot_pi, filled)
        # Temperature (SAC): −log α · (log π + H_target), per module over its agents' real steps.
        h_target = -float(self.module[modules[0]].unwrapped().act_dim) if cfg.target_entropy is None \
            else float(cfg.target_entropy)
        alpha_loss = 0.0
        for m, idx in jv.members.items():
            f = filled.unsqueeze(-1).expand(-1, -1, len(idx))
            lp = logp_pi[:, :, idx].detach()
            mean_lp = torch.where(f > 0, lp, torch.zeros_like(lp)).sum() / f.sum().clamp(min=1.0)
            log_alpha = self.module[m].unwrapped().log_alpha
            alpha_loss = alpha_loss - log_alpha * (mean_lp + h_target)
            self.metrics.log_dict({ALPHA: float(alpha_by_module[m].detach()), ENTROPY: float(-mean_lp)}, key=m, window=1)
        with torch.no_grad():
            self._log_joint({LOSS: critic_loss, TD_LOSS: td, CQL_PENALTY: penalty, ACTOR_LOSS: actor_loss,
                             Q_TOT_MEAN: masked_mean(q_tot, filled), TARGET_MEAN: masked_mean(y, filled)})
        return {"critic": (critic_loss, jv.targets("critic", "mixer")), "actor": (actor_loss, jv.targets("actor")),
                "alpha": (alpha_loss, jv.targets("alpha"))}
