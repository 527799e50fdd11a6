"""Trained policies out of RLlib: export actors to TorchScript/ONNX, run them without Ray.

* :class:`ExportedPolicy` / :class:`ExportedActor` (:mod:`.policy`): load an exported folder and act
  (NumPy + torch or onnxruntime; importing them imports neither Ray nor RLlib).
* :func:`export_checkpoint` (:mod:`.exporter`, imported on first use: it needs Ray/RLlib and torch):
  checkpoint -> exported folder. Command line: ``rllib-sit export CHECKPOINT --out DIR``.
"""

from rllib_sit.export.policy import ExportedActor, ExportedPolicy, ExportError

__all__ = ["ExportedActor", "ExportedPolicy", "ExportError", "export_checkpoint"]


def __getattr__(name):
    if name == "export_checkpoint":
        from rllib_sit.export.exporter import export_checkpoint

        return export_checkpoint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
