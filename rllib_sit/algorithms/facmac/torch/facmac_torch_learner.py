"""FacMAC's losses (Peng et al. 2021; the authors' ``src/learners/facmac_learner.py``) and the
TorchLearner that optimises them on joint-episode batches.

* ``critic`` term — the factored critic's TD(0) loss: Q_tot = QMixer(Q_1(τ_1, a_1), .., Q_N(τ_N, a_N); s)
  against y = r + γ (1 − terminated) Q'_tot(s', μ'_1(τ'_1), .., μ'_N(τ'_N)) (target actors, target
  critics, target mixer). Reaches every agent module's ``critic`` optimizer and the mixer's ``mixer``.
* ``actor`` term — the centralised policy gradient through the mixer:
  −Q_tot(s, μ_1(τ_1), .., μ_N(τ_N)) + ``action_reg`` · mean μ² (the authors' 1e-3 regulariser). It
  goes through the critics and the mixer but moves only the agents' ``actor`` optimizers (the base
  back-propagates each term on its own and keeps only its optimizers' gradients).

Targets: Polyak averaging with ``target_update_tau`` after each update (the authors' MAMuJoCo
setting), or hard copies every ``target_update_interval`` updates with ``target_update_tau=None``.
"""

from __future__ import annotations

import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, JointView
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.facmac.facmac_learner import (ACTOR_LOSS, CRITIC_LOSS, PI, Q_PI, Q_TOT_MEAN, Q_TOT_PI_MEAN,
                                                        TARGET_MEAN)
from rllib_sit.replay import keys as K


def factored_td_targets(reward: torch.Tensor, terminated: torch.Tensor, target_q_tot_next: torch.Tensor,
                        gamma: float) -> torch.Tensor:
    """y^t = r^t + γ (1 − terminated^t) Q'_tot(s^{t+1}, μ'(τ^{t+1})), ``[B, L]``; a time-limit end
    bootstraps from the stored final observation."""
    return reward + gamma * (1.0 - terminated) * target_q_tot_next


def factored_critic_loss(q_tot: torch.Tensor, targets: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Σ filled (Q_tot(s, a) − y)² / Σ filled: the critic loss of the authors' learner (masked TD)."""
    td = (q_tot - targets.detach()) * filled
    return (td ** 2).sum() / filled.sum().clamp(min=1.0)


def centralised_policy_gradient_loss(q_tot_pi: torch.Tensor, pi: torch.Tensor, filled: torch.Tensor,
                                     action_reg: float) -> torch.Tensor:
    """FacMAC's actor loss: −mean_t Q_tot(s^t, μ(τ^t)) + action_reg · mean μ², both over the real steps.

    ``q_tot_pi [B, L]``, ``pi [B, L, N, A]`` (μ in [-1, 1]), ``filled [B, L]``. The authors average
    over every step of the padded batch; here padded steps are excluded (they carry no data).
    """
    n = filled.sum().clamp(min=1.0)
    pg = -(q_tot_pi * filled).sum() / n
    reg = ((pi ** 2).mean(dim=(-2, -1)) * filled).sum() / n
    return pg + action_reg * reg


class FACMACTorchLearner(OfflineMARLTorchLearner):
    """Agent modules: ``actor`` (``actor_lr``) and ``critic`` (``critic_lr``); the mixer module:
    ``mixer`` (``critic_lr``, the authors put the mixer in the critic's optimizer)."""

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.mixer.parameters(), config.critic_lr)}
        # The deterministic actor never uses the Gaussian's log_std: not optimised.
        actor = [p for name, p in module.actor.named_parameters() if name != "log_std"]
        return {"actor": (actor, config.actor_lr), "critic": (module.critic.parameters(), config.critic_lr)}

    def compute_joint_losses(self, *, batch, fwd_out):
        cfg = self.config
        jv = JointView(self, batch, fwd_out)
        filled = jv.filled
        q_tot = jv.mix(jv.stack(K.Q_TAKEN))
        target_next = jv.mix_target(jv.stack(K.Q_NEXT_TARGET))
        targets = factored_td_targets(jv.joint[K.REWARD], jv.joint[K.TERMINATED], target_next, cfg.gamma)
        critic_loss = factored_critic_loss(q_tot, targets, filled)
        q_tot_pi = jv.mix(jv.stack(Q_PI))
        actor_loss = centralised_policy_gradient_loss(q_tot_pi, jv.stack(PI), filled, cfg.action_reg)
        n = filled.sum().clamp(min=1.0)
        self.metrics.log_dict({
            CRITIC_LOSS: critic_loss.item(),
            ACTOR_LOSS: actor_loss.item(),
            Q_TOT_MEAN: ((q_tot * filled).sum() / n).item(),
            Q_TOT_PI_MEAN: ((q_tot_pi * filled).sum() / n).item(),
            TARGET_MEAN: ((targets * filled).sum() / n).item(),
        }, key=MIXER_MODULE_ID, window=1)
        return {"critic": (critic_loss, jv.targets("critic", "mixer")), "actor": (actor_loss, jv.targets("actor"))}
