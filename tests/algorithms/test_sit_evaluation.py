"""SIT evaluation through RLlib's evaluation EnvRunner on the tiny 3-agent env (Ray started once)."""

import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from tiny_fixtures import tiny_config

from rllib_sit.algorithms.sit import SIT
from rllib_sit.algorithms.common.mapping import AgentModuleMapping
from rllib_sit.envs.base import ACTION_MASK_KEY, OBS_KEY
from rllib_sit.models.gru_actor import MASKED_LOGIT

EVAL_KEYS = ("episode_return_mean", "episode_return_std", "episode_return_min", "episode_return_max",
             "episode_len_mean", "num_episodes", "win_rate")


@pytest.fixture(scope="module")
def algo(dataset):
    """A SIT in Stage III (trained actors) with a 4-episode evaluation."""
    a = tiny_config(dataset).evaluation(evaluation_duration=4).build_algo()
    for _ in range(3):
        a.train()
    assert a.schedule.current_name == "agents"
    yield a
    a.stop()


def _greedy_replay(actor, obs, masks, prev_actions):
    """The old greedy rollout's choice, step by step with ``actor.step`` (arg max over available actions)."""
    h = actor.initial_state(1)
    out = []
    for t in range(len(obs)):
        logits, h = actor.step(torch.as_tensor(obs[t:t + 1]), torch.as_tensor(prev_actions[t:t + 1]), h,
                               torch.as_tensor(masks[t:t + 1]))
        out.append(int(logits.argmax(-1)))
    return np.array(out)


def _sample_episodes(algo, n=3):
    runner = algo.eval_env_runner
    episodes = runner.sample(num_episodes=n, explore=False)
    runner.get_metrics()  # don't leave these episodes in the next evaluation's metrics
    return episodes


def test_evaluation_runs_on_the_local_evaluation_env_runner(algo):
    assert algo.env_runner_group is None  # offline: no training EnvRunners
    assert algo.eval_env_runner_group is not None and algo.eval_env_runner_group.num_remote_env_runners() == 0
    runner = algo.eval_env_runner
    # Modules by agent type, actors only (inference-only: no critics, no ARDNEM).
    assert set(runner.module.keys()) == {"scout", "tank"}
    assert not hasattr(runner.module["scout"], "critic") and not hasattr(runner.module["scout"], "target_critic")
    assert isinstance(algo.config.policy_mapping_fn, AgentModuleMapping)
    assert [algo.config.policy_mapping_fn(a, None) for a in ("a0", "a1", "b0")] == ["scout", "scout", "tank"]
    # The EnvRunner's actor has the learner's weights.
    learner_actor = algo.learner_group._learner.module["tank"].unwrapped().actor
    algo.evaluate()
    for k, v in runner.module["tank"].actor.state_dict().items():
        torch.testing.assert_close(v, learner_actor.state_dict()[k])

    ev = algo.evaluate()["env_runners"]
    assert all(k in ev for k in EVAL_KEYS), sorted(ev)
    assert ev["num_episodes"] == 4
    assert ev["episode_return_min"] <= ev["episode_return_mean"] <= ev["episode_return_max"]
    assert 0.0 <= ev["episode_return_std"] <= (ev["episode_return_max"] - ev["episode_return_min"]) / 2 + 1e-9
    assert 0.0 <= ev["win_rate"] <= 1.0 and 4 <= ev["episode_len_mean"] <= 6
    # Team return (each agent receives it), not RLlib's sum over the 3 agents.
    for agent_return in ev["agent_episode_returns_mean"].values():
        assert agent_return == pytest.approx(ev["episode_return_mean"])
    assert ev["num_module_steps_sampled"]["scout"] == 2 * ev["num_module_steps_sampled"]["tank"]


def test_evaluation_metrics_are_the_episodes_team_returns_and_wins(algo):
    episodes = _sample_episodes(algo, 5)
    returns = [np.mean([sa.get_return() for sa in ep.agent_episodes.values()]) for ep in episodes]
    wins = [any(i.get("battle_won") for i in ep.agent_episodes["a0"].get_infos()) for ep in episodes]
    algo.config._is_frozen = False
    algo.config.evaluation_duration = 5
    try:
        ev = algo.evaluate()["env_runners"]  # same reset seed -> the same 5 episodes
    finally:
        algo.config.evaluation_duration = 4
        algo.config._is_frozen = True
    assert ev["episode_return_mean"] == pytest.approx(np.mean(returns))
    assert ev["episode_return_std"] == pytest.approx(np.std(returns))
    assert ev["episode_return_max"] == pytest.approx(np.max(returns))
    assert ev["win_rate"] == pytest.approx(np.mean(wins))


def test_env_runner_actions_are_the_greedy_step_by_step_choice(algo):
    """Every action the EnvRunner took = arg max of ``actor.step`` on (o_t, a_{t-1}) from h_0."""
    module = algo.eval_env_runner.module
    n_checked = 0
    for ep in _sample_episodes(algo):
        for aid, sa in ep.agent_episodes.items():
            obs = sa.get_observations()
            actions = np.asarray(sa.get_actions())
            T = len(actions)
            prev = np.concatenate([[-1], actions[:-1]])
            with torch.no_grad():
                expected = _greedy_replay(module[algo.config.policy_mapping_fn(aid)].actor,
                                          np.asarray(obs[OBS_KEY][:T], np.float32),
                                          np.asarray(obs[ACTION_MASK_KEY][:T], np.float32), prev)
            np.testing.assert_array_equal(actions, expected)
            if aid == "b0":
                assert not np.any(actions == 2)  # unavailable to the tank
            n_checked += T
    assert n_checked > 0


def test_prev_action_state_is_none_at_t0_then_the_action_taken(algo):
    module = algo.eval_env_runner.module["scout"]
    init = module.get_initial_state()
    assert int(init["prev_action"]) == -1 and torch.all(init["h"] == 0)
    assert torch.all(module.actor.prev_action_features(init["prev_action"].view(1)) == 0)  # "none": zero one-hot
    for ep in _sample_episodes(algo, 2):
        for sa in ep.agent_episodes.values():
            state_out = sa.get_extra_model_outputs(Columns.STATE_OUT)
            np.testing.assert_array_equal(np.asarray(state_out["prev_action"]), np.asarray(sa.get_actions()))
            assert np.asarray(state_out["h"]).shape == (len(sa), module.actor.hidden)


def test_forward_inference_is_the_masked_arg_max_of_actor_step(algo):
    torch.manual_seed(0)
    module = algo.config.build_module_specs(algo.env_info).rl_module_specs["tank"].build()
    B, H = 6, module.actor.hidden
    obs = torch.randn(B, 1, 4)
    mask = torch.ones(B, 1, 3)
    mask[:, 0, 2] = 0.0  # action 2 is unavailable ...
    with torch.no_grad():
        module.actor.fc_out.bias[2] += 100.0  # ... although it has by far the largest logit
    state = {"h": torch.randn(B, H), "prev_action": torch.tensor([-1, 0, 1, 2, 1, -1])}
    batch = {Columns.OBS: {OBS_KEY: obs, ACTION_MASK_KEY: mask}, Columns.STATE_IN: state}
    out = module.forward_inference(batch)
    with torch.no_grad():
        logits, h = module.actor.step(obs[:, 0], state["prev_action"], state["h"], mask[:, 0])
        unmasked, _ = module.actor.step(obs[:, 0], state["prev_action"], state["h"])
    assert out[Columns.ACTIONS].shape == (B, 1)  # RLlib's time rank of 1 kept
    np.testing.assert_array_equal(out[Columns.ACTIONS][:, 0].numpy(), logits.argmax(-1).numpy())
    assert torch.all(unmasked.argmax(-1) == 2) and not torch.any(out[Columns.ACTIONS] == 2)
    assert torch.all(logits[:, 2] == MASKED_LOGIT)
    torch.testing.assert_close(out[Columns.STATE_OUT]["h"], h)
    torch.testing.assert_close(out[Columns.STATE_OUT]["prev_action"], out[Columns.ACTIONS][:, 0])
    explored = torch.cat([module.forward_exploration(batch)[Columns.ACTIONS] for _ in range(50)])
    assert not torch.any(explored == 2) and len(torch.unique(explored)) == 2  # samples, never masked


def test_same_seed_same_evaluation(algo):
    a, b = algo.evaluate()["env_runners"], algo.evaluate()["env_runners"]
    for k in ("episode_return_mean", "episode_return_std", "episode_len_mean", "win_rate"):
        assert a[k] == b[k]


def test_user_policy_mapping_fn_wins(dataset):
    def fn(agent_id, episode, **kwargs):
        return "scout" if agent_id.startswith("a") else "tank"

    cfg = tiny_config(dataset).multi_agent(policy_mapping_fn=fn)
    cfg.validate()
    assert cfg.policy_mapping_fn is fn


def test_checkpoint_restore_evaluates_with_the_trained_weights(dataset, tmp_path):
    algo = tiny_config(dataset).evaluation(evaluation_duration=3).build_algo()
    try:
        for _ in range(3):
            algo.train()
        ev_before = algo.evaluate()["env_runners"]
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    restored = SIT.from_checkpoint(ckpt)
    try:
        learner = restored.learner_group._learner.module["scout"].unwrapped().actor.state_dict()
        for k, v in restored.eval_env_runner.module["scout"].actor.state_dict().items():
            torch.testing.assert_close(v, learner[k])  # synced on restore, before any evaluate()
        ev_after = restored.evaluate()["env_runners"]
        for k in ("episode_return_mean", "episode_return_std", "episode_len_mean", "win_rate", "num_episodes"):
            assert ev_after[k] == ev_before[k]
    finally:
        restored.stop()


def test_continuous_forward_inference_is_the_tanh_mean(ray_session, tmp_path):
    from tiny_fixtures import TINY_CONT_ENV_ID, TinyContinuousEnv, register_tiny_continuous_env

    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    path = make_random_dataset(TinyContinuousEnv(), 8, str(tmp_path / "cont"), seed=0)
    algo = (SITConfig().environment(TINY_CONT_ENV_ID).offline_data(input_=path)
            .training(ardnem_updates=1, agent_updates=1, batch_size_episodes=4, priority_scale="minmax")
            .evaluation(evaluation_duration=2).debugging(seed=0)).build_algo()
    try:
        module = algo.eval_env_runner.module["leg"]
        init = module.get_initial_state()
        assert torch.all(init["prev_action"] == 0) and init["prev_action"].shape == (2,)
        obs, prev, h = torch.randn(3, 1, 3), torch.rand(3, 2) * 2 - 1, torch.randn(3, module.actor.hidden)
        batch = {Columns.OBS: {OBS_KEY: obs}, Columns.STATE_IN: {"h": h, "prev_action": prev}}
        out = module.forward_inference(batch)
        with torch.no_grad():
            mean_action, h2 = module.actor.step(obs[:, 0], prev, h)
        # RLlib's normalize_actions maps the [-1, 1] output onto the box; here the box is [-1, 1].
        torch.testing.assert_close(out[Columns.ACTIONS][:, 0], mean_action)
        torch.testing.assert_close(out[Columns.STATE_OUT]["prev_action"], mean_action)
        torch.testing.assert_close(out[Columns.STATE_OUT]["h"], h2)
        explored = module.forward_exploration(batch)[Columns.ACTIONS]
        assert explored.shape == (3, 1, 2) and torch.all(explored.abs() <= 1) and not torch.equal(explored,
                                                                                                  out[Columns.ACTIONS])
        for ep in _sample_episodes(algo, 1):
            for sa in ep.agent_episodes.values():
                np.testing.assert_allclose(np.asarray(sa.get_extra_model_outputs(Columns.STATE_OUT)["prev_action"]),
                                           np.asarray(sa.get_actions()), rtol=1e-6)
        ev = algo.evaluate()["env_runners"]
        assert ev["num_episodes"] == 2 and ev["episode_len_mean"] == 5 and "win_rate" not in ev
    finally:
        algo.stop()


def test_smac_env_id_resolves_without_register_all(tmp_path):
    """Regression: evaluation EnvRunners create ``config.env`` through Tune's registry, and a plain
    ``SITConfig().environment("smac:2s3z").build_algo()`` failed with "No module named 'smac'"
    unless the user had called ``rllib_sit.register_all()``. Runs in a fresh process, since this one
    has registered everything already."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import ray
        from rllib_sit.algorithms.sit import SITConfig
        from rllib_sit.data.synthetic import make_random_dataset
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        path = make_random_dataset("smac:2s3z", 3, {str(tmp_path / "ds")!r}, seed=0)
        algo = (SITConfig().environment("smac:2s3z").offline_data(input_=path)
                .training(ardnem_updates=1, agent_updates=1, batch_size_episodes=2)
                .evaluation(evaluation_duration=1).build_algo())
        print("RETURN", algo.evaluate()["env_runners"]["episode_return_mean"])
        algo.stop()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RETURN" in out.stdout


def test_iterations_without_evaluation_report_the_last_team_evaluation(dataset):
    """Regression: between evaluations, result["evaluation"] showed RLlib's own reduced statistics
    (the return summed over the agents, N times the team return; then NaN) in progress.csv and
    TensorBoard. Now it repeats the last evaluation's team numbers, and is absent before the first."""
    algo = tiny_config(dataset, agent_updates=9).evaluation(evaluation_interval=2, evaluation_duration=3).build_algo()
    try:
        r1, r2, r3 = algo.train(), algo.train(), algo.train()
        assert "evaluation" not in r1
        ev2, ev3 = r2["evaluation"]["env_runners"], r3["evaluation"]["env_runners"]
        assert ev2["num_episodes"] == 3
        for k in ("episode_return_mean", "episode_return_std", "win_rate"):
            assert ev3[k] == ev2[k]
    finally:
        algo.stop()
