"""Batch and forward-output keys shared by the samplers (which build batches) and the learners
(which read them). One module, so that no key is ever a string literal repeated across files.

Shapes: ``B`` sampled trajectories/episodes, ``L`` the longest sampled episode, ``N`` agents,
``A`` the action dimension (continuous) or ``n_actions`` (for availability masks).
"""

# -- individual trajectories (one agent j of episode k; IndividualTrajectorySampler) -------------
OBS_ALL = "obs_all"            # [B, L+1, N, obs_dim]  every agent's o^t, t = 0..L (o_{-i} for critics)
AGENT_INDEX = "agent_index"    # [B]                   j, whose trajectory it is
ACTIONS = "actions"            # [B, L(, A)]           a_j^t              (joint: [B, L, N(, A)])
PREV_ACTIONS = "prev_actions"  # [B, L+1(, A)]         a_j^{t-1}; -1 (discrete) / 0 (continuous) at t = 0
NEXT_ACTIONS = "next_actions"  # [B, L(, A)]           a_j^{t+1} from the dataset (0 where there is none)
AVAIL_ACTIONS = "avail_actions"  # [B, L+1, n_actions] (joint: [B, L+1, N, n_actions]); discrete only
REWARD = "reward"              # [B, L]                team reward r^t
TERMINATED = "terminated"      # [B, L]   float 0/1    true termination at t
FILLED = "filled"              # [B, L]   float 0/1    step t is real (not padding)
NEXT_FILLED = "next_filled"    # [B, L]   float 0/1    step t+1 is real
EPISODE_INDEX = "episode_index"  # [B]                 k (row of the episode store)

# -- one agent's one-step transitions (AgentTransitionSampler; OBS, ACTIONS, REWARD, TERMINATED,
# AVAIL_ACTIONS and EPISODE_INDEX as above, shapes [B, ...]) ---------------------------------
NEXT_OBS = "next_obs"          # [B, obs_dim]          o_i^{t+1}
BOOTSTRAP = "bootstrap"        # [B]      float 0/1    s′ is a real, non-terminal next step
NEXT_AVAIL_ACTIONS = "next_avail_actions"  # [B, n_actions]  availability at t+1 (discrete)
STEP_INDEX = "step_index"      # [B]                   t

# -- joint episodes (all agents; JointEpisodeSampler) ----------------------------------------
OBS = "obs"                    # [B, L+1, N, obs_dim]
STATE = "state"                # [B, L+1, state_dim]

# -- common forward outputs (RLModule._forward_train -> Learner) ------------------------------
LOGP = "logp"                  # log π(a_data | τ) [B, L]
ENTROPY = "entropy"            # H(π(· | τ)) [B, L], a diagnostic without gradient
Q_TAKEN = "q_taken"            # Q(τ, a_data) [B, L]
Q_NEXT_TARGET = "q_next_target"  # target-network Q at t+1 [B, L]
