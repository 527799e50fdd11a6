"""QMIX's TD loss (Rashid et al. 2018: L(θ) = Σ (y^tot − Q_tot(τ, u, s; θ))² with
y^tot = r + γ max_u' Q_tot(τ', u', s'; θ⁻); pymarl's ``q_learner.py``) and the TorchLearner that optimises it on joint-episode batches (RMSprop, SIT paper Table 11 "Shared").

One joint term, ``td``: its gradient reaches every agent module's Q-network (optimizer ``q``) and
the mixer (optimizer ``mixer``), both at ``config.lr``. Target Q-networks and the target mixer are
hard copies every ``config.target_update_interval`` updates (the base's target-network path).
"""

from __future__ import annotations


import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, JointView
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.qmix.qmix_learner import (Q_TOT_MEAN, Q_VALUES, TARGET_MEAN, TARGET_Q_VALUES, TD_ERROR_ABS,
                                                    TD_LOSS)
from rllib_sit.replay import keys as K


def chosen_action_q(q_values: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q_i(τ_i^t, a_i^t) of the dataset's actions: ``q_values [B, L, A]``, ``actions [B, L]`` -> [B, L]."""
    return q_values.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def max_available_next_q(q_next: torch.Tensor, target_q_next: torch.Tensor, avail_next: torch.Tensor,
                         double_q: bool) -> torch.Tensor:
    """The per-agent bootstrap value at τ^{t+1}, maximised over the **available** actions only.

    ``double_q=False``: max_{a' available} Q'_i(τ', a') (QMIX paper). ``double_q=True`` (pymarl's
    ``qmix.yaml``): Q'_i(τ', arg max_{a' available} Q_i(τ', a')) — the online network picks, the
    target network evaluates. All ``[B, L, A]`` (avail 0/1) -> ``[B, L]``, no gradient.

    A step where no action is available (padding past the end of an episode) gets every action
    allowed, so its value stays finite; the loss masks such steps out anyway.
    """
    allowed = avail_next > 0
    allowed = allowed | ~allowed.any(-1, keepdim=True)
    with torch.no_grad():
        if double_q:
            pick = q_next.detach().masked_fill(~allowed, float("-inf")).argmax(-1, keepdim=True)
            return target_q_next.gather(-1, pick).squeeze(-1)
        return target_q_next.masked_fill(~allowed, float("-inf")).max(-1).values


def qmix_td_targets(reward: torch.Tensor, terminated: torch.Tensor, target_q_tot_next: torch.Tensor,
                    gamma: float) -> torch.Tensor:
    """y^t = r^t + γ (1 − terminated^t) Q'_tot(s^{t+1}, ·) (QMIX's TD(0) target), ``[B, L]``.

    A time-limit end is not a termination: the schema keeps the final observation, so the last
    step of a truncated episode bootstraps from it (as pymarl does).
    """
    return reward + gamma * (1.0 - terminated) * target_q_tot_next


def qmix_td_loss(q_tot: torch.Tensor, targets: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Σ_t filled^t (Q_tot(s^t, a^t) − y^t)² / Σ_t filled^t over the batch (pymarl's masked TD loss)."""
    td = (q_tot - targets.detach()) * filled
    return (td ** 2).sum() / filled.sum().clamp(min=1.0)


class QMIXTorchLearner(OfflineMARLTorchLearner):
    """Agent modules: one optimizer ``q`` (the Q-network, ``config.lr``); the mixer module: ``mixer``
    (``config.lr``). Both are moved by the single joint TD term."""

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.mixer.parameters(), config.lr)}
        return {"q": (module.actor.parameters(), config.lr)}

    def compute_joint_losses(self, *, batch, fwd_out):
        cfg = self.config
        jv = JointView(self, batch, fwd_out)
        L = jv.L
        taken, nxt = {}, {}
        for m in jv.modules:
            q, q_target = fwd_out[m][Q_VALUES], fwd_out[m][TARGET_Q_VALUES]
            taken[m] = chosen_action_q(q[:, :L], batch[m][K.ACTIONS])
            nxt[m] = max_available_next_q(q[:, 1:L + 1], q_target[:, 1:L + 1], batch[m][K.AVAIL_ACTIONS][:, 1:L + 1],
                                          cfg.double_q)
        q_tot = jv.mix(jv.stack_values(taken))
        target_next = jv.mix_target(jv.stack_values(nxt))
        targets = qmix_td_targets(jv.joint[K.REWARD], jv.joint[K.TERMINATED], target_next, cfg.gamma)
        filled = jv.filled
        loss = qmix_td_loss(q_tot, targets, filled)
        n = filled.sum().clamp(min=1.0)
        self.metrics.log_dict({
            TD_LOSS: loss.item(),
            Q_TOT_MEAN: ((q_tot * filled).sum() / n).item(),
            TARGET_MEAN: ((targets * filled).sum() / n).item(),
            TD_ERROR_ABS: (((q_tot - targets).abs() * filled).sum() / n).item(),
        }, key=MIXER_MODULE_ID, window=1)
        return {"td": (loss, jv.targets("q", "mixer"))}
