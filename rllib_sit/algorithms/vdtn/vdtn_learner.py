"""Framework-free parts of VD+TN (offline decentralized MARL, Jiang & Lu: value deviation and
transition normalization): batch keys, forward-output keys, phase and metric names, and the
NumPy count estimate of λ_tn. The per-agent transition sampler is the shared
:mod:`rllib_sit.replay.transitions` (re-exported here).

Batches are *per agent* and *per transition* (paper §3.3: samples (s, a_i, r, s′) of B_i): the
batch of agent i's module holds only agent i's columns, never another agent's action.
"""

from __future__ import annotations

import numpy as np

from rllib_sit.data import schema as S
from rllib_sit.replay import keys as K
from rllib_sit.replay.transitions import AgentTransitionSampler, PerAgentSamplers  # noqa: F401 (re-exported)

# -- batch keys (one agent's transitions, [B, ...]) ------------------------------------------
OBS = K.OBS                      # [B, obs_dim]   o_i^t (the agent's own observation)
NEXT_OBS = K.NEXT_OBS            # [B, obs_dim]   o_i^{t+1}
ACTIONS = K.ACTIONS              # [B] int / [B, A] box      a_i^t
REWARD = K.REWARD                # [B]            team reward r^t
TERMINATED = K.TERMINATED        # [B]            1 where t is a true termination
BOOTSTRAP = K.BOOTSTRAP          # [B]            1 where s′ is a real, non-terminal next step
AVAIL = K.AVAIL_ACTIONS          # [B, n]         a_i^t's availability mask (discrete)
NEXT_AVAIL = K.NEXT_AVAIL_ACTIONS  # [B, n]       availability at t+1 (discrete)
TN_LOG_WEIGHT = "tn_log_weight"  # [B]            log λ_tn from the count estimator (batch column)
TD_PHASE = "td_phase"            # [B]            present (ones) in TD-phase batches only
ACTOR_UPDATE = "actor_update"    # [B]            TD3+BC: 1 in the TD batches that also update the actor
EPISODE_INDEX = K.EPISODE_INDEX  # [B]            k (row of the episode store)
STEP_INDEX = K.STEP_INDEX        # [B]            t

OBS_STD_FLOOR = 1e-3  # TD3+BC: (s − mean) / (std + 1e-3)
BATCH_KEYS = (OBS, NEXT_OBS, ACTIONS, REWARD, TERMINATED, BOOTSTRAP, AVAIL, NEXT_AVAIL, TN_LOG_WEIGHT, TD_PHASE,
              ACTOR_UPDATE, EPISODE_INDEX, STEP_INDEX)

# -- forward outputs -------------------------------------------------------------------------
Q_TAKEN = K.Q_TAKEN              # Q_i(s, a_i) (online) [B]; TD3+BC: the first critic
Q_TAKEN_2 = "q_taken_2"          # TD3+BC: the second critic [B]
Q_TAKEN_TARGET = "q_taken_target"  # Q̂_i(s, a_i) (target): E V*(s′) = (Q̂ − r)/γ (§3.4) [B]
V_NEXT_TARGET = "v_next_target"  # V*(s′) = Q̂_i(s′, π̂_i(s′)) [B] (0 is not applied here; see bootstrap)
TN_LOG_RATIO = "tn_log_ratio"    # log ρ_N(μ¹) − log ρ_N(μ²) from the density VAEs (detached) [B]
Q_ALL = "q_all"                  # discrete: Q_i(s, ·) [B, n]
BEHAVIOUR_LOGITS = "behaviour_logits"  # discrete BCQ: the behaviour model's logits at s [B, n]
ALLOWED_NEXT = "allowed_next"    # discrete BCQ: the filter at s′ [B, n]
Q_PERTURBED = "q_perturbed"      # continuous BCQ: Q_i(s, a + ξ(s, a)), a ~ G¹ [B]
Q_PI = "q_pi"                    # CQL / TD3+BC: Q_i(s, π(s)) [B]
PI_ACTION = "pi_action"          # TD3+BC: π(s) in [-1, 1] [B, A];
PI_LOGP = "pi_logp"              # CQL (continuous): log π(ã|s) [B]
CQL_LOGSUMEXP = "cql_logsumexp"  # CQL: logsumexp of Q over the available / sampled actions [B]
ACTIONS_UNIT = "actions_unit"    # continuous: a_i scaled to [-1, 1] [B, A]
# VAE outputs: (reconstruction, input, mean, std) of each VAE, keyed by its name.
VAE_TN_SA = "tn_vae_sa"          # density VAE on (s, a_i)             (§3.4: ρ(s, a) ≈ ρ_N(μ¹))
VAE_TN_SAS = "tn_vae_sas"        # density VAE on (s, a_i, r, s′)      (§3.4: ρ(s, a, s′) ≈ ρ_N(μ²))
VAE_GENERATOR = "generator"      # continuous BCQ: G¹'s action VAE (BCQ)

# -- phases ----------------------------------------------------------------------------------
PHASE_FIT = "fit"   # Algorithm 1 line 4: fit the VAEs (and BCQ's behaviour models) on B_i
PHASE_TD = "td"     # Algorithm 1 lines 5-10: Q-learning with λ_tn λ_vd-weighted Eq. 1-2

# -- metrics (per agent module) --------------------------------------------------------------
TD_LOSS = "td_loss"              # Eq. 1: mean λ_tn λ_vd (Q − y)²
Q_MEAN = "q_mean"
TARGET_MEAN = "target_mean"
LAMBDA_VD_MEAN = "lambda_vd_mean"
LAMBDA_VD_CLIPPED = "lambda_vd_clipped"   # share of samples at 1 ± ε
LAMBDA_TN_MIN = "lambda_tn_min"
LAMBDA_TN_MAX = "lambda_tn_max"
TN_VAE_LOSS = "tn_vae_loss"
BEHAVIOUR_LOSS = "behaviour_loss"         # discrete BCQ: −log μ(a|s)
GENERATOR_LOSS = "generator_loss"         # continuous BCQ: G¹'s VAE loss
PERTURBATION_LOSS = "perturbation_loss"   # continuous BCQ: Eq. 2
CQL_PENALTY = "cql_penalty"
ACTOR_LOSS = "actor_loss"
FILTER_KEPT = "filter_kept"

# -- settings with a closed set of values ----------------------------------------------------
TN_ESTIMATORS = ("vae", "count")          # λ_tn: the paper's VAE latent-mean densities | exact counts
VD_TERMINAL = ("outcome", "none")         # λ_vd on transitions without a next state (see value_deviation_weights)


def _row_ids(x: np.ndarray, decimals: int) -> np.ndarray:
    """An integer id per distinct row of ``x [n, d]`` (rows equal after rounding share an id)."""
    x = np.round(np.ascontiguousarray(x, np.float64), decimals) + 0.0  # + 0.0: -0.0 == 0.0
    return np.unique(x, axis=0, return_inverse=True)[1].reshape(-1)


def count_transition_log_weights(sampler: AgentTransitionSampler, include_reward: bool = True,
                                 decimals: int = 6) -> np.ndarray:
    """log λ_tn = −log P̂_Bi(s′ | s, a_i) from exact counts, ``[num_transitions, N]``.

    §3.2's transition normalization 1/P_Bi(s′|s, a_i) with P̂ = n(s, a_i, s′) / n(s, a_i) counted
    over agent i's transitions; s = o_i, s′ = (r, o_i′, done) when ``include_reward`` (the
    outcome of a transition includes the team reward, as in the paper's matrix game, Tables 2-4)
    else (o_i′, done). Exact for discrete/tabular observations; with continuous observations
    every (s, a_i) is unique, P̂ = 1 and λ_tn = 1 (the paper's VAE estimator is for that case).
    """
    ep, k, t = sampler.ep, sampler.k, sampler.t
    n_agents = len(sampler.agent_modules)
    out = np.zeros((sampler.num_transitions, n_agents), np.float32)
    for i in range(n_agents):
        o, o2 = np.asarray(ep[S.OBS][k, t, i], np.float64), np.asarray(ep[S.OBS][k, t + 1, i], np.float64)
        a = np.asarray(ep[S.ACTIONS][k, t, i], np.float64).reshape(len(k), -1)
        sa = _row_ids(np.concatenate([o, a], 1), decimals)
        parts = [o, a, o2, sampler.bootstrap[:, None].astype(np.float64)]
        if include_reward:
            parts.insert(2, np.asarray(ep[S.REWARD][k, t], np.float64)[:, None])
        sas = _row_ids(np.concatenate(parts, 1), decimals)
        n_sa = np.bincount(sa)[sa]
        n_sas = np.bincount(sas)[sas]
        out[:, i] = np.log(n_sa) - np.log(n_sas)
    return out
