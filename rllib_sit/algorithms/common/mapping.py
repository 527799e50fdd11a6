"""Agent -> RLModule mappings of the offline algorithms (RLlib ``policy_mapping_fn`` objects).

``"agent_type"`` (the default): agents of one type share one module whose id is the type name
(``EnvInfo.agent_types``), SIT's i(j) sharing. ``"agent_id"``: one module per agent, module id =
agent id (the fully decentralized algorithms). Both are picklable objects rather than closures,
because a YAML config cannot hold a callable and EnvRunners receive the mapping pickled.
"""

from __future__ import annotations

from typing import Dict, List

MODULE_MAPPINGS = ("agent_type", "agent_id")


def module_ids_by_agent(agents: List[str], agent_types: List[str], mode: str) -> Dict[str, str]:
    """``{agent id: module id}`` for ``mode`` in :data:`MODULE_MAPPINGS`."""
    if mode == "agent_type":
        return dict(zip(agents, agent_types))
    if mode == "agent_id":
        return {a: a for a in agents}
    raise ValueError(f"module_mapping={mode!r} is invalid; expected one of {MODULE_MAPPINGS}")


class AgentModuleMapping:
    """RLlib ``policy_mapping_fn(agent_id, episode, **kwargs)`` for a registered env id.

    The env's agents and types are read from ``make_env(env_id)`` on first use in each process.
    """

    def __init__(self, env_id: str, env_config: dict | None = None, mode: str = "agent_type"):
        if mode not in MODULE_MAPPINGS:
            raise ValueError(f"module_mapping={mode!r} is invalid; expected one of {MODULE_MAPPINGS}")
        self.env_id = env_id
        self.env_config = dict(env_config or {})
        self.mode = mode
        self._modules = None

    def __call__(self, agent_id, episode=None, **kwargs) -> str:
        if self._modules is None:
            from rllib_sit.envs.registry import make_env

            env = make_env(self.env_id, **self.env_config)
            self._modules = module_ids_by_agent(env.info.agents, env.info.agent_types, self.mode)
            env.close()
        if agent_id not in self._modules:
            raise ValueError(f"{self.env_id}: unknown agent id {agent_id!r}; expected one of {sorted(self._modules)}")
        return self._modules[agent_id]

    def __eq__(self, other) -> bool:
        return (isinstance(other, AgentModuleMapping) and (self.env_id, self.env_config, self.mode)
                == (other.env_id, other.env_config, other.mode))

    def __hash__(self) -> int:
        return hash((self.env_id, self.mode))
