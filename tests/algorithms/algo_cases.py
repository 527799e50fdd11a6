"""Tiny configs of every registered algorithm (one place for the precision and CUDA tests).

``CASES``: ``{case name: (algorithm name, "discrete" | "continuous", training settings)}`` — small
networks and a few updates per phase, so that 2 iterations reach every phase of each algorithm
(SIT: Stage I, II and III).
"""

from __future__ import annotations

from tiny_fixtures import TINY_CONT_ENV_ID, TINY_ENV_ID

from rllib_sit.algorithms import algorithm_class

_VDTN = dict(hidden=[16, 16], batch_size=16, fit_updates=2, td_updates=2, updates_per_iteration=2, vae_latent_dim=3)

CASES = {
    "SIT": ("SIT", "discrete", dict(ardnem_updates=2, agent_updates=4, ardnem_updates_per_iteration=2,
                                    agent_updates_per_iteration=2, batch_size_episodes=8, target_update_interval=2,
                                    stage2_batch_episodes=16, stage1_cache=False, priority_scale="minmax")),
    "MABC": ("MABC", "discrete", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8)),
    "QMIX": ("QMIX", "discrete", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8,
                                      target_update_interval=2)),
    "FACMAC": ("FACMAC", "continuous", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=4)),
    "MABCQ": ("MABCQ", "discrete", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8,
                                        target_update_interval=2)),
    "MACQL": ("MACQL", "discrete", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8)),
    "ICQ": ("ICQ", "discrete", dict(agent_updates=4, agent_updates_per_iteration=2, batch_size_episodes=8,
                                    target_update_interval=2, rnn_hidden=16, mixer_hidden=8)),
    "OMAC": ("OMAC", "discrete", dict(value_updates=2, policy_updates=2, value_updates_per_iteration=2,
                                      policy_updates_per_iteration=2, batch_size_episodes=8, hidden=16, cca_hidden=8)),
    "VDTN_BCQ": ("VDTN_BCQ", "discrete", dict(_VDTN, num_sampled_actions=3)),
    "VDTN_CQL": ("VDTN_CQL", "continuous", dict(_VDTN, num_sampled_actions=3)),
    "VDTN_TD3BC": ("VDTN_TD3BC", "continuous", dict(_VDTN)),
}


def tiny_config(case: str, discrete_path: str, continuous_path: str, **training):
    """The case's config on the tiny discrete (``tiny:coop``) or continuous (``tinycont:coop``) dataset."""
    name, kind, kw = CASES[case]
    kw = dict(kw, **training)
    env, path = (TINY_ENV_ID, discrete_path) if kind == "discrete" else (TINY_CONT_ENV_ID, continuous_path)
    cfg = algorithm_class(name).get_default_config()
    return (cfg.environment(env).offline_data(input_=path).training(**kw)
            .evaluation(evaluation_duration=2).debugging(seed=0))
