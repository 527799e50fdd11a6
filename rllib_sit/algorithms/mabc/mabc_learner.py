"""Framework-free parts of MABC: its phase, forward-output and metric names."""

# Phase name: the only phase, behaviour cloning of every agent module.
PHASE_BC = "bc"

# Forward output (discrete actions): 1.0 where the greedy action equals the dataset's a^t, [B, L].
GREEDY_MATCH = "greedy_match"

# Metric names (per module).
BC_LOSS = "bc_loss"                  # Eq. 11: mean -log π(a^t | τ^t) over the real steps of the batch
GREEDY_ACCURACY = "greedy_accuracy"  # discrete: share of real steps where arg max π = the dataset's action
