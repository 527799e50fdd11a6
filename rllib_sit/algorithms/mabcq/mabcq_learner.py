"""Framework-free parts of MABCQ: its phase, forward-output and metric names."""

# Phase names: optional behaviour-model pre-training (the paper's "first train behavior policies"),
# then BCQ-style Q-learning with the behaviour model trained on the same batches.
PHASE_BEHAVIOUR = "behaviour"
PHASE_BCQ = "bcq"

# Forward outputs of the agent modules (individual trajectories, [B * n_m, L, ...]).
# (Q_TAKEN, Q_NEXT_TARGET and LOGP are the shared keys of rllib_sit.replay.keys.)
BEHAVIOUR_MATCH = "behaviour_match"  # discrete: 1.0 where arg max μ(·|τ^t) = the dataset's a^t [B, L]
ALLOWED_NEXT = "allowed_next"      # discrete: Eq. 12's filter at t+1 (1 = the action may be chosen) [B, L, n]
NEXT_ACTION = "next_action"        # the action Eq. 12's max picked at t+1 (discrete: index [B, L])
Q_PERTURBED = "q_perturbed"        # continuous: Q_i(τ^t, a + ξ(τ^t, a)), a ~ VAE (grad into ξ only) [B, L]
VAE_RECON = "vae_recon"            # continuous: decoder output for the encoded dataset action [B, L, A]
VAE_MEAN = "vae_mean"              # continuous: encoder mean [B, L, latent]
VAE_STD = "vae_std"                # continuous: encoder std [B, L, latent]
ACTIONS_UNIT = "actions_unit"      # continuous: dataset action scaled to [-1, 1] [B, L, A]

# Metric names. Per agent module:
BEHAVIOUR_LOSS = "behaviour_loss"    # discrete: Eq. 11 on μ_i, mean −log μ(a^t | τ^t) over real steps
BEHAVIOUR_ACCURACY = "behaviour_accuracy"  # discrete: share of real steps where arg max μ = the dataset action
FILTER_KEPT = "filter_kept"          # discrete: mean share of the available actions at t+1 that pass the filter
VAE_LOSS = "vae_loss"                # continuous: BCQ's reconstruction + 0.5 KL, over real steps
# On the mixer module (the joint terms):
TD_LOSS = "td_loss"                  # Eq. 12, mean over real steps of (y − Q_tot)²
Q_TOT_MEAN = "q_tot_mean"            # mean Q_tot(s, a_data) over real steps
TARGET_MEAN = "target_mean"          # mean TD target y over real steps
PERTURBATION_LOSS = "perturbation_loss"  # continuous: −mean Q_tot(s, ã), ã = a + ξ(τ, a), a ~ VAE
