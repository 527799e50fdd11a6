"""Writers of third-party dataset files in their real layouts, shared by tests/data and tests/ope."""

import h5py
import numpy as np


def write_pymarl(path, info, lengths, terminated, limit, seed=0, attrs=None):
    """A pymarl EpisodeBatch HDF5 file: [E, limit+1, ...]; ``filled`` covers t = 0..length."""
    rng = np.random.default_rng(seed)
    E, L1, N = len(lengths), limit + 1, info.n_agents
    filled = np.zeros((E, L1, 1), np.int64)
    term = np.zeros((E, L1, 1), np.uint8)
    for e, (L, t) in enumerate(zip(lengths, terminated)):
        filled[e, : L + 1] = 1
        term[e, L - 1] = int(t)
    data = {"obs": rng.standard_normal((E, L1, N, info.obs_dim)).astype(np.float32),
            "state": rng.standard_normal((E, L1, info.state_dim)).astype(np.float32),
            "reward": rng.standard_normal((E, L1, 1)).astype(np.float32), "terminated": term, "filled": filled}
    if info.discrete:
        avail = (rng.random((E, L1, N, info.n_actions)) < 0.6).astype(np.int32)
        avail[..., 1] = 1
        actions = (rng.random((E, L1, N, info.n_actions)) * avail).argmax(-1)[..., None].astype(np.int64)
        data.update(avail_actions=avail, actions=actions,
                    actions_onehot=np.eye(info.n_actions, dtype=np.float32)[actions[..., 0]])
    else:
        data["actions"] = rng.uniform(-1, 1, (E, L1, N, info.act_dim)).astype(np.float32)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v, compression="gzip")
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return data
