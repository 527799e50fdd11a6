"""Framework-free parts of FacMAC: its phase, forward-output and metric names."""

# Phase name: the only phase, critic (TD) and actor (centralised policy gradient) updates.
PHASE_ACTOR_CRITIC = "actor_critic"

# Forward outputs of an agent module on its agents' individual trajectories (t = 0..L-1).
Q_PI = "q_pi"    # [B * n_m, L]     Q_i(τ_i^t, μ_i(τ_i^t)), differentiable in the actor
PI = "pi"        # [B * n_m, L, A]  μ_i(τ_i^t) = tanh(mean) in [-1, 1] (the action regulariser's input)
# Q_TAKEN (Q_i(τ^t, a^t) of the data) and Q_NEXT_TARGET (Q'_i(τ^{t+1}, μ'_i(τ^{t+1}))) from replay.keys.

# Metric names (logged under the mixer module id).
CRITIC_LOSS = "critic_loss"    # masked mean of (Q_tot(s, a) − y)²
ACTOR_LOSS = "actor_loss"      # −mean Q_tot(s, μ(τ)) + action_reg · mean μ²
Q_TOT_MEAN = "q_tot_mean"      # mean Q_tot(s^t, a^t) of the data's actions over the real steps
Q_TOT_PI_MEAN = "q_tot_pi_mean"  # mean Q_tot(s^t, μ(τ^t)) over the real steps
TARGET_MEAN = "target_mean"    # mean TD target y over the real steps
