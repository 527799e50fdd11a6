"""Helpers of the joint-loss path (mixer-based algorithms: QMIX, FacMAC, MABCQ, MACQL, ICQ, OMAC).

Batches come from :meth:`rllib_sit.replay.samplers.JointEpisodeSampler.sample_by_module`: every
agent module receives its agents' individual trajectories ``[B * n_m, L, ...]`` (episode-major),
the mixer module the joint episodes ``[B, L(+1), ...]``. A learner's ``compute_joint_losses``
puts each module's per-agent values back into agent order with :func:`stack_agents` and mixes them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch

from rllib_sit.replay import keys as K

MIXER_MODULE_ID = "__mixer__"
# What a TD loss through the mixer reads from the joint episode (an algorithm adds what it needs).
JOINT_KEYS = (K.STATE, K.REWARD, K.TERMINATED, K.FILLED)


def joint_batch(sampler, batch_size: int, agent_keys: Sequence[str], joint_keys: Sequence[str] = JOINT_KEYS):
    """``batch_size`` joint episodes of a :class:`~rllib_sit.replay.samplers.JointEpisodeSampler`
    split by module, with only the keys the learner reads; the agents' ``OBS_ALL`` holds their own
    observations only (decentralised networks: N times less data to copy)."""
    return sampler.sample_by_module(batch_size, MIXER_MODULE_ID, agent_keys=tuple(agent_keys),
                                    joint_keys=tuple(joint_keys), own_obs_only=True)


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


def agent_order(learner) -> List[str]:
    """The module id of every agent in the env's agent order: the joint-loss convention puts it in
    the mixer module's ``model_config["agent_modules"]`` (``OfflineMARLConfig.agent_module_order``,
    what ``mixer_module_spec`` writes)."""
    return list(learner.module[MIXER_MODULE_ID].unwrapped().model_config["agent_modules"])


class JointView:
    """What a ``compute_joint_losses`` opens with, once: the agent -> module order, the distinct agent
    modules and their agents' indices, the mixer's joint batch, the mixer module and the episode
    length L; :meth:`stack` puts every module's per-agent output into env agent order, :meth:`mix`
    / :meth:`mix_target` mix ``[B, L, N]`` values with the state at t / t+1, :meth:`targets` names
    the optimizers a term reaches."""

    def __init__(self, learner, batch: Mapping[str, Any], fwd_out: Mapping[str, Any]):
        self.agent_modules: List[str] = agent_order(learner)
        self.members: Dict[str, List[int]] = module_members(self.agent_modules)
        self.modules: List[str] = list(self.members)
        self.joint = batch[MIXER_MODULE_ID]
        self.mixer = learner.module[MIXER_MODULE_ID].unwrapped()
        self.filled = self.joint[K.FILLED]
        self.L = self.filled.shape[1]
        self.fwd_out = fwd_out

    def stack(self, key: str) -> torch.Tensor:
        """Every agent module's ``fwd_out[m][key]`` (``[B * n_m, L, ...]``) as ``[B, L, N, ...]``."""
        return self.stack_values({m: self.fwd_out[m][key] for m in self.modules})

    def stack_values(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-module values ``{m: [B * n_m, L, ...]}`` -> ``[B, L, N, ...]`` in env agent order."""
        return stack_agents(values, self.agent_modules)

    def mix(self, values: torch.Tensor) -> torch.Tensor:
        """The mixer on per-agent values ``[B, L, N]`` at the states s^0..s^{L-1}: ``[B, L]``."""
        return self.mixer.mix(values, self.joint[K.STATE][:, :self.L])

    def mix_target(self, values: torch.Tensor) -> torch.Tensor:
        """The target mixer on per-agent values at t+1 ``[B, L, N]`` with s^1..s^L, no gradient: ``[B, L]``."""
        with torch.no_grad():
            return self.mixer.mix_target(values, self.joint[K.STATE][:, 1:self.L + 1])

    def targets(self, optimizer: str, mixer_optimizer: str | None = None) -> List[Tuple[str, str]]:
        """``[(module, optimizer), ...]`` of a term: every agent module's ``optimizer`` (and the mixer's)."""
        out = [(m, optimizer) for m in self.modules]
        return out + [(MIXER_MODULE_ID, mixer_optimizer)] if mixer_optimizer else out
