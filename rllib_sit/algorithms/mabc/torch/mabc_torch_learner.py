"""MABC's loss (SIT paper Eq. 11) and the TorchLearner that optimises it (RMSprop, Table 11)."""

from __future__ import annotations


from rllib_sit.algorithms.common.losses import behaviour_cloning_nll, masked_mean
from rllib_sit.algorithms.common.torch_learner import OfflineMARLTorchLearner
from rllib_sit.algorithms.mabc.mabc_learner import BC_LOSS, GREEDY_ACCURACY, GREEDY_MATCH
from rllib_sit.replay import keys as K


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
        self.log_policy_entropy(module_id, fwd_out[K.ENTROPY], filled)
        return {"actor": loss}
