"""Suite-wide settings: quiet, deterministic, CPU-only runs on a 2-core machine."""

import os

# Set before Ray/torch are imported by the test modules.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Every plain ``ray.init()`` of a test, and of the CLIs and scripts it starts, starts a Ray of its
# own: the suite runs two test files at once (pytest-xdist, README), and test_cluster_sweep's 2-node
# cluster registers itself as the machine's current cluster, which a plain ray.init() would join.
os.environ.setdefault("RAY_ADDRESS", "local")

import torch  # noqa: E402

torch.set_num_threads(1)

# Memory-mapped column caches of test datasets go to a throw-away folder, not the repository's
# offline_data/cache (rllib_sit.data.column_cache).
# SIT's Stage I cache likewise (rllib_sit.algorithms.sit.stage1_cache).
if "RLLIB_SIT_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["RLLIB_SIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="rllib_sit_test_cache_")
if "RLLIB_SIT_STAGE1_CACHE" not in os.environ:
    import tempfile

    os.environ["RLLIB_SIT_STAGE1_CACHE"] = tempfile.mkdtemp(prefix="rllib_sit_test_stage1_")
