"""MABC's loss (SIT paper Eq. 11) and the TorchLearner that optimises it (RMSprop, Table 11)."""

from __future__ import annotations

import torch

from rllib_sit.algorithms.common.losses import masked_mean
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.mabc.mabc_learner import BC_LOSS, GREEDY_ACCURACY, GREEDY_MATCH
from rllib_sit.replay import keys as K


def behaviour_cloning_nll(logp: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Eq. 11: L_BC(θ_i) = E_{τ_i, a_i ~ B}[−log π_i(a_i | τ_i)].

    ``logp [B, L]`` = log π(a_j^t | τ_j^t) on B individual trajectories of agents j of one type;
    the expectation is the mean over their real steps (padded steps, ``filled`` = 0, excluded).
    """
    return -masked_mean(logp, filled)


class MABCTorchLearner(OfflineMARLTorchLearner):
    """One optimizer per agent module (its actor, ``config.lr``) on :func:`behaviour_cloning_nll`."""

    def optimizer_groups(self, module_id, module, config):
        return {"actor": (module.actor.parameters(), config.lr)}

    def compute_losses_for_module(self, *, module_id, config, batch, fwd_out):
        filled = batch[K.FILLED]
        loss = behaviour_cloning_nll(fwd_out[K.LOGP], filled)
        metrics = {BC_LOSS: loss.item()}
        if GREEDY_MATCH in fwd_out:
            metrics[GREEDY_ACCURACY] = masked_mean(fwd_out[GREEDY_MATCH], filled).item()
        self.metrics.log_dict(metrics, key=module_id, window=1)
        return {"actor": loss}
