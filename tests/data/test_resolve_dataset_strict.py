"""``resolve_dataset`` (what every algorithm calls when it is built) has no silent fallback (issue 21):
an ``input_`` that does not exist is an error even beside a ``dataset`` spec (nothing is
generated), and a dataset recorded in another env than the config's is an error naming both."""

import os

import pytest

from rllib_sit.data.episode_store import check_dataset_env, env_mismatches, resolve_dataset
from rllib_sit.data.synthetic import make_random_dataset
from rllib_sit.envs import make_env

SPEC = {"quality": "low", "episodes": 5, "seed": 0}


@pytest.fixture(scope="module")
def ds_3m(tmp_path_factory):
    return make_random_dataset("smac:3m", 2, str(tmp_path_factory.mktemp("ds") / "ds_3m"), seed=0)


def test_missing_input_is_an_error_even_with_a_dataset_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("RLLIB_SIT_DATA_DIR", str(tmp_path / "data"))
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=rf"SITConfig: input_='{missing}' does not exist; input_ wins over "
                                                r"dataset=\{'quality': 'low', 'episodes': 5, 'seed': 0\}, so nothing "
                                                r"is generated"):
        resolve_dataset(missing, SPEC, "smac:2s3z", who="SITConfig")
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected a dataset folder or URI"):
        resolve_dataset(missing, None, "smac:2s3z", who="SITConfig")
    assert not (tmp_path / "data").exists()  # nothing generated


def test_dataset_of_another_env_is_refused_naming_both(ds_3m):
    with pytest.raises(ValueError, match=r"MABCConfig: the dataset .*ds_3m was recorded in another env than the "
                                         r"config's \(env id 'smac:3m' vs 'smac:2s3z'; agent count 3 vs 5; .*obs size "
                                         r"30 vs 80; .*action count 9 vs 11; dataset vs config\); use a dataset of "
                                         r"smac:2s3z or set env: smac:3m"):
        resolve_dataset(ds_3m, SPEC, "smac:2s3z", who="MABCConfig")
    assert resolve_dataset(ds_3m, SPEC, "smac:3m") == os.path.abspath(ds_3m)  # its own env: fine
    assert resolve_dataset(ds_3m, None, None) == os.path.abspath(ds_3m)  # no env given: nothing to compare


def test_env_mismatches_compares_ids_agents_types_and_sizes():
    a, b = make_env("smac:3m").info, make_env("smac:3s_vs_3z").info
    diff = env_mismatches(a, b)
    assert diff[0] == "env id 'smac:3m' vs 'smac:3s_vs_3z'"
    assert any(d.startswith("agent types ['marine', 'marine', 'marine'] vs ['stalker'") for d in diff)
    assert not any(d.startswith("agent count") for d in diff)  # both have 3 agents
    assert env_mismatches(a, a) == []


def test_unknown_env_id_is_compared_by_name(ds_3m):
    check_dataset_env(ds_3m, "smac:3m")  # its own env: no error
    with pytest.raises(ValueError, match=r"recorded in smac:3m, but the config's env is custom:env"):
        check_dataset_env(ds_3m, "custom:env")
