"""Framework-free parts of ICQ: its phase, module, forward-output and metric names, and the
choices of the two settings that take a name."""

# Phase name: the only phase, actor and critic (per-agent Q_i + mixer) updated together.
PHASE_ICQ = "icq"

# Over which entries of the mini-batch the softmax weights of Eq. 55-56 are normalised.
#   "batch":    all valid steps of the mini-batch (per agent for the actor): Eq. 56 as printed;
#   "episodes": the batch's episodes, separately at each step t (per agent for the actor): what the
#               ICQ authors' code and og-marl compute (softmax over dim 0 of [B, T(, N)]).
SOFTMAX_OVER = ("batch", "episodes")

# Forward outputs of an agent module (individual trajectories [B * n_m, L, ...]).
Q_VALUES = "q_values"        # discrete: Q_i(τ_i^t, ·) for every action [B, L, n_actions] (critic, with grad)
PI_PROBS = "pi_probs"        # discrete: π_i(· | τ_i^t) over the available actions [B, L, n_actions] (detached)
Q_BASELINE = "q_baseline"    # continuous: (1/M) Σ_k Q_i(τ_i^t, ã_k), ã_k ~ π_i(·|τ_i^t) [B, L] (detached)

# Metric names. Critic metrics are logged under the mixer's module id, actor metrics per agent module.
CRITIC_LOSS = "critic_loss"          # Eq. 14 (critic): mean over valid steps of (Q_tot − G^λ)²
ACTOR_LOSS = "actor_loss"            # Eq. 14 (actor) / Theorem 3: −mean w_i ρ_i log π_i(a_i|τ_i)
Q_TOT_MEAN = "q_tot_mean"            # mean Q_tot(s_t, a_t) over the valid steps
TARGET_MEAN = "target_mean"          # mean λ-return target G^λ_t over the valid steps
CRITIC_WEIGHT_MAX = "critic_weight_max"  # largest importance weight ρ(s', a') (mean is 1 by construction)
CRITIC_WEIGHT_ESS = "critic_weight_ess"  # effective sample share 1/(n Σ p²) of the critic's softmax, in (0, 1]
ACTOR_WEIGHT_MAX = "actor_weight_max"    # largest actor weight exp(A/β)/Z (mean 1 per agent by construction)
ADVANTAGE_MEAN = "advantage_mean"    # mean A_i over the module's valid steps
LOGP_MEAN = "logp_mean"              # mean log π_i(a_i | τ_i) over the module's valid steps
