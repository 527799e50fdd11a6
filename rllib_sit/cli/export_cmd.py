"""``rllib-sit export``: the actors of a checkpoint as TorchScript and ONNX files, usable without Ray.

    rllib-sit export CHECKPOINT [--out DIR] [--format torchscript onnx] [--overwrite]

Then, in any Python with torch or onnxruntime::

    from rllib_sit.export import ExportedPolicy
    policy = ExportedPolicy.load(DIR)                 # backend="onnx" for onnxruntime
    actions, state = policy.act(observations, action_masks, state)
"""

from __future__ import annotations

import argparse
import os

BACKENDS = ("torchscript", "onnx")  # rllib_sit.export.policy.BACKENDS (not imported: keeps --help light)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="algorithm checkpoint folder (algo.save_to_path, or a Tune trial's "
                                           "checkpoint_00000N)")
    parser.add_argument("--out", help="export folder (default: <checkpoint>-exported)")
    parser.add_argument("--format", nargs="+", choices=BACKENDS, default=list(BACKENDS),
                        help="formats to write (default: both)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export folder")


def run(args: argparse.Namespace) -> int:
    import json

    from rllib_sit.export.exporter import export_checkpoint
    from rllib_sit.export.policy import MANIFEST_FILE

    out = args.out or os.path.abspath(args.checkpoint).rstrip(os.sep) + "-exported"
    try:
        out = export_checkpoint(args.checkpoint, out, args.format, overwrite=args.overwrite)
    except FileExistsError as e:  # the dispatcher prints ValueErrors as one clean line
        raise ValueError(str(e)) from None
    with open(os.path.join(out, MANIFEST_FILE)) as f:
        manifest = json.load(f)
    for module, spec in manifest["modules"].items():
        agents = [a for a, m in manifest["agents"].items() if m == module]
        print(f"{module}: {', '.join(spec['files'].values())}  (agents: {', '.join(agents) or '-'})")
    if manifest.get("warning"):
        print(f"warning: {manifest['warning']}")
    print(out)
    return 0
