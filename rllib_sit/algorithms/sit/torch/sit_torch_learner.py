"""SIT losses (paper Eq. 3, 9, 10) and the TorchLearner that optimises them (RMSprop, Tables 10–11)."""

from __future__ import annotations

from typing import Any, Dict

import torch

from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.replay import keys as B


def ardnem_mse_loss(weighted_rewards: torch.Tensor, reward_tot: torch.Tensor) -> torch.Tensor:
    """Eq. 3: (1/M) Σ_m (Σ_i λ_{i,m} f_{i,m}(o_i, a_i) − r_tot)², averaged over the timesteps.

    ``weighted_rewards [M, n, N]`` (λ·r per member), ``reward_tot [n]``.
    """
    pred = weighted_rewards.sum(-1)  # [M, n]
    return ((pred - reward_tot.unsqueeze(0)) ** 2).mean()


def ardnem_bootstrap_mse_loss(weighted_rewards: torch.Tensor, reward_tot: torch.Tensor,
                              weights: torch.Tensor) -> torch.Tensor:
    """Eq. 3 with a bootstrap resample per member (``ardnem_bootstrap``): member m's squared errors
    are averaged with its own weights, (1/M) Σ_m Σ_n w_nm e²_mn / Σ_n w_nm (a member whose
    weights are all 0 in this batch contributes 0).

    ``weighted_rewards [M, n, N]``, ``reward_tot [n]``, ``weights [n, M]``.
    """
    err2 = (weighted_rewards.sum(-1) - reward_tot.unsqueeze(0)) ** 2  # [M, n]
    w = weights.t().to(err2.dtype)  # [M, n]
    return ((w * err2).sum(-1) / w.sum(-1).clamp(min=1e-8)).mean()


def uncertainty_weights(u_hat: torch.Tensor, eta: float, floor: float) -> torch.Tensor:
    """η / max(û, floor): the per-sample weight of Eq. 9–10 (û clamped from below, see notes)."""
    return eta / u_hat.clamp(min=floor)


def uncertainty_weighted_td_loss(q_taken, q_next_target, reward_hat, u_hat, terminated, filled, next_filled,
                                 gamma: float, eta: float, floor: float) -> torch.Tensor:
    """Eq. 9: mean over real steps of (η/max(û,floor)) (r̂ + γ(1−done) Q'(τ', a'_data) − Q(τ, a))².

    The target uses the dataset's next action (Algorithm 1 line 19); it bootstraps only when step
    t+1 is real (``next_filled``) and t is not a true termination. All tensors ``[B, T]``.
    """
    target = reward_hat + gamma * (1.0 - terminated) * next_filled * q_next_target
    td = target.detach() - q_taken
    w = uncertainty_weights(u_hat, eta, floor)
    return (filled * w * td ** 2).sum() / filled.sum().clamp(min=1.0)


def crr_filter_weights(q_taken: torch.Tensor, filled: torch.Tensor, beta: float) -> torch.Tensor:
    """CRR filter of Eq. 10: exp(Q/β)/Z with Z summed over the real steps of the mini-batch.

    A softmax over the batch (float64, max-subtracted), detached, zero on padded steps.
    """
    z = (q_taken.detach().double() / beta).masked_fill(filled <= 0, float("-inf"))
    w = torch.softmax(z.reshape(-1), 0).reshape(q_taken.shape)
    return torch.nan_to_num(w, nan=0.0).to(q_taken.dtype)


def crr_filtered_actor_loss(logp, q_taken, u_hat, filled, beta: float, eta: float, floor: float) -> torch.Tensor:
    """Eq. 10 as interpreted (specs/sit_notes.md): −Σ (η/max(û,floor)) · exp(Q/β)/Z · log π(a_data|τ).

    The printed Eq. 10 has no term depending on the actor; CRR/ICQ weight the log-likelihood.
    """
    w = crr_filter_weights(q_taken, filled, beta) * uncertainty_weights(u_hat, eta, floor)
    return -(w.detach() * logp * filled).sum()


class SITTorchLearner(OfflineMARLTorchLearner):
    """Agent modules: actor (``actor_lr``) and critic (``critic_lr``) optimised on their own losses
    (Eq. 10, Eq. 9); the ARDNEM module: ``ardnem_lr`` on Eq. 3. Target critics are hard copies
    every ``target_update_interval`` updates (Table 11: d = 100)."""

    def optimizer_groups(self, module_id, module, config):
        if module_id == K.ARDNEM_MODULE_ID:
            return {"ardnem": (module.ardnem.parameters(), config.ardnem_lr)}
        return {"actor": (module.actor.parameters(), config.actor_lr),
                "critic": (module.critic.parameters(), config.critic_lr)}

    def compute_losses_for_module(self, *, module_id, config, batch: Dict[str, Any], fwd_out):
        if module_id == K.ARDNEM_MODULE_ID:
            if K.BOOTSTRAP_WEIGHTS in batch:
                loss = ardnem_bootstrap_mse_loss(fwd_out[K.WEIGHTED_REWARDS], batch[B.REWARD],
                                                 batch[K.BOOTSTRAP_WEIGHTS])
            else:
                loss = ardnem_mse_loss(fwd_out[K.WEIGHTED_REWARDS], batch[B.REWARD])
            self.metrics.log_value((module_id, K.ARDNEM_LOSS), loss.item(), window=1)
            return {"ardnem": loss}
        filled = batch[B.FILLED]
        # "relative": Stage II clamped û already (to a floor scaled by r̂); only guard against 0 here.
        floor = config.uncertainty_floor if config.uncertainty_floor_mode == "absolute" else K.MIN_UNCERTAINTY
        critic_loss = uncertainty_weighted_td_loss(
            fwd_out[B.Q_TAKEN], fwd_out[B.Q_NEXT_TARGET], batch[K.REWARD_HAT], batch[K.UNCERTAINTY],
            batch[B.TERMINATED], filled, batch[B.NEXT_FILLED], gamma=config.gamma, eta=config.eta,
            floor=floor)
        actor_loss = crr_filtered_actor_loss(fwd_out[B.LOGP], fwd_out[B.Q_TAKEN], batch[K.UNCERTAINTY], filled,
                                             beta=config.beta, eta=config.eta, floor=floor)
        n = filled.sum().clamp(min=1.0)
        self.metrics.log_dict({
            K.CRITIC_LOSS: critic_loss.item(),
            K.ACTOR_LOSS: actor_loss.item(),
            K.Q_MEAN: ((fwd_out[B.Q_TAKEN] * filled).sum() / n).item(),
            K.LOGP_MEAN: ((fwd_out[B.LOGP] * filled).sum() / n).item(),
        }, key=module_id, window=1)
        self.log_policy_entropy(module_id, fwd_out[B.ENTROPY], filled)
        return {"critic": critic_loss, "actor": actor_loss}
