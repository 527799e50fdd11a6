"""FacMAC's agent module: a deterministic recurrent actor, a per-agent critic Q_i(τ_i, a_i), and
their target copies (the mixer is the base's learner-only QMixer module).

The actor is the base's :class:`~rllib_sit.models.gru_actor.GaussianGRUActor` used
deterministically: μ_i(τ_i) = tanh(mean(GRU(τ_i))) in [-1, 1], scaled onto the action box. Its
``log_std`` is never used (and never trained); greedy acting on EnvRunners (inherited) already
takes tanh of the mean, so evaluation runs exactly μ_i.
"""

from __future__ import annotations

import torch
from ray.rllib.core.columns import Columns
from torch import nn

from rllib_sit.algorithms.facmac.facmac_learner import PI, Q_PI
from rllib_sit.export.policy import EXPLORE_GAUSSIAN_NOISE, gaussian_noise_action
from rllib_sit.models.blocks import mlp
from rllib_sit.models.recurrent_agent import RecurrentAgentTorchRLModule, TargetNetworksMixin, gather_agent
from rllib_sit.replay import keys as K


# Stddev of the Gaussian noise of FacMAC's exploration (its sampled evaluation and an exported
# policy's explore=True), in [-1, 1] action units.
ACT_NOISE = 0.1


class FACMACCritic(nn.Module):
    """Q_i(τ_i, a_i) with τ_i = (o_i^t, a_i^{t-1}): FacMAC's per-agent critic (``FACMACCritic``:
    fc -> ReLU -> fc -> ReLU -> fc -> 1), on o_i^t ⊕ a_i^{t-1} ⊕ a_i^t (actions scaled to [-1, 1])."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 32):
        super().__init__()
        self.net = mlp(obs_dim + 2 * act_dim, [hidden, hidden], 1)

    def forward(self, obs: torch.Tensor, prev_action: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``obs [.., obs_dim]``, ``prev_action [.., A]``, ``action [.., A]`` (in [-1, 1]) -> Q ``[..]``."""
        return self.net(torch.cat([obs, prev_action, action], -1)).squeeze(-1)


class FACMACAgentTorchRLModule(TargetNetworksMixin, RecurrentAgentTorchRLModule):
    """Actor μ_i and critic Q_i of one agent type plus ``target_actor``/``target_critic`` (built and
    Polyak-averaged by the learner through RLlib's ``TargetNetworkAPI``).

    ``model_config``: the recurrent agent's (obs_dim, discrete=False, act_dim, action_low,
    action_high, rnn_hidden) + critic_hidden. EnvRunners only need the actor.
    """

    target_networks = ("actor", "critic")

    def setup_learner(self) -> None:
        self.critic = FACMACCritic(self.model_config["obs_dim"], self.act_dim, self.model_config["critic_hidden"])

    def get_non_inference_attributes(self):
        return ["critic", "target_actor", "target_critic"]

    def _act(self, batch, explore: bool):
        """Greedy: μ_i(τ_i) (the base's tanh of the mean). ``explore``: FacMAC's Gaussian exploration,
        μ_i + N(0, ACT_NOISE²) per action dimension in [-1, 1] units, clipped to [-1, 1] (oxwhirl/facmac
        ``facmac_mamujoco.yaml``: ``exploration_mode: gaussian``, ``act_noise: 0.1``), not the actor's
        untrained ``log_std``. The rule is :func:`~rllib_sit.export.policy.gaussian_noise_action`, which
        the exported policy applies too (:meth:`exploration_spec`)."""
        out = super()._act(batch, explore=False)
        if explore:
            a = out[Columns.ACTIONS]
            a = gaussian_noise_action(a, torch.randn_like(a), ACT_NOISE)
            prev = out[Columns.STATE_OUT]["prev_action"]
            out[Columns.ACTIONS] = a
            out[Columns.STATE_OUT]["prev_action"] = self.actor._scale(a.reshape(prev.shape))
        return out

    def exploration_spec(self):
        """An export's sampling rule: the Gaussian action noise of :meth:`_act`."""
        return {"kind": EXPLORE_GAUSSIAN_NOISE, "std": ACT_NOISE}

    def policy(self, obs: torch.Tensor, prev_actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        """μ_i(τ_i^t) = tanh(mean) in [-1, 1] over an unrolled trajectory ``[B, T, A]`` (``target``: μ'_i)."""
        actor = self.target_actor if target else self.actor
        return torch.tanh(actor(obs, prev_actions))

    def _forward_train(self, batch, **kwargs):
        """Q_i at the data's a^t (critic loss), Q_i at μ_i(τ^t) and μ_i itself (actor loss), and the
        target networks' Q'_i(τ^{t+1}, μ'_i(τ^{t+1})) (TD target); t = 0..L-1.

        τ^{t+1} = (o^{t+1}, a^t) with a^t from the data; o^L is the final observation.
        """
        L = batch[K.FILLED].shape[1]
        own = gather_agent(batch[K.OBS_ALL], batch[K.AGENT_INDEX])[:, :L + 1]
        prev = batch[K.PREV_ACTIONS][:, :L + 1]  # box actions a^{t-1}, zeros at t = 0
        prev_u = self.action_input(prev)
        pi = self.policy(own[:, :L], prev[:, :L])
        out = {
            K.Q_TAKEN: self.critic(own[:, :L], prev_u[:, :L], self.action_input(batch[K.ACTIONS])),
            Q_PI: self.critic(own[:, :L], prev_u[:, :L], pi),
            PI: pi,
        }
        with torch.no_grad():
            pi_next = self.policy(own, prev, target=True)[:, 1:L + 1]
            out[K.Q_NEXT_TARGET] = self.target_critic(own[:, 1:L + 1], prev_u[:, 1:L + 1], pi_next)
        return out
