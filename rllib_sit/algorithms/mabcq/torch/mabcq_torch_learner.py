"""MABCQ's losses (SIT paper Eq. 11–12; BCQ, Fujimoto et al. 2019) and the TorchLearner that
optimises them on the base's joint-loss path (one loss per optimizer).

Terms of one update (``compute_joint_losses``):

* ``td`` — Eq. 12 through the mixer: (y − Q_tot(s, a))², Q_tot = Σ_i w_i(s) Q_i + b(s),
  y = r + γ (1 − done) Q'_tot(s', ã*) with the target mixer; reaches every agent module's ``q``
  optimizer and the mixer's ``mixer`` optimizer.
* ``<type>/behaviour`` (discrete) — Eq. 11 on the behaviour model μ_i; its ``behaviour`` optimizer.
* ``<type>/vae`` (continuous) — BCQ's VAE loss; its ``vae`` optimizer.
* ``perturbation`` (continuous) — BCQ's ξ objective −Q_tot(s, ã), ã = a + ξ(τ, a), a ~ VAE,
  through the mixer; only the ``perturb`` optimizers.

Without the mixer in the batch (the optional behaviour pre-training phase) only the behaviour/VAE
terms are formed.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, JointView
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.common.losses import behaviour_cloning_nll, masked_mean
from rllib_sit.algorithms.mabcq import mabcq_learner as N
from rllib_sit.replay import keys as K

# BCQ (Fujimoto et al. 2019, official code): vae_loss = recon_loss + 0.5 * KL_loss.
KL_WEIGHT = 0.5


def mixed_td_loss(q_tot: torch.Tensor, q_tot_next_target: torch.Tensor, reward: torch.Tensor,
                  terminated: torch.Tensor, filled: torch.Tensor, next_filled: torch.Tensor,
                  gamma: float) -> torch.Tensor:
    """Eq. 12: mean over the real steps of (r + γ (1 − done) Q'_tot(τ', ã*) − Q_tot(τ, a))².

    ``q_tot [B, L]`` = Σ_i w_i(s^t) Q_i(τ_i^t, a_i^t) + b(s^t); ``q_tot_next_target [B, L]`` = the
    target mixer of the target agents' values at the filtered/perturbed maximisers at t+1. The
    target bootstraps only when step t+1 is real and t is not a termination; it is detached.
    """
    y = reward + gamma * (1.0 - terminated) * next_filled * q_tot_next_target
    return masked_mean((y.detach() - q_tot) ** 2, filled)


def bcq_vae_loss(recon: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 filled: torch.Tensor, kl_weight: float = KL_WEIGHT) -> torch.Tensor:
    """BCQ's generative-model loss per real step: mean_a (recon − a)² + 0.5 · mean_z KL(N(mean, std²) ‖ N(0, 1)),
    KL per latent dim = −½ (1 + log std² − mean² − std²); averaged over the real steps
    (``recon, actions [B, L, A]``, ``mean, std [B, L, Z]``, ``filled [B, L]``)."""
    recon_err = ((recon - actions) ** 2).mean(-1)
    kl = (-0.5 * (1.0 + torch.log(std ** 2) - mean ** 2 - std ** 2)).mean(-1)
    return masked_mean(recon_err + kl_weight * kl, filled)


def perturbation_loss(q_tot_perturbed: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """BCQ's perturbation objective through the mixer: −mean over real steps of
    Q_tot(s, ã) = Σ_i w_i(s) Q_i(τ_i, a_i + ξ_i(τ_i, a_i)) + b(s), a_i ~ VAE_i."""
    return -masked_mean(q_tot_perturbed, filled)


class MABCQTorchLearner(OfflineMARLTorchLearner):
    """Optimizers (``config.optimizer``, RMSprop by default): per agent module ``q`` (lr) and
    ``behaviour`` (behaviour_lr; discrete) or ``vae`` (behaviour_lr) + ``perturb`` (lr;
    continuous); the mixer module ``mixer`` (lr). Targets: hard copies every
    ``target_update_interval`` updates (or Polyak with ``target_update_tau``)."""

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.mixer.parameters(), config.lr)}
        if module.discrete:
            return {"q": (module.actor.parameters(), config.lr),
                    "behaviour": (module.behaviour.parameters(), config.behaviour_lr)}
        vae = list(module.vae_encoder.parameters()) + list(module.vae_decoder.parameters())
        return {"q": (module.q.parameters(), config.lr), "vae": (vae, config.behaviour_lr),
                "perturb": (module.perturb.parameters(), config.lr)}

    def compute_joint_losses(self, *, batch: Dict[str, Dict[str, Any]], fwd_out: Dict[str, Dict[str, Any]]):
        agents = [m for m in batch if m != MIXER_MODULE_ID]
        terms = {}
        for m in agents:
            b, out = batch[m], fwd_out[m]
            if self.module[m].unwrapped().discrete:
                terms[f"{m}/behaviour"] = (self._behaviour_term(m, b, out), [(m, "behaviour")])
            else:
                loss = bcq_vae_loss(out[N.VAE_RECON], out[N.ACTIONS_UNIT], out[N.VAE_MEAN], out[N.VAE_STD],
                                    b[K.FILLED])
                self.metrics.log_value((m, N.VAE_LOSS), loss.item(), window=1)
                terms[f"{m}/vae"] = (loss, [(m, "vae")])
        if MIXER_MODULE_ID not in batch or not agents:
            return terms
        terms.update(self._mixed_terms(JointView(self, batch, fwd_out)))
        return terms

    def _behaviour_term(self, module_id: str, batch, out) -> torch.Tensor:
        filled = batch[K.FILLED]
        loss = behaviour_cloning_nll(out[K.LOGP], filled)
        metrics = {N.BEHAVIOUR_LOSS: loss.item(), N.BEHAVIOUR_ACCURACY: masked_mean(out[N.BEHAVIOUR_MATCH], filled).item()}
        if K.AVAIL_ACTIONS in batch:  # share of the available actions at t+1 the filter keeps (real t+1 only)
            L = filled.shape[1]
            n_avail = (batch[K.AVAIL_ACTIONS][:, 1:L + 1] > 0).float().sum(-1).clamp(min=1.0)
            kept = out[N.ALLOWED_NEXT].sum(-1) / n_avail
            metrics[N.FILTER_KEPT] = masked_mean(kept, batch[K.NEXT_FILLED]).item()
        self.metrics.log_dict(metrics, key=module_id, window=1)
        return loss

    def _mixed_terms(self, jv: JointView):
        joint, filled, agents = jv.joint, jv.filled, jv.modules
        q_tot = jv.mix(jv.stack(K.Q_TAKEN))
        q_tot_next = jv.mix_target(jv.stack(K.Q_NEXT_TARGET))
        cfg = self.config
        td = mixed_td_loss(q_tot, q_tot_next, joint[K.REWARD], joint[K.TERMINATED], filled, joint[K.NEXT_FILLED],
                           cfg.gamma)
        y = joint[K.REWARD] + cfg.gamma * (1.0 - joint[K.TERMINATED]) * joint[K.NEXT_FILLED] * q_tot_next
        metrics = {N.TD_LOSS: td.item(), N.Q_TOT_MEAN: masked_mean(q_tot, filled).item(),
                   N.TARGET_MEAN: masked_mean(y, filled).item()}
        terms = {"td": (td, jv.targets("q", "mixer"))}
        if N.Q_PERTURBED in jv.fwd_out[agents[0]]:
            loss = perturbation_loss(jv.mix(jv.stack(N.Q_PERTURBED)), filled)
            metrics[N.PERTURBATION_LOSS] = loss.item()
            terms["perturbation"] = (loss, jv.targets("perturb"))
        self.metrics.log_dict(metrics, key=MIXER_MODULE_ID, window=1)
        return terms
