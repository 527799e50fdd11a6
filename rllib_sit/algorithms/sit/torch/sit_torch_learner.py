"""SIT losses (paper Eq. 3, 9, 10) and the TorchLearner that optimises them with RMSprop."""

from __future__ import annotations

from typing import Any, Dict

import torch
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_sit.algorithms.sit import sit_learner as K

# RMSprop settings of pymarl (the code base the paper follows): smoothing 0.99, eps 1e-5.
RMSPROP_ALPHA, RMSPROP_EPS = 0.99, 1e-5


def ardnem_mse_loss(weighted_rewards: torch.Tensor, reward_tot: torch.Tensor) -> torch.Tensor:
    """Eq. 3: (1/M) Σ_m (Σ_i λ_{i,m} f_{i,m}(o_i, a_i) − r_tot)², averaged over the timesteps.

    ``weighted_rewards [M, n, N]`` (λ·r per member), ``reward_tot [n]``.
    """
    pred = weighted_rewards.sum(-1)  # [M, n]
    return ((pred - reward_tot.unsqueeze(0)) ** 2).mean()


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


class SITTorchLearner(TorchLearner):
    """Per-type modules: actor (RMSprop, actor_lr) + critic (RMSprop, critic_lr); ARDNEM module:
    RMSprop(ardnem_lr). Target critics are copied every ``target_update_interval`` updates."""

    def build(self) -> None:
        super().build()
        self._touched = set()

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        module = self._module[module_id]
        module = module.unwrapped() if hasattr(module, "unwrapped") else module
        if module_id == K.ARDNEM_MODULE_ID:
            params = list(module.ardnem.parameters())
            self.register_optimizer(module_id=module_id, optimizer_name="ardnem",
                                    optimizer=torch.optim.RMSprop(params, lr=config.ardnem_lr,
                                                                  alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS),
                                    params=params, lr_or_lr_schedule=config.ardnem_lr)
            return
        for name, sub, lr in (("actor", module.actor, config.actor_lr), ("critic", module.critic, config.critic_lr)):
            params = list(sub.parameters())
            self.register_optimizer(module_id=module_id, optimizer_name=name,
                                    optimizer=torch.optim.RMSprop(params, lr=lr, alpha=RMSPROP_ALPHA,
                                                                  eps=RMSPROP_EPS),
                                    params=params, lr_or_lr_schedule=lr)

    def compute_loss_for_module(self, *, module_id, config, batch: Dict[str, Any], fwd_out) -> torch.Tensor:
        self._touched.add(module_id)
        if module_id == K.ARDNEM_MODULE_ID:
            loss = ardnem_mse_loss(fwd_out["weighted_rewards"], batch[K.REWARD_TOT])
            self.metrics.log_value((module_id, K.ARDNEM_LOSS), loss.item(), window=1)
            return loss
        filled = batch[K.FILLED]
        critic_loss = uncertainty_weighted_td_loss(
            fwd_out["q_taken"], fwd_out["q_next_target"], batch[K.REWARD_HAT], batch[K.UNCERTAINTY],
            batch[K.TERMINATED], filled, batch[K.NEXT_FILLED], gamma=config.gamma, eta=config.eta,
            floor=config.uncertainty_floor)
        actor_loss = crr_filtered_actor_loss(fwd_out["logp"], fwd_out["q_taken"], batch[K.UNCERTAINTY], filled,
                                             beta=config.beta, eta=config.eta, floor=config.uncertainty_floor)
        n = filled.sum().clamp(min=1.0)
        self.metrics.log_dict({
            K.CRITIC_LOSS: critic_loss.item(),
            K.ACTOR_LOSS: actor_loss.item(),
            K.Q_MEAN: ((fwd_out["q_taken"] * filled).sum() / n).item(),
            "logp_mean": ((fwd_out["logp"] * filled).sum() / n).item(),
        }, key=module_id, window=1)
        return critic_loss + actor_loss

    def compute_gradients(self, loss_per_module, **kwargs):
        grads = super().compute_gradients(loss_per_module, **kwargs)
        # Modules absent from this batch (ARDNEM in Stage III, agents in Stage I) have no grads.
        return {pid: g for pid, g in grads.items() if g is not None}

    def after_gradient_based_update(self, *, timesteps: Dict[str, Any]) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        for mid in self._touched:
            if mid == K.ARDNEM_MODULE_ID:
                continue
            module = self.module[mid].unwrapped()
            module.num_updates += 1
            if int(module.num_updates) % int(self.config.target_update_interval) == 0:
                module.sync_target_critic()
        self._touched = set()
