"""``RecurrentAgentTorchRLModule``: the decentralised GRU agent every algorithm's module builds on.

It owns the actor on the local action-observation history τ_i = (o_i^t, a_i^{t-1}) —
:class:`~rllib_sit.models.gru_actor.GRUActor` (masked logits) for discrete actions,
:class:`~rllib_sit.models.gru_actor.GaussianGRUActor` (tanh-Gaussian) for continuous ones — and
everything needed to act on RLlib's EnvRunners: the initial state (GRU state and a_i^{t-1}, carried
in ``STATE_IN``/``STATE_OUT``), greedy ``_forward_inference`` and sampling ``_forward_exploration``.
A subclass adds its learner-side networks in :meth:`setup_learner` (listed in
``get_non_inference_attributes`` so EnvRunners do not build them) and its ``_forward_train``.

``model_config``: ``obs_dim, discrete, n_actions, act_dim, action_low, action_high, rnn_hidden``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY
from rllib_sit.models.gru_actor import GaussianGRUActor, GRUActor
from rllib_sit.replay import keys as K


def gather_agent(x: torch.Tensor, agent_index: torch.Tensor) -> torch.Tensor:
    """``x [B, T, N, ...]``, ``agent_index [B]`` -> agent j's slice ``[B, T, ...]``."""
    idx = agent_index.long().view(-1, 1, 1, *([1] * (x.dim() - 3)))
    idx = idx.expand(-1, x.shape[1], 1, *x.shape[3:])
    return torch.gather(x, 2, idx).squeeze(2)


def split_env_obs(batch):
    """``(obs [B, obs_dim] float, avail [B, n] | None, time_rank)`` of an EnvRunner batch: the env's
    obs dict (``{"obs", "action_mask"}`` / ``{"obs"}``) or a plain array, with RLlib's time rank of 1
    (``[B, 1, ...]``, dropped here; ``time_rank`` says whether it was there) or none."""
    obs = batch[Columns.OBS]
    o, avail = (obs[OBS_KEY], obs.get(ACTION_MASK_KEY)) if isinstance(obs, dict) else (obs, None)
    time_rank = o.dim() == 3
    if time_rank:
        o = o[:, 0]
        avail = None if avail is None else avail[:, 0]
    return o.float(), avail, time_rank


def discrete_entropy(log_pi: torch.Tensor) -> torch.Tensor:
    """H = -Σ_a π(a) log π(a) over the last dim of log-probabilities (masked actions, whose
    probability is 0, add 0), without gradient."""
    with torch.no_grad():
        return -(log_pi.exp() * log_pi).sum(-1).float()


class RecurrentAgentTorchRLModule(TorchRLModule, InferenceOnlyAPI):
    """See the module docstring."""

    def setup(self):
        mc = self.model_config
        self.discrete = bool(mc["discrete"])
        self.n_actions, self.act_dim = int(mc.get("n_actions") or 0), int(mc.get("act_dim") or 0)
        if self.discrete:
            self.actor = GRUActor(mc["obs_dim"], self.n_actions, mc["rnn_hidden"])
        else:
            self.actor = GaussianGRUActor(mc["obs_dim"], self.act_dim, mc["rnn_hidden"],
                                          mc.get("action_low", -1.0), mc.get("action_high", 1.0))
        self.setup_learner()

    def setup_learner(self) -> None:
        """Subclass hook: learner-side networks (critics, ...)."""

    def get_non_inference_attributes(self) -> List[str]:
        """Learner-side attributes (EnvRunners only need the actor)."""
        return []

    # -- training helpers ------------------------------------------------------------------------
    def prev_action_feat(self, prev_actions: torch.Tensor) -> torch.Tensor:
        """a^{t-1} as a feature: one-hot (zeros for -1) or the action scaled to [-1, 1]."""
        if self.discrete:
            return self.actor.prev_action_features(prev_actions)
        return self.actor._unscale(prev_actions)

    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """Box actions scaled to [-1, 1] (the critics' continuous action input)."""
        return self.actor._unscale(actions)

    def log_prob(self, obs: torch.Tensor, prev_actions: torch.Tensor, actions: torch.Tensor,
                 avail: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log π(a_data | τ) over an unrolled trajectory: ``obs [B, T, od]``, ``actions [B, T(, A)]`` -> [B, T].

        Discrete: log-softmax of the logits masked to the available actions; continuous: the
        tanh-Gaussian density of the box action.
        """
        if self.discrete:
            logits = self.actor(obs, prev_actions, avail)
            return torch.log_softmax(logits, -1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return self.actor.log_prob(self.actor(obs, prev_actions), actions)

    def log_prob_and_entropy(self, obs: torch.Tensor, prev_actions: torch.Tensor, actions: torch.Tensor,
                             avail: Optional[torch.Tensor] = None):
        """``(log π(a_data | τ) [B, T], H(π(· | τ)) [B, T])`` from one unroll (the entropy is a
        diagnostic without gradient): :func:`discrete_entropy` of the masked softmax, or
        :meth:`gaussian_entropy` for a continuous policy."""
        if self.discrete:
            log_pi = torch.log_softmax(self.actor(obs, prev_actions, avail), -1)
            return log_pi.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), discrete_entropy(log_pi)
        logp = self.actor.log_prob(self.actor(obs, prev_actions), actions)
        return logp, self.gaussian_entropy(logp.shape)

    def gaussian_entropy(self, shape) -> torch.Tensor:
        """The pre-tanh Gaussian's entropy Σ_d ½ log(2πe) + log σ_d, broadcast to ``shape`` (the
        tanh-squashed density has no closed form; σ is state-independent, so this is one number
        per module), without gradient."""
        with torch.no_grad():
            log_std = self.actor.log_std.clamp(self.actor.LOG_STD_MIN, self.actor.LOG_STD_MAX).float()
            return (0.5 * math.log(2 * math.pi * math.e) + log_std).sum().expand(shape)

    def own_trajectory(self, batch: Dict[str, Any]):
        """``(own obs [B, L, od], prev actions [B, L(, A)], avail [B, L, n] | None)`` of an
        individual-trajectory batch (see :mod:`rllib_sit.replay.keys`)."""
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L]
        avail = batch.get(K.AVAIL_ACTIONS)
        return own, batch[K.PREV_ACTIONS][:, :L], None if avail is None else avail[:, :L]

    # -- acting on RLlib EnvRunners (decentralised execution) ---------------------------------
    def get_initial_state(self) -> Any:
        """GRU state and a_i^{t-1}: -1 ("none", zero one-hot) for discrete, zeros for continuous."""
        prev = torch.tensor(-1, dtype=torch.long) if self.discrete else torch.zeros(self.act_dim)
        return {"h": torch.zeros(self.actor.hidden), "prev_action": prev}

    def _act(self, batch, explore: bool) -> Dict[str, Any]:
        """One step of every agent in ``batch`` on τ_i = (o_i^t, a_i^{t-1}) and its GRU state.

        ``batch[OBS]`` is the env's obs dict (``{"obs", "action_mask"}`` / ``{"obs"}``) with RLlib's
        time rank of 1 (``[B, 1, ...]``); ``batch[STATE_IN]`` is ``{"h", "prev_action"}``. Discrete:
        arg max (``explore``: a sample) of the logits over available actions. Continuous: tanh of
        the mean (``explore``: of a Gaussian sample) in [-1, 1], which RLlib's default
        ``normalize_actions=True`` maps onto the action box; the state keeps the box action.
        """
        o, avail, time_rank = split_env_obs(batch)
        state = batch[Columns.STATE_IN]
        out, h = self.actor.step(o, state["prev_action"], state["h"], avail)
        if self.discrete:
            a = torch.distributions.Categorical(logits=out).sample() if explore else out.argmax(-1)
            prev = a
        else:
            pre = self.actor.mean(h)
            if explore:
                log_std = self.actor.log_std.clamp(self.actor.LOG_STD_MIN, self.actor.LOG_STD_MAX)
                pre = pre + log_std.exp() * torch.randn_like(pre)
            a = torch.tanh(pre)
            prev = self.actor._scale(a)
        return {Columns.ACTIONS: a.unsqueeze(1) if time_rank else a,
                Columns.STATE_OUT: {"h": h, "prev_action": prev}}

    def exploration_spec(self) -> Dict[str, Any]:
        """How ``explore=True`` samples, for an export's manifest (``rllib_sit.export.policy``'s
        ``exploration``): here a draw from the policy (``{"kind": "policy"}``: the categorical over the
        available actions / tanh of a Gaussian sample, as :meth:`_act`). A subclass whose ``_act``
        samples otherwise overrides both."""
        return {"kind": "policy"}  # rllib_sit.export.policy.EXPLORE_POLICY (export sits above models)

    def export_step(self) -> torch.nn.Module:
        """The one-step function ``rllib-sit export`` traces (:mod:`rllib_sit.export.exporter`): here
        the actor's step, as :meth:`_act` runs it (discrete ``(obs, prev_action, h, action_mask) ->
        (logits, h_out)``, continuous ``(obs, prev_action, h) -> (mean, log_std, h_out)``; attributes
        ``obs_dim, hidden, n_actions, act_dim``). A subclass whose ``_act`` acts on more than the actor
        overrides it with a step of the same signature whose outputs give :meth:`_act`'s actions
        (e.g. MABCQ: the behaviour-filtered Q values, both GRU states in ``h``)."""
        from rllib_sit.models.actor_steps import ContinuousActorStep, DiscreteActorStep

        return (DiscreteActorStep if self.discrete else ContinuousActorStep)(self.actor)

    def _forward_inference(self, batch, **kwargs):
        return self._act(batch, explore=False)

    def _forward_exploration(self, batch, **kwargs):
        return self._act(batch, explore=True)

    def _forward(self, batch, **kwargs):
        return self._act(batch, explore=False)


class TargetNetworksMixin(TargetNetworkAPI):
    """RLlib's ``TargetNetworkAPI`` for modules whose target nets are frozen copies of named
    sub-networks: ``target_networks = ("critic",)`` gives ``self.target_critic``. The learner
    (``OfflineMARLTorchLearner``) builds them and keeps them in sync."""

    target_networks: tuple = ()

    def make_target_networks(self) -> None:
        for name in self.target_networks:
            if getattr(self, f"target_{name}", None) is None:
                setattr(self, f"target_{name}", make_target_network(getattr(self, name)))

    def get_target_network_pairs(self):
        return [(getattr(self, n), getattr(self, f"target_{n}")) for n in self.target_networks]

    def forward_target(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}: target networks are called from _forward_train")
