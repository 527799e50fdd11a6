"""OMAC's losses (paper Eq. 2, 5, 6, 8) on the base's joint-loss path (Adam, Table 2).

The same code serves discrete and continuous actions: the agent modules put Q_i and Q̄_i at the
dataset's action (one-hot gather or an action input), V_i and log π_i (log-softmax or the
tanh-Gaussian density of the box action) under the same keys."""

from __future__ import annotations

from typing import Dict

import torch

from rllib_sit.algorithms.common.joint import MIXER_MODULE_ID, agent_order, stack_agents
from rllib_sit.algorithms.common.losses import masked_mean
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.omac.torch.default_omac_torch_rl_module import (Q_TARGET_TAKEN, V, V_SHARE, W_Q, W_V)
from rllib_sit.replay import keys as K


def expectile_value_loss(q_target_taken, v, filled, expectile: float) -> torch.Tensor:
    """Eq. 5: E[L_2^τ(Q̄_i(o_i, a_i) − V_i(o_i))], L_2^τ(u) = |τ − 1(u < 0)| u², over the real steps."""
    u = q_target_taken - v
    weight = torch.where(u < 0, 1.0 - expectile, expectile)
    return masked_mean(weight * u ** 2, filled)


def coupled_factorization(v, q_taken, w_v, w_q, v_share):
    """Eq. 2: V_tot = Σ_i w^v_i V_i + V_share; Q_tot = V_tot + Σ_i w^q_i (Q_i − V_i). ``[.., N]`` -> ``[..]``."""
    v_tot = (w_v * v).sum(-1) + v_share
    return v_tot, v_tot + (w_q * (q_taken - v)).sum(-1)


def coupled_td_loss(q_tot, v_tot_next, reward, terminated, next_filled, filled, gamma: float) -> torch.Tensor:
    """Eq. 6: E[(r + γ V_tot(o') − Q_tot(o, a))²] over the real steps; no bootstrap after a true
    termination or past the last step of an episode cut by the time limit."""
    target = reward + gamma * (1.0 - terminated) * next_filled * v_tot_next
    return masked_mean((target.detach() - q_tot) ** 2, filled)


def advantage_weighted_actor_loss(logp, q_taken, v, filled, beta: float, exp_max: float) -> torch.Tensor:
    """Eq. 8 (as a loss to minimise): −E[exp(β (Q_i − V_i)) log π_i(a_i | o_i)] at the dataset's a_i
    (discrete or continuous), exp(·) clipped at ``exp_max`` (not in the paper; IQL's clip), Q_i and
    V_i fixed."""
    w = torch.exp(beta * (q_taken - v).detach()).clamp(max=exp_max)
    return -masked_mean(w * logp, filled)


class OMACTorchLearner(OfflineMARLTorchLearner):
    """Value phase: Eq. 5 per agent module (its V_i) and Eq. 6 jointly (every Q_i, the CCA mixer and
    V_share); policy phase (batches without the mixer): Eq. 8 per agent module (its π_i)."""

    joint_loss = True

    def optimizer_groups(self, module_id, module, config):
        if module_id == MIXER_MODULE_ID:
            return {"mixer": (module.parameters(), config.critic_lr)}
        return {"actor": (module.actor.parameters(), config.lr), "q": (module.q.parameters(), config.critic_lr),
                "value": (module.v.parameters(), config.critic_lr)}

    def compute_joint_losses(self, *, batch, fwd_out):
        cfg = self.config
        agents = [m for m in fwd_out if m != MIXER_MODULE_ID]
        terms: Dict[str, tuple] = {}
        if MIXER_MODULE_ID not in fwd_out:  # policy phase
            for m in agents:
                f, L = fwd_out[m], batch[m][K.FILLED].shape[1]
                loss = advantage_weighted_actor_loss(f[K.LOGP], f[K.Q_TAKEN], f[V][:, :L], batch[m][K.FILLED],
                                                     cfg.beta, cfg.exp_adv_max)
                self.metrics.log_value((m, "actor_loss"), loss.item(), window=1)
                self.log_policy_entropy(m, f[K.ENTROPY], batch[m][K.FILLED])
                terms[f"{m}/actor"] = (loss, [(m, "actor")])
            return terms
        for m in agents:
            f, L = fwd_out[m], batch[m][K.FILLED].shape[1]
            loss = expectile_value_loss(f[Q_TARGET_TAKEN], f[V][:, :L], batch[m][K.FILLED], cfg.expectile)
            self.metrics.log_value((m, "value_loss"), loss.item(), window=1)
            terms[f"{m}/value"] = (loss, [(m, "value")])
        order = agent_order(self)
        mix, joint = fwd_out[MIXER_MODULE_ID], batch[MIXER_MODULE_ID]
        L = joint[K.FILLED].shape[1]
        q = stack_agents({m: fwd_out[m][K.Q_TAKEN] for m in agents}, order)  # [B, L, N]
        v = stack_agents({m: fwd_out[m][V].detach() for m in agents}, order)  # [B, L+1, N]
        v_tot, q_tot = coupled_factorization(v[:, :L], q, mix[W_V][:, :L], mix[W_Q], mix[V_SHARE][:, :L])
        with torch.no_grad():
            v_tot_next = (mix[W_V][:, 1:] * v[:, 1:]).sum(-1) + mix[V_SHARE][:, 1:]
        loss = coupled_td_loss(q_tot, v_tot_next, joint[K.REWARD], joint[K.TERMINATED], joint[K.NEXT_FILLED],
                               joint[K.FILLED], cfg.gamma)
        self.metrics.log_dict({"q_loss": loss.item(), "q_tot_mean": masked_mean(q_tot, joint[K.FILLED]).item()},
                              key=MIXER_MODULE_ID, window=1)
        terms["q"] = (loss, [(m, "q") for m in agents] + [(MIXER_MODULE_ID, "mixer")])
        return terms
