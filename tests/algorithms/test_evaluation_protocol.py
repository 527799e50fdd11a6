"""The evaluation protocol (issue 26): every evaluation runs a greedy and a sampled pass on the same
env seeds and reports both (``*_greedy`` / ``*_sampled``) beside the headline keys, which are the
pass ``evaluation_config["explore"]`` selects (greedy by default). Ray is started once for the
module (conftest); ``rllib evaluate --explore``: tests/algorithms/test_evaluate_explore_cli.py."""

import numpy as np
import pytest
import torch

from algo_cases import CASES, tiny_config

from rllib_sit.algorithms.common.evaluation import PASS_KEYS, pass_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cont_dataset(ray_session, tmp_path_factory):
    from tiny_fixtures import TinyContinuousEnv, register_tiny_continuous_env

    from rllib_sit.data.synthetic import make_random_dataset

    register_tiny_continuous_env()
    return make_random_dataset(TinyContinuousEnv(), 16, str(tmp_path_factory.mktemp("tinycont") / "ds"), seed=0)


@pytest.fixture(scope="module")
def mabc(dataset):
    """An untrained MABC on the tiny env: a near-uniform stochastic policy, 8 evaluation episodes."""
    algo = tiny_config("MABC", dataset, None).evaluation(evaluation_duration=8).build_algo()
    yield algo
    algo.stop()


def _ev(algo):
    return algo.evaluate()["env_runners"]


def test_a_stochastic_policy_s_greedy_and_sampled_evaluations_differ(mabc):
    ev = _ev(mabc)
    for key in PASS_KEYS:
        assert np.isfinite(ev[pass_key(key, False)]) and np.isfinite(ev[pass_key(key, True)]), key
    # The headline keys are the greedy pass's (evaluation_config explore=False, the default).
    assert ev["explore"] is False
    for key in PASS_KEYS:
        assert ev[key] == ev[pass_key(key, False)], key
    assert ev["episode_return_mean_sampled"] != ev["episode_return_mean_greedy"]
    # The greedy pass replays the same episodes at every evaluation (same env seeds, same actions).
    again = _ev(mabc)
    for key in PASS_KEYS:
        assert again[pass_key(key, False)] == ev[pass_key(key, False)], key


def test_the_time_estimate_counts_the_passes_evaluate_runs(mabc, monkeypatch):
    """The benchmark's time estimate charges every evaluation ``profiles.evaluation_passes()``
    passes: the number of RLlib evaluations one ``evaluate()`` really runs."""
    from ray.rllib.algorithms.algorithm import Algorithm

    from rllib_sit.experiments import profiles as P

    calls = []
    rllib_evaluate = Algorithm.evaluate

    def counted(self, *args, **kwargs):
        calls.append(self.eval_env_runner_group.local_env_runner.config.explore)
        return rllib_evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Algorithm, "evaluate", counted)
    _ev(mabc)
    assert calls == [False, True] and len(calls) == P.evaluation_passes()
    assert P.evaluation_seconds(4, 16) == pytest.approx(
        4 * len(calls) * 16 * P.EVAL_STEPS_PER_EPISODE * P.EVAL_STEP_MS / 1000.0)


def _force_action(algo, action: int):
    """Every agent's actor outputs logits with ``action`` 60 above the others, whatever its input:
    softmax puts probability < 1e-25 on the rest, so sampling is (numerically) greedy."""
    for mid in ("scout", "tank"):
        actor = algo.learner_group._learner.module[mid].unwrapped().actor
        with torch.no_grad():
            actor.fc_out.weight.zero_()
            actor.fc_out.bias.zero_()
            actor.fc_out.bias[action] = 60.0


def test_a_deterministic_policy_s_two_evaluations_agree(dataset):
    algo = tiny_config("MABC", dataset, None).evaluation(evaluation_duration=6).build_algo()
    try:
        _force_action(algo, 1)  # evaluate() syncs the learner's weights to the evaluation EnvRunner
        ev = _ev(algo)
        for key in PASS_KEYS:
            assert ev[pass_key(key, True)] == ev[pass_key(key, False)], key
        # tiny:coop pays 1 + 0.5 per step when a0 and b0 both take action 1 (and counts it a win),
        # so each episode's team return is 1.5 x its length: the same episodes in both passes.
        for explore in (False, True):
            assert ev[pass_key("episode_return_mean", explore)] == pytest.approx(
                1.5 * ev[pass_key("episode_len_mean", explore)])
            assert ev[pass_key("win_rate", explore)] == 1.0
    finally:
        algo.stop()


def test_explore_in_the_evaluation_config_makes_the_headline_the_sampled_pass(dataset):
    algo = (tiny_config("MABC", dataset, None).evaluation(evaluation_duration=4, evaluation_config={"explore": True})
            .build_algo())
    try:
        ev = _ev(algo)
        assert ev["explore"] is True
        for key in PASS_KEYS:
            assert ev[key] == ev[pass_key(key, True)], key
        assert ev["episode_return_mean_greedy"] != ev["episode_return_mean_sampled"]
        assert algo.evaluation_config.explore is True  # restored after the greedy pass
    finally:
        algo.stop()


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_algorithm_reports_both_passes(case, dataset, cont_dataset):
    algo = tiny_config(case, dataset, cont_dataset).build_algo()
    try:
        ev = _ev(algo)
        for explore in (False, True):
            assert np.isfinite(ev[pass_key("episode_return_mean", explore)]), (case, explore)
            assert np.isfinite(ev[pass_key("episode_len_mean", explore)]), (case, explore)
    finally:
        algo.stop()


def test_facmac_samples_gaussian_noise_of_std_0_1_around_its_greedy_action(dataset, cont_dataset):
    """FacMAC's sampled form is its code's Gaussian exploration (act_noise 0.1 in [-1, 1] units),
    not its actor's untrained log-std: from the same GRU state, sampled - greedy ~ N(0, 0.1²)."""
    from ray.rllib.core.columns import Columns

    from rllib_sit.algorithms.facmac.torch.default_facmac_torch_rl_module import ACT_NOISE
    from rllib_sit.envs.base import OBS_KEY

    algo = tiny_config("FACMAC", dataset, cont_dataset).build_algo()
    try:
        module = algo.eval_env_runner.module["leg"]
        n = 4000
        gen = torch.Generator().manual_seed(0)
        state = module.get_initial_state()
        batch = {Columns.OBS: {OBS_KEY: torch.randn(n, 1, 3, generator=gen)},
                 Columns.STATE_IN: {"h": state["h"].expand(n, -1), "prev_action": state["prev_action"].expand(n, -1)}}
        torch.manual_seed(0)
        greedy = module._forward_inference(batch)[Columns.ACTIONS]
        sampled = module._forward_exploration(batch)[Columns.ACTIONS]
        assert sampled.shape == greedy.shape and float(sampled.abs().max()) <= 1.0
        d = (sampled - greedy)[greedy.abs() < 0.6].double()  # away from the clip at ±1
        assert ACT_NOISE == 0.1 and abs(float(d.std()) - ACT_NOISE) < 0.005 and abs(float(d.mean())) < 0.005
    finally:
        algo.stop()
