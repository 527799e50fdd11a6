"""``PlanTrial``: one Tune trainable for every algorithm of a benchmark plan.

``rllib-sit benchmark`` runs the whole plan as ONE Tune experiment, so that Tune keeps every CPU
slot busy until the last cell ends (with one experiment per algorithm variant, the last trials of
each variant ran alone while a core idled). A Tune experiment has a single trainable; this one
builds the cell's algorithm from its trial config::

    {"cell": {"label": "SIT[alpha=5]", "algorithm": "SIT", "config": {<the algorithm's config dict>},
              "restore": {"checkpoint": ..., "iteration": ..., "time_total_s": ...}}}   # "restore": optional

and delegates to it: ``train()`` per step, its checkpoints (``save_to_path`` / ``restore_from_path``
into Tune's checkpoint folder, so a checkpoint is the algorithm's own), its resource request. With
``restore`` (the runner's resume of a cell an interrupted run left part-way) the algorithm starts
from that checkpoint and Tune's iteration counter from its iteration.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from ray import tune

CELL = "cell"  # trial config key of the cell: {"label", "algorithm", "config"}


def cell_of_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The cell dict of a trial config (``{"label", "algorithm", "config"}``)."""
    cell = config.get(CELL) if isinstance(config, dict) else None
    if not isinstance(cell, dict) or not {"label", "algorithm", "config"} <= set(cell):
        raise ValueError(f"a PlanTrial config needs {CELL!r}: {{'label', 'algorithm', 'config'}}; got keys "
                         f"{sorted(config) if isinstance(config, dict) else type(config).__name__}")
    return cell


def algorithm_config(config: Dict[str, Any]) -> Tuple[type, Any]:
    """(algorithm class, its AlgorithmConfig) of a trial config."""
    from rllib_sit.algorithms import algorithm_class

    cell = cell_of_config(config)
    cls = algorithm_class(cell["algorithm"])
    return cls, cls.get_default_config().update_from_dict(dict(cell["config"]))


class PlanTrial(tune.Trainable):
    """See the module docstring."""

    @classmethod
    def default_resource_request(cls, config):
        algo_cls, cfg = algorithm_config(config)
        return algo_cls.default_resource_request(cfg)

    def setup(self, config: Dict[str, Any]) -> None:
        import rllib_sit

        rllib_sit.register_all()
        algo_cls, cfg = algorithm_config(config)
        self.label = cell_of_config(config)["label"]
        # The trial's own storage: the algorithm's logdir is the trial's folder (without it, every
        # trial would leave an empty folder in ~/ray_results); Tune logs the results.
        self.algo = algo_cls(config=cfg, storage=self._storage)
        restore = cell_of_config(config).get("restore")
        if restore:  # a cell an interrupted run left part-way: go on from its newest checkpoint
            self.algo.restore_from_path(restore["checkpoint"])
            self._iteration = int(restore["iteration"])  # Tune's counter continues, as in Trainable.restore
            self._time_total = float(restore.get("time_total_s") or 0.0)

    def step(self) -> Dict[str, Any]:
        return self.algo.train()

    def save_checkpoint(self, checkpoint_dir: str):
        self.algo.save_to_path(checkpoint_dir)
        return None

    def load_checkpoint(self, checkpoint) -> None:
        self.algo.restore_from_path(checkpoint if isinstance(checkpoint, str) else checkpoint.path)

    def cleanup(self) -> None:
        algo = getattr(self, "algo", None)
        if algo is not None:
            algo.stop()


def trial_dirname(trial) -> str:
    """Short, readable trial folders: ``<label>_<map>_s<seed>_<trial id>`` (Tune's default name
    spells the whole config out)."""
    cell = cell_of_config(trial.config)
    c = cell["config"]
    name = f"{cell['label']}_{c.get('env')}_s{c.get('seed')}"
    name = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in name)[:80]
    return f"{name}_{trial.trial_id}"
