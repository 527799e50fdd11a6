"""Build-and-train smoke tests of SIT on a tiny 3-agent / 2-type dataset (Ray started once)."""

import numpy as np
import pytest
import ray
import torch

from tiny_fixtures import TINY_ENV_ID, tiny_config

from rllib_sit.algorithms.sit import SIT
from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.algorithms.common.torch_learner import POLICY_ENTROPY


def test_train_runs_the_three_stages_and_reports_metrics(dataset):
    algo = tiny_config(dataset).evaluation(evaluation_interval=3, evaluation_duration=2).build_algo()
    try:
        r1 = algo.train()
        assert r1["phases"]["current"] == "ardnem" and r1["phases"]["ardnem_updates_done"] == 2
        assert np.isfinite(r1["learners"][K.ARDNEM_MODULE_ID][K.ARDNEM_LOSS])
        r2 = algo.train()  # finishes Stage I, runs Stage II
        assert r2["phases"]["current"] == "agents" and r2["phases"]["dper_updates_done"] == 1
        assert set(r2["algorithm"]["dper"]) == {"scout", "tank"}
        assert r2["algorithm"]["dper"]["scout"]["num_trajectories"] == 80  # 40 episodes x 2 scouts
        assert set(r2["algorithm"]["r_hat_mean_per_agent"]) == {"a0", "a1", "b0"}
        r3 = algo.train()  # Stage III + evaluation
        for t in ("scout", "tank"):
            assert np.isfinite(r3["learners"][t][K.CRITIC_LOSS]) and np.isfinite(r3["learners"][t][K.ACTOR_LOSS])
            assert 0 < r3["learners"][t][POLICY_ENTROPY] <= np.log(3) + 1e-6  # tiny:coop: 3 actions
        ev = r3["evaluation"]["env_runners"]
        assert ev["num_episodes"] == 2 and "win_rate" in ev and np.isfinite(ev["episode_return_mean"])
    finally:
        algo.stop()


def test_target_critic_frozen_between_syncs(dataset):
    algo = tiny_config(dataset, ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=10,
                       agent_updates_per_iteration=3, target_update_interval=4).build_algo()
    try:
        algo.train()  # Stage I + II
        mod = algo.learner_group._learner.module["scout"].unwrapped()
        target0 = {k: v.clone() for k, v in mod.target_critic.state_dict().items()}
        algo.train()  # 3 updates < d = 4
        for k, v in mod.target_critic.state_dict().items():
            torch.testing.assert_close(v, target0[k])
        assert any(not torch.equal(v, target0[k]) for k, v in mod.critic.state_dict().items())
        assert all(not p.requires_grad for p in mod.target_critic.parameters())
        algo.train()  # updates 4..6: synced at 4, then critic moves on
        assert algo.learner_group._learner.module_updates("scout") == 6
        assert any(not torch.equal(v, target0[k]) for k, v in mod.target_critic.state_dict().items())
    finally:
        algo.stop()


def test_checkpoint_round_trip_restores_stage_and_dper(dataset, tmp_path):
    algo = tiny_config(dataset).build_algo()
    try:
        algo.train()
        algo.train()
        algo.train()  # mid Stage III: 3 of 6 agent updates
        assert algo.schedule.current_name == "agents" and algo.schedule.done["agents"] == 3
        probs = ray.get(algo.dper.get_state.remote())["leaves"]
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
        ev_before = algo.evaluate()["env_runners"]["episode_return_mean"]
        w_before = algo.learner_group._learner.module["tank"].unwrapped().actor.fc_out.weight.detach().clone()
    finally:
        algo.stop()
    restored = SIT.from_checkpoint(ckpt)
    try:
        assert restored.schedule.current_name == "agents" and restored.schedule.done["agents"] == 3
        state = ray.get(restored.dper.get_state.remote())
        for t, leaves in probs.items():
            np.testing.assert_array_equal(state["leaves"][t], leaves)
        w_after = restored.learner_group._learner.module["tank"].unwrapped().actor.fc_out.weight
        torch.testing.assert_close(w_after, w_before)
        assert restored.evaluate()["env_runners"]["episode_return_mean"] == ev_before
        r = restored.train()  # resumes in Stage III
        assert r["phases"]["agents_updates_done"] == 6 and r["phases"]["current"] == "done"
    finally:
        restored.stop()


@pytest.mark.parametrize("ablation", [
    dict(decomposition="none"), dict(decomposition="monotonic"), dict(use_attention=False),
    dict(ensemble=False), dict(use_gat=False), dict(prioritized=False), dict(ardnem_batch_timesteps=16),
])
def test_ablations_train(dataset, ablation):
    algo = tiny_config(dataset, ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=2,
                       agent_updates_per_iteration=2, **ablation).build_algo()
    try:
        algo.train()
        r = algo.train()
        assert r["phases"]["agents_updates_done"] == 2
        for t in ("scout", "tank"):
            assert np.isfinite(r["learners"][t][K.CRITIC_LOSS])
        if ablation.get("prioritized") is False:
            assert r["algorithm"]["dper"]["scout"]["ess"] == pytest.approx(80.0)
    finally:
        algo.stop()


def test_missing_dataset_fails_with_a_clear_message(ray_session, tmp_path):
    from rllib_sit.algorithms.sit import SITConfig

    cfg = (SITConfig().environment(TINY_ENV_ID).offline_data(input_=str(tmp_path / "nope"))
           .training(priority_scale="minmax"))
    with pytest.raises(Exception, match="does not exist"):
        cfg.build_algo()


def test_stage2_ray_data_pass_matches_local_pass(dataset):
    """Stage II through Ray Data map_batches gives the same r̂, û, p̂ as the in-process pass."""
    from rllib_sit.algorithms.sit import stage2
    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import build_ardnem
    from rllib_sit.data.episode_store import EpisodeStore

    store = EpisodeStore.open(dataset)
    episodes = store.columns
    mc = tiny_config(dataset).extra_module_specs(store.info)[K.ARDNEM_MODULE_ID].model_config
    torch.manual_seed(0)
    net = build_ardnem(mc).eval()
    local = stage2.decompose_episodes(net, episodes, 0.99, batch_episodes=16)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    remote = stage2.decompose_with_ray_data(dataset, mc, sd, 0.99, episodes["episode_id"], batch_episodes=16)
    for k in (stage2.R_HAT, stage2.U_HAT, stage2.PRIORITY):
        np.testing.assert_allclose(remote[k], local[k], rtol=1e-5, atol=1e-6)


def test_continuous_actions_train_and_evaluate(ray_session, tmp_path):
    """The MAMuJoCo variant (tanh-Gaussian actor, critic on continuous actions) on a tiny box env."""
    from tiny_fixtures import TINY_CONT_ENV_ID, TinyContinuousEnv, register_tiny_continuous_env

    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 12, str(tmp_path / "cont"), seed=0)
    algo = (SITConfig().environment(TINY_CONT_ENV_ID).offline_data(input_=path)
            .training(ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=2,
                      agent_updates_per_iteration=2, batch_size_episodes=4, priority_scale="minmax")
            .evaluation(evaluation_duration=2).debugging(seed=0)).build_algo()
    try:
        algo.train()
        r = algo.train()
        assert np.isfinite(r["learners"]["leg"][K.CRITIC_LOSS]) and np.isfinite(r["learners"]["leg"][K.ACTOR_LOSS])
        ev = algo.evaluate()["env_runners"]
        assert ev["episode_len_mean"] == 5 and "win_rate" not in ev
    finally:
        algo.stop()


def test_dper_actor_killed_mid_stage3_is_rebuilt_and_the_run_goes_on(dataset):
    """The DPER actor's process dies (SIGKILL) in Stage III: SIT rebuilds it from the ARDNEM (Stage II
    again, same probabilities) and finishes its updates."""
    import os
    import signal

    algo = tiny_config(dataset, agent_updates=6, agent_updates_per_iteration=3).build_algo()
    try:
        algo.train()
        algo.train()  # Stage I done, Stage II ran
        algo.train()  # 3 of 6 agent updates
        probs = {t: ray.get(algo.dper.probabilities.remote(t)) for t in ("scout", "tank")}
        pid = ray.get(algo.dper.__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        r = algo.train()
        assert r["phases"]["agents_updates_done"] == 6 and r["phases"]["current"] == "done"
        assert r["algorithm"]["dper_restarts"] == 1 and np.isfinite(r["learners"]["tank"][K.CRITIC_LOSS])
        for t, p in probs.items():  # the rebuilt DPER samples by the same Eq. 7 probabilities
            np.testing.assert_allclose(ray.get(algo.dper.probabilities.remote(t)), p, rtol=1e-6)
    finally:
        algo.stop()
