"""VD+TN's weights and losses (offline decentralized MARL, Jiang & Lu, §3.3-3.4, Eq. 1-2) and the
TorchLearners of VDTN_BCQ, VDTN_CQL and VDTN_TD3BC (one loss per optimizer, per agent module).

A ``fit``-phase batch (no ``td_phase`` column) trains the density VAEs of λ_tn and BCQ's
behaviour models (Algorithm 1, line 4). A ``td``-phase batch trains the Q-networks with

    E_{p_Bi(s, a_i, s′)} λ_tn λ_vd |Q_i(s, a_i) − y_i|²,   y_i = r + γ V̂*(s′)          (Eq. 1)

and the policy-improvement term weighted the same way (Eq. 2: BCQ's ξ; CQL's and TD3+BC's
actors). λ_tn and λ_vd are detached: no gradient flows through them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.vdtn import vdtn_learner as V

# BCQ (Fujimoto et al. 2019, official code): vae_loss = recon_loss + 0.5 * KL_loss.
KL_WEIGHT = 0.5


def value_deviation_weights(v_next: torch.Tensor, q_taken_target: torch.Tensor, reward: torch.Tensor,
                            bootstrap: torch.Tensor, gamma: float, epsilon: float, min_denominator: float = 1e-6,
                            terminal: str = "outcome") -> torch.Tensor:
    """λ_vd (§3.1, §3.4), clipped to [1 − ε, 1 + ε] and detached.

    With a next state (``bootstrap`` = 1), exactly the paper's estimate:
    λ_vd = 1 + (V*(s′) − E V*(s′)) / |E V*(s′)|, V*(s′) = Q̂_i(s′, π̂_i(s′)) (``v_next``, target
    networks), E V*(s′) = (Q̂_i(s, a_i) − r) / γ (``q_taken_target`` = Q̂_i(s, a_i)).

    Without one (termination, or the last step of a truncated episode: the TD target is y = r),
    V*(s′) does not exist. ``terminal="outcome"`` (default) deviates the value of the transition's
    outcome, which is then r, from its expectation over outcomes, Q̂_i(s, a_i):
    λ_vd = 1 + (r − Q̂_i(s, a_i)) / |Q̂_i(s, a_i)| — the reading of the paper's matrix game
    (Table 3, where the "next states" are the payoffs). ``terminal="none"``: λ_vd = 1 there.

    ``|·|`` in a denominator is floored at ``min_denominator`` (division by ~0 while Q̂ ≈ 0 at
    the start; the result is then clipped to 1 ± ε anyway).
    """
    with torch.no_grad():
        expected = (q_taken_target - reward) / gamma
        dev_next = (v_next - expected) / expected.abs().clamp(min=min_denominator)
        if terminal == "outcome":
            dev_end = (reward - q_taken_target) / q_taken_target.abs().clamp(min=min_denominator)
        else:
            dev_end = torch.zeros_like(reward)
        dev = torch.where(bootstrap > 0, dev_next, dev_end)
        return (1.0 + dev).clamp(1.0 - epsilon, 1.0 + epsilon)


def transition_normalization_weights(log_weight: torch.Tensor) -> torch.Tensor:
    """λ_tn (§3.2, §3.4) from per-sample log weights, normalised to mean 1 over the mini-batch.

    ``log_weight`` = log ρ_N(μ¹) − log ρ_N(μ²) (VAE estimator, §3.4) or −log P̂(s′|s, a_i)
    (count estimator). The constant the paper leaves in z_i (‖δ_S‖, and the VAEs' arbitrary
    scale) is fixed by the normalisation: λ_tn = B · softmax(log_weight), computed max-subtracted
    (no overflow), detached. Relative weights inside the batch are exactly the paper's ratios.
    """
    with torch.no_grad():
        return log_weight.shape[0] * torch.softmax(log_weight.double(), 0).to(log_weight.dtype)


def weighted_td_loss(q: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1: mean over the batch of λ_tn λ_vd (Q_i(s, a_i) − y_i)², y and the weights detached."""
    return (weights.detach() * (q - y.detach()) ** 2).mean()


def td_target(reward: torch.Tensor, bootstrap: torch.Tensor, v_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """y_i = r + γ (1 − done) V̂*(s′) (Eq. 1), V̂* from the target networks."""
    return reward + gamma * bootstrap * v_next.detach()


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             kl_weight: float = KL_WEIGHT) -> torch.Tensor:
    """BCQ's VAE loss: mean (x̂ − x)² + kl_weight · mean KL(N(μ, σ²) ‖ N(0, 1)) (per sample, then batch mean)."""
    recon_err = ((recon - x) ** 2).mean(-1)
    kl = (-0.5 * (1.0 + torch.log(std ** 2) - mean ** 2 - std ** 2)).mean(-1)
    return (recon_err + kl_weight * kl).mean()


class VDTNTorchLearner(OfflineMARLTorchLearner):
    """λ_vd, λ_tn and the weighted TD loss; subclasses add their optimizers and terms.

    Optimizers per agent module: ``q`` (``lr``), ``tn_vae`` (``vae_lr``, when λ_tn uses the VAEs)
    + the subclass's. Targets: Polyak averaging with ``target_update_tau`` (BCQ/TD3: 0.005).
    """

    def optimizer_groups(self, module_id, module, config) -> Dict[str, Any]:
        groups = {"q": (self.q_parameters(module), config.lr)}
        if module.has_tn_vae:
            groups["tn_vae"] = (list(module.tn_vae_sa.parameters()) + list(module.tn_vae_sas.parameters()),
                                config.vae_lr)
        return groups

    def q_parameters(self, module):
        return module.q.parameters()

    # -- weights ---------------------------------------------------------------------------------
    def lambda_weights(self, config, batch, out) -> Dict[str, torch.Tensor]:
        """{"vd": λ_vd, "tn": λ_tn, "both": λ_tn λ_vd}, each [B], detached (ones when switched off)."""
        ones = torch.ones_like(batch[V.REWARD])
        vd = tn = ones
        if config.use_value_deviation:
            vd = value_deviation_weights(out[V.V_NEXT_TARGET], out[V.Q_TAKEN_TARGET], batch[V.REWARD],
                                         batch[V.BOOTSTRAP], config.gamma, config.optimism,
                                         config.vd_min_denominator, config.vd_terminal)
        if config.use_transition_normalization:
            log_w = out[V.TN_LOG_RATIO] if config.tn_estimator == "vae" else batch[V.TN_LOG_WEIGHT]
            tn = transition_normalization_weights(log_w)
        return {"vd": vd, "tn": tn, "both": (vd * tn).detach()}

    # -- losses ----------------------------------------------------------------------------------
    def compute_losses_for_module(self, *, module_id, config, batch, fwd_out):
        metrics: Dict[str, float] = {}
        losses: Dict[str, torch.Tensor] = {}
        if V.TD_PHASE not in batch:  # Algorithm 1, line 4: fit the VAEs / behaviour models
            if V.VAE_TN_SA in fwd_out:
                loss = vae_loss(*fwd_out[V.VAE_TN_SA], config.vae_kl_weight) + vae_loss(
                    *fwd_out[V.VAE_TN_SAS], config.vae_kl_weight)
                losses["tn_vae"] = loss
                metrics[V.TN_VAE_LOSS] = loss.item()
            losses.update(self.generative_losses(config, batch, fwd_out, metrics))
        else:
            lam = self.lambda_weights(config, batch, fwd_out)
            y = td_target(batch[V.REWARD], batch[V.BOOTSTRAP], fwd_out[V.V_NEXT_TARGET], config.gamma)
            td = self.td_loss(fwd_out, y, lam["both"])
            losses["q"] = td + self.critic_regularizer(config, batch, fwd_out, metrics)
            losses.update(self.policy_losses(module_id, config, batch, fwd_out, lam["both"], metrics))
            eps = config.optimism
            metrics.update({V.TD_LOSS: td.item(), V.Q_MEAN: fwd_out[V.Q_TAKEN].mean().item(),
                            V.TARGET_MEAN: y.mean().item(), V.LAMBDA_VD_MEAN: lam["vd"].mean().item(),
                            V.LAMBDA_VD_CLIPPED: ((lam["vd"] - 1.0).abs() >= eps - 1e-6).float().mean().item()
                            if config.use_value_deviation else 0.0,
                            V.LAMBDA_TN_MIN: lam["tn"].min().item(), V.LAMBDA_TN_MAX: lam["tn"].max().item()})
        self.metrics.log_dict(metrics, key=module_id, window=1)
        return losses

    def td_loss(self, out, y, weights) -> torch.Tensor:
        return weighted_td_loss(out[V.Q_TAKEN], y, weights)

    def generative_losses(self, config, batch, out, metrics) -> Dict[str, torch.Tensor]:
        return {}

    def critic_regularizer(self, config, batch, out, metrics) -> torch.Tensor:
        return out[V.Q_TAKEN].new_zeros(())  # on the learner's device

    def policy_losses(self, module_id, config, batch, out, weights, metrics) -> Dict[str, torch.Tensor]:
        return {}


# ---------------------------------------------------------------------------------------------
# BCQ
# ---------------------------------------------------------------------------------------------

def behaviour_nll(logits: torch.Tensor, actions: torch.Tensor, avail: Optional[torch.Tensor]) -> torch.Tensor:
    """Discrete BCQ's behaviour model: mean −log μ(a_i|s) with μ renormalised over the available actions."""
    if avail is not None:
        logits = logits.masked_fill(avail <= 0, -1e9)
    return -torch.log_softmax(logits, -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1).mean()


def perturbation_objective(q_perturbed: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 2 (to minimise): −mean λ_tn λ_vd Q_i(s, a_i + ξ_i(s, a_i)), a_i ~ G¹(s)."""
    return -(weights.detach() * q_perturbed).mean()


class VDTNBCQTorchLearner(VDTNTorchLearner):
    """+ ``behaviour`` (discrete; ``generator_lr``) or ``generator`` (G¹) and ``perturb`` (ξ; ``perturb_lr``)."""

    def optimizer_groups(self, module_id, module, config):
        groups = super().optimizer_groups(module_id, module, config)
        if module.discrete:
            groups["behaviour"] = (module.behaviour.parameters(), config.generator_lr)
        else:
            groups["generator"] = (module.generator.parameters(), config.generator_lr)
            groups["perturb"] = (module.perturb.parameters(), config.perturb_lr)
        return groups

    def generative_losses(self, config, batch, out, metrics):
        if V.BEHAVIOUR_LOGITS in out:
            loss = behaviour_nll(out[V.BEHAVIOUR_LOGITS], batch[V.ACTIONS], batch.get(V.AVAIL))
            metrics[V.BEHAVIOUR_LOSS] = loss.item()
            return {"behaviour": loss}
        loss = vae_loss(*out[V.VAE_GENERATOR])
        metrics[V.GENERATOR_LOSS] = loss.item()
        return {"generator": loss}

    def policy_losses(self, module_id, config, batch, out, weights, metrics):
        if V.ALLOWED_NEXT in out and V.NEXT_AVAIL in batch:
            n_avail = (batch[V.NEXT_AVAIL] > 0).float().sum(-1).clamp(min=1.0)
            metrics[V.FILTER_KEPT] = (out[V.ALLOWED_NEXT].float().sum(-1) / n_avail).mean().item()
        if V.Q_PERTURBED not in out:
            return {}
        loss = perturbation_objective(out[V.Q_PERTURBED], weights)
        metrics[V.PERTURBATION_LOSS] = loss.item()
        return {"perturb": loss}


# ---------------------------------------------------------------------------------------------
# CQL
# ---------------------------------------------------------------------------------------------

def discrete_cql_logsumexp(q_all: torch.Tensor, avail: Optional[torch.Tensor]) -> torch.Tensor:
    """log Σ_{a available} exp Q_i(s, a) ``[B]``."""
    if avail is not None:
        q_all = q_all.masked_fill(avail <= 0, -torch.inf)
    return torch.logsumexp(q_all, -1)


def cql_penalty(logsumexp: torch.Tensor, q_taken: torch.Tensor) -> torch.Tensor:
    """CQL(H)'s regulariser: mean (logsumexp_a Q(s, a) − Q(s, a_data)) — unweighted by λ (a constraint
    on the actions, not a term of the Bellman backup the paper reweights)."""
    return (logsumexp - q_taken).mean()


def sac_actor_loss(q_pi: torch.Tensor, logp: torch.Tensor, entropy_coeff: float, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 2's analogue for CQL's actor: mean λ_tn λ_vd (α_H log π(ã|s) − Q_i(s, ã)), ã ~ π(s)."""
    return (weights.detach() * (entropy_coeff * logp - q_pi)).mean()


class VDTNCQLTorchLearner(VDTNTorchLearner):
    """+ ``actor`` (continuous; ``actor_lr``). Discrete: CQL's logsumexp over the available actions."""

    def optimizer_groups(self, module_id, module, config):
        groups = super().optimizer_groups(module_id, module, config)
        if not module.discrete:
            groups["actor"] = (module.actor.parameters(), config.actor_lr)
        return groups

    def critic_regularizer(self, config, batch, out, metrics):
        lse = out[V.CQL_LOGSUMEXP] if V.CQL_LOGSUMEXP in out else discrete_cql_logsumexp(out[V.Q_ALL],
                                                                                       batch.get(V.AVAIL))
        pen = cql_penalty(lse, out[V.Q_TAKEN])
        metrics[V.CQL_PENALTY] = pen.item()
        return config.cql_alpha * pen

    def policy_losses(self, module_id, config, batch, out, weights, metrics):
        if V.Q_PI not in out:
            return {}
        loss = sac_actor_loss(out[V.Q_PI], out[V.PI_LOGP], config.entropy_coeff, weights)
        metrics[V.ACTOR_LOSS] = loss.item()
        return {"actor": loss}


# ---------------------------------------------------------------------------------------------
# TD3+BC
# ---------------------------------------------------------------------------------------------

def td3bc_actor_loss(q_pi: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor, alpha: float,
                     weights: torch.Tensor, action_scale: float = 1.0) -> torch.Tensor:
    """TD3+BC's actor with Eq. 2's weights: mean [−λ_tn λ_vd κ Q_1(s, π(s))] + mean (c·(π(s) − a))²,
    κ = α / mean |Q_1(s, π(s))| (detached). ``pi`` and ``actions`` are in [-1, 1]; ``action_scale`` c
    is (high − low)/2 to take the BC term in the env's action units, as the TD3+BC code does
    (``F.mse_loss(max_action·tanh(·), a)``: the mean over batch and action dimensions). The BC term
    is unweighted (a constraint, as CQL's)."""
    kappa = alpha / q_pi.abs().mean().detach().clamp(min=1e-6)
    return -(weights.detach() * kappa * q_pi).mean() + ((action_scale * (pi - actions)) ** 2).mean()


class VDTNTD3BCTorchLearner(VDTNTorchLearner):
    """Twin critics in one ``q`` optimizer; ``actor`` (``actor_lr``) updated in the TD batches the algorithm
    marks with ``actor_update`` = 1 (every ``policy_delay``-th; unmarked batches always update it)."""

    def q_parameters(self, module):
        return list(module.q1.parameters()) + list(module.q2.parameters())

    def optimizer_groups(self, module_id, module, config):
        groups = super().optimizer_groups(module_id, module, config)
        groups["actor"] = (module.actor.parameters(), config.actor_lr)
        return groups

    def td_loss(self, out, y, weights):
        return weighted_td_loss(out[V.Q_TAKEN], y, weights) + weighted_td_loss(out[V.Q_TAKEN_2], y, weights)

    def policy_losses(self, module_id, config, batch, out, weights, metrics):
        last = getattr(self, "_last_actor_loss", {})
        self._last_actor_loss = last
        if V.ACTOR_UPDATE in batch and not bool(batch[V.ACTOR_UPDATE][0] > 0):  # TD3's delayed actor
            if module_id in last:  # report the last actor update's value (no NaN between them)
                metrics[V.ACTOR_LOSS] = last[module_id]
            return {}
        mod = self.module[module_id].unwrapped()
        scale = (mod.high - mod.low) / 2.0 if config.bc_units == "env" else 1.0
        loss = td3bc_actor_loss(out[V.Q_PI], out[V.PI_ACTION], out[V.ACTIONS_UNIT], config.td3_alpha, weights,
                                action_scale=scale)
        metrics[V.ACTOR_LOSS] = last[module_id] = loss.item()
        return {"actor": loss}
