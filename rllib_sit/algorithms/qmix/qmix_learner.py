"""Framework-free parts of QMIX: its phase, forward-output and metric names."""

# Phase name: the only phase, TD learning of the agents' Q-networks and the mixer.
PHASE_TD = "td"

# Forward outputs of an agent module on its agents' individual trajectories (t = 0..L).
Q_VALUES = "q_values"                # [B * n_m, L+1, n_actions]  Q_i(τ_i^t, ·), unmasked
TARGET_Q_VALUES = "target_q_values"  # [B * n_m, L+1, n_actions]  the target network's, no gradient

# Metric names (logged under the mixer module id).
TD_LOSS = "td_loss"          # masked mean of (Q_tot − y)²
Q_TOT_MEAN = "q_tot_mean"    # mean Q_tot(s^t, a^t) over the real steps
TARGET_MEAN = "target_mean"  # mean TD target y over the real steps
TD_ERROR_ABS = "td_error_abs"  # mean |Q_tot − y| over the real steps
