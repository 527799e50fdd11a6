"""benchmarks/vdtn_dg_policy.py's probe: where scripted DG policies end, and their return, against a
plain NumPy rollout of the §5.4 game."""

import importlib.util
import os

import numpy as np
import pytest
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_probe():
    spec = importlib.util.spec_from_file_location("vdtn_dg_policy", os.path.join(ROOT, "benchmarks", "vdtn_dg_policy.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Scripted:
    """A module stand-in: ``norm`` is the identity, ``act`` a fixed rule on the agent's own position."""

    def __init__(self, rule):
        self.rule = rule

    def norm(self, o):
        return o

    def act(self, o, avail, explore):
        return torch.as_tensor(self.rule(o[:, :1].numpy()), dtype=torch.float32)


def np_rollout(rule, episodes, steps, seed):
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (episodes, 2))
    ret = np.zeros(episodes)
    for _ in range(steps):
        a = np.concatenate([rule(x[:, :1]), rule(x[:, 1:])], 1)
        x = np.clip(x + 0.1 * a, -1.0, 1.0)
        l = np.hypot(x[:, 0], x[:, 1])
        ret += np.where(l < 0.2, 0.5 * (np.cos(15 * l) + 1), np.where(l <= 0.6, 0.0, 0.5 * (l - 0.6) ** 2))
    return ret.mean(), x


def test_probe_classifies_corner_and_origin_policies():
    probe = load_probe().probe
    rules = {"corner": lambda o: np.ones_like(o), "origin": lambda o: -np.sign(o)}
    for partial in (False, True):
        for name, rule in rules.items():
            mods = {"a1": Scripted(rule), "a2": Scripted(rule)}
            ret, origin, ring, corner, field = probe(mods, partial, episodes=64, steps=25, seed=3)
            want, x = np_rollout(rule, 64, 25, 3)
            assert ret == pytest.approx(want, rel=1e-5)
            if name == "corner":  # everyone ends at (1, 1): l = √2, 0.5 (√2 − 0.6)² per step there
                assert (origin, ring, corner) == (0.0, 1.0, 1.0) and np.allclose(x, 1.0)
            else:  # bang-bang to 0 oscillates within one step (0.1) of it on both axes
                assert (origin, ring, corner) == (1.0, 0.0, 0.0)
            assert field.shape == ((9, 1) if partial else (9, 9))
            np.testing.assert_array_equal(field[:, 0], rule(np.linspace(-1, 1, 9)[:, None])[:, 0])
