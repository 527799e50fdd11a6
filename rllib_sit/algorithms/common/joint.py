"""Helpers of the joint-loss path (mixer-based algorithms: QMIX, FacMAC, MABCQ, MACQL, ICQ, OMAC).

Batches come from :meth:`rllib_sit.replay.samplers.JointEpisodeSampler.sample_by_module`: every
agent module receives its agents' individual trajectories ``[B * n_m, L, ...]`` (episode-major),
the mixer module the joint episodes ``[B, L(+1), ...]``. A learner's ``compute_joint_losses``
puts each module's per-agent values back into agent order with :func:`stack_agents` and mixes them.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import torch

MIXER_MODULE_ID = "__mixer__"


def module_members(agent_modules: Sequence[str]) -> Dict[str, List[int]]:
    """``{module: [agent indices]}`` in agent order (the sampler's slot order)."""
    out: Dict[str, List[int]] = {}
    for i, m in enumerate(agent_modules):
        out.setdefault(m, []).append(i)
    return out


def stack_agents(values: Mapping[str, torch.Tensor], agent_modules: Sequence[str]) -> torch.Tensor:
    """Per-module values ``{m: [B * n_m, *rest]}`` -> ``[B, *rest[:1], N, *rest[1:]]``.

    For values ``[B * n_m, L]`` (one per step) the result is ``[B, L, N]`` in the env's agent
    order; for ``[B * n_m, L, A]`` it is ``[B, L, N, A]``.
    """
    members = module_members(agent_modules)
    n_agents = len(agent_modules)
    cols: List[torch.Tensor] = [None] * n_agents  # type: ignore[list-item]
    for m, idx in members.items():
        v = values[m]
        B = v.shape[0] // len(idx)
        v = v.reshape(B, len(idx), *v.shape[1:])  # [B, n_m, L, ...]
        for slot, agent in enumerate(idx):
            cols[agent] = v[:, slot]
    return torch.stack(cols, dim=2)  # [B, L, N, ...]
