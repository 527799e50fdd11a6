"""ExportedPolicy runs every step with its own torch thread count (issue 21): default 1, a parameter,
and the host program's torch setting is left as it was.

The exported folder is written by hand (a TorchScript step with the exported signature and a
``policy.json``), so no training is needed; the step records the thread count torch had while it
ran, which is the effect the setting claims.
"""

import json

import numpy as np
import pytest
import torch

from rllib_sit.export.policy import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, ExportedPolicy

OBS, HIDDEN, N_ACTIONS = 4, 3, 5


class Step(torch.nn.Module):
    """The discrete step's signature; logits = obs @ W, masked; h_out = h + 1."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(OBS * N_ACTIONS, dtype=torch.float32).reshape(OBS, N_ACTIONS) / 10)

    def forward(self, obs, prev_action, h, action_mask):
        logits = obs @ self.w
        return logits.masked_fill(action_mask < 0.5, -1e10), h + 1.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("exported")
    torch.jit.script(Step()).save(str(d / "scout.pt"))
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "agents": {"a0": "scout", "a1": "scout"},
                "modules": {"scout": {"discrete": True, "obs_dim": OBS, "hidden": HIDDEN, "n_actions": N_ACTIONS,
                                      "files": {"torchscript": "scout.pt"}}}}
    (d / MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(d)


class ThreadProbe:
    """Wraps the loaded TorchScript module: records torch's thread count at each call."""

    def __init__(self, module):
        self.module, self.seen = module, []

    def __call__(self, *args):
        self.seen.append(torch.get_num_threads())
        return self.module(*args)


def _act(policy):
    probe = ThreadProbe(policy.actors["scout"]._run.module)
    policy.actors["scout"]._run.module = probe
    obs = {"a0": np.ones(OBS, np.float32), "a1": np.arange(OBS, dtype=np.float32)}
    masks = {"a0": np.ones(N_ACTIONS, np.float32), "a1": np.array([1, 1, 1, 1, 0], np.float32)}
    actions, state = policy.act(obs, masks)
    return probe.seen, actions, state


@pytest.mark.parametrize("num_threads", [None, 2])
def test_steps_run_with_the_policy_thread_count_and_restore_the_hosts(folder, num_threads):
    host = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        policy = ExportedPolicy.load(folder) if num_threads is None else ExportedPolicy.load(folder,
                                                                                             num_threads=num_threads)
        assert torch.get_num_threads() == 3  # loading changes nothing
        seen, actions, state = _act(policy)
        assert seen == [1 if num_threads is None else num_threads]
        assert torch.get_num_threads() == 3  # the host's setting is back
        # the step's outputs are the module's: argmax of obs @ W over the available actions
        w = np.arange(OBS * N_ACTIONS, dtype=np.float32).reshape(OBS, N_ACTIONS) / 10
        assert actions == {"a0": int(np.argmax(np.ones(OBS) @ w)), "a1": int(np.argmax((np.arange(OBS) @ w)[:4]))}
        np.testing.assert_array_equal(state["a0"]["h"], np.ones(HIDDEN, np.float32))
    finally:
        torch.set_num_threads(host)


def test_bad_thread_count_is_one_clear_error(folder):
    with pytest.raises(ValueError, match=r"num_threads=0 is invalid; expected an int >= 1"):
        ExportedPolicy.load(folder, num_threads=0)
