"""Helpers of the tests that drive the ``rllib`` entry point in a subprocess, as a user runs it."""

import shutil
import subprocess
import sys


def rllib_cmd():
    """The installed ``rllib`` script, or the module when the package is not installed."""
    exe = shutil.which("rllib")
    return [exe] if exe else [sys.executable, "-m", "rllib_sit.cli.rllib_cmd"]


def rllib(*args, timeout=120, **kwargs):
    """Run ``rllib ARGS``; return the process and its non-blank output lines (stdout, then stderr)."""
    proc = subprocess.run(rllib_cmd() + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)
    return proc, [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def untrained_mabc_checkpoint(dataset, out):
    """A MABC on a smac:2s3z dataset (a package env, so a fresh CLI process finds it), built and saved
    untrained: a near-uniform policy. Ray runs in this process for the call only, so the CLI starts its own."""
    import ray

    from rllib_sit.algorithms.mabc import MABCConfig

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        algo = (MABCConfig().environment("smac:2s3z").offline_data(input_=str(dataset))
                .training(batch_size_episodes=2).debugging(seed=0)).build_algo()
        path = algo.save(str(out)).checkpoint.path
        algo.stop()
    finally:
        ray.shutdown()
    return path
