"""Framework-free parts of MACQL: its phase, variant, forward-output and metric names."""

# Phase name: the only phase, conservative Q-learning of every agent module and the mixer.
PHASE_CQL = "cql"

# Conservative penalty variants (config ``cql_variant``).
PER_AGENT = "per_agent"  # Eq. 13: Σ_i logsumexp over agent i's actions, minus the data value (default)
JOINT = "joint"          # sampled joint actions through the mixer: logsumexp_k Q_tot(s, a^k) − Q_tot(s, a_data)
CQL_VARIANTS = (PER_AGENT, JOINT)

# How the per-agent variant weighs agent i's values (config ``cql_agent_weights``).
MIXER_WEIGHTS = "mixer"  # w_i(s)·Q_i inside the logsumexp, as Eq. 13 writes it (default)
NO_WEIGHTS = "none"      # plain Q_i (og-marl iql_cql, OffPyMARL cql_type=individual)
CQL_AGENT_WEIGHTS = (MIXER_WEIGHTS, NO_WEIGHTS)

# Forward outputs of the agent modules ([B * n_m, ...] rows, one per individual trajectory).
# Discrete: the recurrent Q-network's values of every action over t = 0..L.
Q_ALL = "q_all"                    # [B, L+1, A]  Q_i(τ_i^t, ·)
Q_ALL_TARGET = "q_all_target"      # [B, L+1, A]  target network's Q'_i(τ_i^t, ·) (no gradient)
# Continuous: critic values at the data (replay.keys.Q_TAKEN), policy and CQL-sampled actions, and
# the SAC target (replay.keys.Q_NEXT_TARGET: the target critic at (τ_i^{t+1}, a' ~ π_i(τ_i^{t+1}))).
Q_PI = "q_pi"                      # [B, L]       Q_i(τ_i^t, ã_i^t), ã ~ π_i reparameterised (actor loss)
LOGP_PI = "logp_pi"                # [B, L]       log π_i(ã_i^t | τ_i^t) (actor and temperature losses)
Q_SAMPLES = "q_samples"            # [B, L, 2n]   Q_i at n uniform then n policy samples (CQL(H))
LOG_PROPOSAL = "log_proposal"      # [B, L, 2n]   log density of each sample under its proposal
LOGP_NEXT = "logp_next"            # [B, L]       log π_i(a' | τ_i^{t+1}) (the SAC target's entropy term)

# Metric names: joint terms under the mixer module's id, per-agent ones under each agent module's.
LOSS = "loss"                      # TD + β_CQL · penalty (the critic's total)
TD_LOSS = "td_loss"                # ½ E[(y − Q_tot)²] over the real steps (Eq. 13, second line)
CQL_PENALTY = "cql_penalty"        # the penalty before β_CQL, mean over the real steps
Q_TOT_MEAN = "q_tot_mean"          # mean Q_tot(s, a_data) over the real steps
TARGET_MEAN = "target_mean"        # mean TD target y over the real steps
DATA_ACTION_GAP = "data_action_gap"  # discrete: mean over real steps of Q_i(a_data) − max_{available a ≠ a_data} Q_i(a)
GREEDY_ACCURACY = "greedy_accuracy"  # discrete: share of real steps whose greedy action is the data's
ACTOR_LOSS = "actor_loss"          # continuous: E[Σ_i α_i log π_i(ã_i) − Q_tot(s, ã)]
ALPHA = "alpha"                    # continuous: the entropy temperature α of the module
ENTROPY = "entropy"                # continuous: −E[log π_i(ã_i | τ_i)]
