"""ICQ's losses (SIT paper Eq. 14; ICQ paper Algorithm 2, Eq. 55–56, Theorem 3) and the
TorchLearner that optimises them on joint episodes (the base's joint-loss path).

Notation (all ``[B, L]`` per episode and step, or ``[B, L, N]`` per agent):

* critic — Q_tot(s_t, a_t) = Σ_i w_i(s_t) Q_i(τ_i^t, a_i^t) + b(s_t) (``StateLinearMixer``); target
  y_{t+1} = ρ_{t+1} Q'_tot(s_{t+1}, a_{t+1}) at the dataset's next joint action, with the implicit-
  constraint weight ρ = exp(Q'_tot/β_c) / Z, Z estimated over the mini-batch (Eq. 55–56); λ-return
  G_t = r_t + γ c_t [(1 − λ) y_{t+1} + λ G_{t+1}] (c_t = 0 at a termination or where step t+1 is not
  in the data); loss = mean over the valid steps of (Q_tot − G)² (Eq. 14, critic).
* actor — A_i = Q_i(τ_i, a_i) − Σ_a π_i(a|τ_i) Q_i(τ_i, a) (available actions; continuous: a
  sampled mean); weight ρ_i = exp(A_i/β_a) / Z_i over the mini-batch, times ∂Q_tot/∂Q_i = w_i(s);
  loss = −mean over valid (step, agent) of w_i ρ_i log π_i(a_i | τ_i) (Eq. 14, actor; Theorem 3).

Every softmax runs over the valid entries only (padded steps, steps without a successor): an
entry outside the mask gets weight 0 and does not enter any normaliser, whatever its value.
"""

from __future__ import annotations

from typing import Tuple

import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, JointView
from rllib_sit.algorithms.common.losses import bootstrap_mask, lambda_returns, masked_batch_softmax_weights
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.icq import icq_learner as N
from rllib_sit.replay import keys as K


def icq_critic_targets(reward, q_tot_next_target, terminated, filled, next_filled, *, gamma: float, lam: float,
                       beta: float, over: str = "batch") -> Tuple[torch.Tensor, torch.Tensor]:
    """The implicit-constraint λ-return target of Eq. 14 (critic) and its weights ρ.

    ``q_tot_next_target [B, L]`` = Q'_tot(s_{t+1}, a_{t+1}) (target per-agent critics and target
    mixer at the dataset's next joint action, aligned at t). ρ normalises over the steps that have
    a successor (:func:`bootstrap_mask`, times ``filled``). Returns ``(G [B, L], ρ [B, L])``, detached.
    """
    boot = bootstrap_mask(terminated, next_filled) * filled
    rho = masked_batch_softmax_weights(q_tot_next_target, boot, beta, over)
    y = torch.where(boot > 0, rho * q_tot_next_target.detach(), torch.zeros_like(rho))
    reward = torch.where(filled > 0, reward, torch.zeros_like(reward))
    return lambda_returns(reward, y, boot, gamma, lam).detach(), rho


def icq_critic_loss(q_tot: torch.Tensor, targets: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Eq. 14 (critic): mean over the valid steps of (Q_tot(s_t, a_t) − G_t)²."""
    err = torch.where(filled > 0, q_tot - targets.detach(), torch.zeros_like(q_tot))
    return (err ** 2).sum() / (filled > 0).sum().clamp(min=1)


def discrete_policy_baseline(q_values: torch.Tensor, probs: torch.Tensor,
                             avail: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_a π(a|τ) Q(τ, a) over the available actions: ``[..., A]`` -> ``[...]`` (detached)."""
    q, p = q_values.detach(), probs.detach()
    if avail is not None:
        ok = avail > 0
        q, p = torch.where(ok, q, torch.zeros_like(q)), torch.where(ok, p, torch.zeros_like(p))
    return (p * q).sum(-1)


def icq_actor_weights(advantages: torch.Tensor, valid: torch.Tensor, beta: float,
                      over: str = "batch") -> torch.Tensor:
    """exp(A_i/β)/Z_i, Z_i over the mini-batch per agent (Theorem 3; the ICQ code's softmax of A/0.1
    times the batch size): :func:`masked_batch_softmax_weights` on ``[B, L, N]``."""
    return masked_batch_softmax_weights(advantages, valid, beta, over)


def icq_actor_loss(logp: torch.Tensor, advantages: torch.Tensor, mixer_weights: torch.Tensor, valid: torch.Tensor,
                   beta: float, over: str = "batch") -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 14 (actor), Theorem 3: −mean over the valid (step, agent) entries of
    w_i(s) · exp(A_i/β)/Z_i · log π_i(a_i | τ_i); ``w_i(s) = ∂Q_tot/∂Q_i`` (detached).

    All ``[B, L, N]``. Returns ``(loss, ρ)``.
    """
    rho = icq_actor_weights(advantages, valid, beta, over)
    ok = valid > 0
    term = torch.where(ok, mixer_weights.detach() * rho * logp, torch.zeros_like(logp))
    return -term.sum() / ok.sum().clamp(min=1), rho


class ICQTorchLearner(OfflineMARLTorchLearner):
    """Joint losses over the agent modules (actor: ``actor_lr``; critic: ``critic_lr``) and the
    mixer (``mixer``: ``critic_lr``). Two terms per update: ``critic`` (per-agent critics + mixer)
    and ``actor`` (every agent module's actor). Target critics and the target mixer are hard
    copies every ``target_update_interval`` updates."""

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.mixer.parameters(), config.critic_lr)}
        return {"actor": (module.actor.parameters(), config.actor_lr),
                "critic": (module.critic.parameters(), config.critic_lr)}

    def compute_joint_losses(self, *, batch, fwd_out):
        cfg = self.config
        jv = JointView(self, batch, fwd_out)
        joint, L, filled = jv.joint, jv.L, jv.filled

        # -- critic: Q_tot vs the implicit-constraint λ-return ------------------------------------
        q_tot = jv.mix(jv.stack(K.Q_TAKEN))
        q_tot_next = jv.mix_target(jv.stack(K.Q_NEXT_TARGET))
        targets, rho_c = icq_critic_targets(joint[K.REWARD], q_tot_next, joint[K.TERMINATED], filled,
                                            joint[K.NEXT_FILLED], gamma=cfg.gamma, lam=cfg.td_lambda,
                                            beta=cfg.critic_beta, over=cfg.softmax_over)
        critic_loss = icq_critic_loss(q_tot, targets, filled)

        # -- actor: advantage-weighted log-likelihood, times ∂Q_tot/∂Q_i = w_i(s) --------------------
        baselines = {}
        for m in jv.modules:
            out = fwd_out[m]
            if N.Q_BASELINE in out:
                baselines[m] = out[N.Q_BASELINE]
            else:
                avail = batch[m].get(K.AVAIL_ACTIONS)
                baselines[m] = discrete_policy_baseline(out[N.Q_VALUES], out[N.PI_PROBS],
                                                        None if avail is None else avail[:, :L])
        adv = (jv.stack(K.Q_TAKEN).detach() - jv.stack_values(baselines))
        with torch.no_grad():
            w, _ = jv.mixer.weights(joint[K.STATE][:, :L])  # [B, L, N], ≥ 0
        valid = filled.unsqueeze(-1).expand_as(adv)
        logp = jv.stack(K.LOGP)
        actor_loss, rho_a = icq_actor_loss(logp, adv, w, valid, cfg.actor_beta, cfg.softmax_over)

        self._log_icq_metrics(jv.members, critic_loss, actor_loss, q_tot, targets, rho_c, filled, joint, rho_a, adv,
                              logp, valid)
        entropy = jv.stack(K.ENTROPY)
        for m, idx in jv.members.items():
            self.log_policy_entropy(m, entropy[..., idx], valid[..., idx])
        return {"critic": (critic_loss, jv.targets("critic", "mixer")), "actor": (actor_loss, jv.targets("actor"))}

    def _log_icq_metrics(self, members, critic_loss, actor_loss, q_tot, targets, rho_c, filled, joint, rho_a, adv,
                         logp, valid) -> None:
        with torch.no_grad():
            ok = filled > 0
            n = ok.sum().clamp(min=1)
            boot = (bootstrap_mask(joint[K.TERMINATED], joint[K.NEXT_FILLED]) * filled) > 0
            r = rho_c[boot].double()
            ess = float((r.sum() ** 2 / (r.numel() * (r ** 2).sum())).item()) if r.numel() else 1.0
            self.metrics.log_dict({
                N.CRITIC_LOSS: critic_loss.item(),
                N.Q_TOT_MEAN: (torch.where(ok, q_tot, torch.zeros_like(q_tot)).sum() / n).item(),
                N.TARGET_MEAN: (torch.where(ok, targets, torch.zeros_like(targets)).sum() / n).item(),
                N.CRITIC_WEIGHT_MAX: float(r.max().item()) if r.numel() else 0.0,
                N.CRITIC_WEIGHT_ESS: ess,
            }, key=MIXER_MODULE_ID, window=1)
            for m, idx in members.items():
                v = valid[..., idx] > 0
                nm = v.sum().clamp(min=1)
                self.metrics.log_dict({
                    N.ACTOR_LOSS: actor_loss.item(),
                    N.ACTOR_WEIGHT_MAX: float(rho_a[..., idx][v].max().item()) if v.any() else 0.0,
                    N.ADVANTAGE_MEAN: (adv[..., idx][v].sum() / nm).item(),
                    N.LOGP_MEAN: (logp[..., idx].detach()[v].sum() / nm).item(),
                }, key=m, window=1)
