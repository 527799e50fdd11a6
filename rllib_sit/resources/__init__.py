"""Package data shipped inside the wheel (read with :mod:`rllib_sit.data.paths`).

* ``specs/<family>.yaml`` — the data specs: every dataset composition of the SIT paper per
  environment and quality, with the pools' return ranges (:mod:`rllib_sit.data.composition`);
* ``policy_pools/<family>_<scenario>.json`` — the behaviour policy pool cards
  (:mod:`rllib_sit.data.pool_card`, rebuilt with ``rllib-sit data pools build``).

Generated datasets and caches never live here: see :func:`rllib_sit.data.paths.data_dir`.
"""
