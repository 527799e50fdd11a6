"""The one declaration per setting (``Setting`` class attributes): the defaults, ``training()``'s
typed signature and help, the unknown-key errors of ``training()``/``update_from_dict()``, and the
target-network settings declared and validated once in the base."""

import inspect
import pydoc

import pytest
from ray.rllib.algorithms.algorithm_config import NotProvided

from rllib_sit.algorithms import ALGORITHMS, algorithm_class
from rllib_sit.algorithms.common.config import OfflineMARLConfig
from rllib_sit.algorithms.common.settings import UnknownSettingError
from rllib_sit.algorithms.mabc import MABCConfig
from rllib_sit.algorithms.sit import SITConfig

CONFIGS = {name: type(algorithm_class(name).get_default_config()) for name in sorted(ALGORITHMS)}


def test_sit_training_signature_lists_its_settings_keyword_only():
    params = inspect.signature(SITConfig.training).parameters
    for name in ("alpha", "beta", "eta", "ardnem_lr", "dataset", "target_update_interval"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is NotProvided
    assert params["kwargs"].kind is inspect.Parameter.VAR_KEYWORD  # RLlib's own (lr, gamma, ...)


def test_help_shows_each_settings_text_and_default():
    text = pydoc.render_doc(SITConfig.training, renderer=pydoc.plaintext)
    assert "alpha:" in text and "Table 11: softmax temperature α = 0.2 (default: 0.2)" in text
    assert "eta:" in text and "uncertainty weight η = 1" in text
    assert "training(self, *, ardnem_lr=" in text  # the algorithm's own settings first, the base's after
    assert text.index("    ardnem_lr:") < text.index("    dataset:")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_config_declares_once_and_the_signature_follows(name):
    cls = CONFIGS[name]
    cfg = cls()
    params = inspect.signature(cls.training).parameters
    doc = cls.training.__doc__
    for key, setting in cls._settings.items():
        assert key in params, key
        assert f"    {key}:" in doc, key
        assert setting.doc.split()[0] in doc
        assert not isinstance(getattr(cfg, key), type(setting))  # the instance holds the value, not the declaration
    assert cls._training_keys == tuple(cls._settings)
    # no setting is declared twice along the hierarchy with a class attribute left behind
    assert not any(type(v).__name__ == "Setting" for c in cls.__mro__ for v in vars(c).values())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_through_update_from_dict(name):
    """What Tune does with a config dict: every key of to_dict() is accepted and lands unchanged."""
    cfg = CONFIGS[name]()
    own = {k: getattr(cfg, k) for k in cfg._settings}
    again = CONFIGS[name]().update_from_dict(cfg.to_dict())
    assert {k: getattr(again, k) for k in again._settings} == own


def test_training_sets_ours_and_rllibs_and_keeps_not_provided():
    cfg = SITConfig().training(alpha=5.0, beta=NotProvided, lr=1e-3, train_batch_size_per_learner=7)
    assert (cfg.alpha, cfg.beta, cfg.lr, cfg.train_batch_size_per_learner) == (5.0, 0.1, 1e-3, 7)


def test_mutable_defaults_are_not_shared_between_configs():
    from rllib_sit.algorithms.vdtn.vdtn import VDTNBCQConfig

    a, b = VDTNBCQConfig(), VDTNBCQConfig()
    a.hidden.append(7)
    assert b.hidden == [256, 256]


@pytest.mark.parametrize("call", ["training", "update_from_dict"])
def test_misspelt_key_is_one_error_naming_the_closest(call):
    cfg = SITConfig()
    with pytest.raises(ValueError) as e:
        cfg.training(alpah=1.0) if call == "training" else cfg.update_from_dict({"alpah": 1.0})
    assert str(e.value) == "SITConfig: unknown setting 'alpah'; did you mean 'alpha'?"
    assert isinstance(e.value, (UnknownSettingError, TypeError))
    assert cfg.alpha == 0.2  # nothing set


def test_misspelt_rllib_key_is_caught_too():
    with pytest.raises(ValueError, match="unknown setting 'evaluation_intervall'; did you mean 'evaluation_interval'"):
        MABCConfig().update_from_dict({"evaluation_intervall": 2})
    with pytest.raises(TypeError, match="unknown setting 'lrr'; did you mean 'lr'"):
        MABCConfig().training(lrr=1e-3)
    with pytest.raises(ValueError, match=r"unknown setting 'qqqzzz'; see help\(MABCConfig.training\)"):
        MABCConfig().update_from_dict({"qqqzzz": 1})


def test_rllibs_own_keys_keep_working_in_update_from_dict():
    cfg = SITConfig().update_from_dict({
        "lr": 1e-3, "train_batch_size_per_learner": 8, "evaluation_interval": 3, "num_learners": 0,
        "input_": "/tmp/ds", "env": "smac:2s3z", "env_config": {"k": 1}, "seed": 4, "gamma": 0.9,
        "num_cpus_for_main_process": 1, "callbacks": None, "alpha": 5.0,
        "__trial_info__": None, "__stdout_file__": None, "__stderr_file__": None})  # Tune's own keys
    assert (cfg.lr, cfg.train_batch_size_per_learner, cfg.evaluation_interval, cfg.input_, cfg.env, cfg.seed,
            cfg.gamma, cfg.alpha) == (1e-3, 8, 3, "/tmp/ds", "smac:2s3z", 4, 0.9, 5.0)
    assert cfg.env_config == {"k": 1}


def test_target_network_settings_are_declared_in_the_base():
    assert {"target_update_interval", "target_update_tau"} <= set(OfflineMARLConfig._settings)
    cfg = MABCConfig()  # declares neither: the base's defaults
    assert (cfg.target_update_interval, cfg.target_update_tau) == (100, None)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("key, value, expected", [
    ("target_update_tau", 0.0, "None or a number in (0, 1]"),
    ("target_update_tau", 1.5, "None or a number in (0, 1]"),
    ("target_update_tau", True, "None or a number in (0, 1]"),
    ("target_update_interval", 0, "an int >= 1"),
    ("target_update_interval", 2.5, "an int >= 1"),
])
def test_target_network_settings_are_validated_once_for_every_algorithm(name, key, value, expected):
    cfg = CONFIGS[name]().training(**{key: value})
    with pytest.raises(ValueError) as e:
        cfg.validate_target_networks()
    assert str(e.value) == f"{CONFIGS[name].__name__}: {key}={value!r} is invalid; expected {expected}"


def test_validate_runs_the_target_network_checks():
    cfg = MABCConfig().environment("smac:2s3z").training(target_update_tau=0.0)
    with pytest.raises(ValueError, match=r"^MABCConfig: target_update_tau=0.0 is invalid; expected None or a number"):
        cfg.validate()
    MABCConfig().environment("smac:2s3z").validate()  # the defaults pass
