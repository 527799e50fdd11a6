"""The one-step functions an exported policy runs (``rllib-sit export`` traces them, see
:mod:`rllib_sit.export.exporter`): a recurrent actor's step from ``(obs, prev_action, h[, action_mask])``.
Plain torch modules over the models of :mod:`rllib_sit.models.gru_actor`; no export code here."""

from __future__ import annotations

from torch import nn


class DiscreteActorStep(nn.Module):
    """``(obs, prev_action, h, action_mask) -> (masked logits, h')``: ``GRUActor.step``, as the
    module's ``_forward_inference`` calls it."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor
        self.obs_dim, self.hidden, self.n_actions, self.act_dim = actor.obs_dim, actor.hidden, actor.n_actions, 0

    def forward(self, obs, prev_action, h, action_mask):
        logits, h_out = self.actor.step(obs, prev_action, h, action_mask)
        return logits, h_out


class ContinuousActorStep(nn.Module):
    """``(obs, prev_action, h) -> (pre-tanh mean, clamped log_std, h')`` of ``GaussianGRUActor``."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor
        self.obs_dim, self.hidden, self.n_actions, self.act_dim = actor.obs_dim, actor.hidden, 0, actor.act_dim
        self.low, self.high = actor.low, actor.high

    def forward(self, obs, prev_action, h):
        _, h_out = self.actor.step(obs, prev_action, h)
        mean = self.actor.mean(h_out)
        log_std = self.actor.log_std.clamp(self.actor.LOG_STD_MIN, self.actor.LOG_STD_MAX).expand_as(mean)
        return mean, log_std, h_out
