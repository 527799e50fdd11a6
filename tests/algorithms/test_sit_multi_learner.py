"""SIT with two remote learners (torch DDP): every stage runs and the replicas stay identical."""

import numpy as np
import torch

from tiny_fixtures import tiny_config

from rllib_sit.algorithms.sit import sit_learner as K


def test_two_learners_train_all_stages_with_identical_replicas(dataset):
    # 2 CPUs: the algorithm process (1) + two learners (0.5 each); the DPER actor takes none.
    algo = tiny_config(dataset).learners(num_learners=2, num_cpus_per_learner=0.5).build_algo()
    try:
        assert not algo.learner_group.is_local
        results = [algo.train() for _ in range(4)]
        assert [r["phases"]["current"] for r in results] == ["ardnem", "agents", "agents", "done"]
        for t in ("scout", "tank"):
            assert np.isfinite(results[-1]["learners"][t][K.CRITIC_LOSS])
        states = algo.learner_group.foreach_learner(lambda learner: learner.get_state(components="rl_module"))
        a, b = (s.get() if hasattr(s, "get") else s for s in states)
        a, b = a["rl_module"], b["rl_module"]
        for mid in ("scout", "tank", K.ARDNEM_MODULE_ID):
            for k in a[mid]:
                torch.testing.assert_close(torch.as_tensor(a[mid][k]), torch.as_tensor(b[mid][k]))
        assert np.isfinite(algo.evaluate()["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
