"""A SIT sweep scales out unchanged: a 3-trial α grid on a 2-node local Ray cluster
(``ray.cluster_utils.Cluster``, head + one worker node, 1 CPU each) with the dataset on a path and
the Stage I store under a ``file://`` URI that both nodes reach. Two trials run at once (one per
node); Stage I is trained once (one ``trained``, the other trials ``hit``), every trial finishes
and reports an evaluation return, and the trials ran on both nodes (Ray node ids in the results).
The cluster is started by this module."""

import glob
import os

import pytest
import ray
from ray import tune
from ray.cluster_utils import Cluster

import rllib_sit
from rllib_sit.algorithms.sit import SITConfig
from rllib_sit.algorithms.sit import stage1_cache as S1

EVAL_RETURN = "evaluation/env_runners/episode_return_mean"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    from rllib_sit.data.synthetic import make_random_dataset
    from rllib_sit.envs import make_env

    root = tmp_path_factory.mktemp("cluster")
    data = make_random_dataset(make_env("mpe:cn_3ls3l"), 12, str(root / "cn_random"), seed=0)
    old = os.environ.get("RLLIB_SIT_DATA_DIR")
    os.environ["RLLIB_SIT_DATA_DIR"] = str(root / "data")  # before the nodes start: their workers inherit it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    rllib_sit.register_all()
    try:
        yield root, data
    finally:
        ray.shutdown()
        cluster.shutdown()
        if old is None:
            os.environ.pop("RLLIB_SIT_DATA_DIR", None)
        else:
            os.environ["RLLIB_SIT_DATA_DIR"] = old


@pytest.mark.timeout(300)
def test_grid_on_two_nodes_trains_stage1_once(two_nodes):
    root, data = two_nodes
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2 and ray.cluster_resources()["CPU"] == 2
    store = f"file://{root}/ardnem"
    config = (SITConfig().environment("mpe:cn_3ls3l").offline_data(input_=data)
              .training(ardnem_updates=4, ardnem_updates_per_iteration=2, agent_updates=2,
                        agent_updates_per_iteration=2, batch_size_episodes=4, rnn_hidden=8, critic_hidden=8,
                        reward_hidden=8, attention_hidden=8, num_torch_threads=1, stage1_cache=store,
                        alpha=tune.grid_search([0.2, 1.0, 5.0]))
              .evaluation(evaluation_interval=3, evaluation_duration=1)
              .debugging(seed=0))
    tuner = tune.Tuner("SIT", param_space=config,
                       tune_config=tune.TuneConfig(max_concurrent_trials=2),
                       run_config=tune.RunConfig(stop={"training_iteration": 3}, storage_path=str(root / "results"),
                                                 verbose=0, failure_config=tune.FailureConfig(max_failures=1),
                                                 checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True)))
    results = tuner.fit()
    assert len(results) == 3 and not results.errors
    metrics = [r.metrics for r in results]
    assert all(m["phases"]["agents_updates_done"] == 2 for m in metrics)
    assert all(m["evaluation"]["env_runners"]["num_episodes"] == 1 for m in metrics)
    caches = [m["stage1_cache"] for m in metrics]
    assert sorted(c["status"] for c in caches) == [S1.HIT, S1.HIT, S1.TRAINED]
    assert len({c["key"] for c in caches}) == 1
    assert [c["published"] for c in caches if c["status"] == S1.TRAINED] == [True]
    assert {c["node_id"] for c in caches} == nodes  # the trials ran on both nodes
    assert len(glob.glob(str(root / "ardnem" / "ardnem-*" / "COMPLETE.json"))) == 1
    assert not glob.glob(str(root / "ardnem" / "*.lock"))
    best = results.get_best_result(metric=EVAL_RETURN, mode="max")
    assert best.checkpoint is not None and best.config["alpha"] in (0.2, 1.0, 5.0)
