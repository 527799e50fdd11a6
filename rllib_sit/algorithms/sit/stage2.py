"""Stage II of SIT: decompose every episode's team reward with the trained ARDNEM and compute the
per-(episode, agent) sampling priorities (paper Eq. 4–7, Algorithm 1 lines 9–14).

``decompose_batch`` is a pure function of an ARDNEM and a numpy batch of episodes, so it runs either
in-process over the in-memory episodes (``stage2_backend="local"``) or as a Ray Data
``map_batches`` pass over the Parquet dataset (``stage2_backend="ray_data"``).
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional

import numpy as np
import torch

from rllib_sit.algorithms.sit import sit_learner as K
from rllib_sit.data import schema as S

R_HAT, U_HAT, PRIORITY = "r_hat", "u_hat", "priority"


@torch.no_grad()
def decompose_batch(ardnem, batch: Dict[str, np.ndarray], gamma: float, use_uncertainty: bool = True,
                    decompose: bool = True) -> Dict[str, np.ndarray]:
    """Episodes ``[B, ...]`` -> r̂ [B, T, N] (Eq. 4), û [B, T, N] (Eq. 5), p̂ [B, N] (mean_t of Eq. 6).

    ``decompose=False`` (ablation "w/o decomposition"): r̂_i = r_tot for every agent, û = 1.
    ``use_uncertainty=False`` (ablation "w/o ensemble"): û = 1.
    """
    filled = np.asarray(batch[S.FILLED], bool)
    B, T = filled.shape
    N = batch[S.OBS].shape[2]
    if decompose:
        # Episode arrays are read-only object-store views; torch only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        # Forward only the real steps (padding is often half of a batch), then scatter back.
        obs = torch.as_tensor(np.asarray(batch[S.OBS][:, :T][filled], np.float32))
        acts = torch.as_tensor(np.asarray(batch[S.ACTIONS])[filled])
        state = torch.as_tensor(np.asarray(batch[S.STATE][:, :T][filled], np.float32))
        wr = ardnem.weighted_rewards(obs, acts, state)  # [M, n, N]
        mean = wr.mean(0)
        std = ((wr - mean) ** 2).mean(0).sqrt()  # Eq. 5 (population std over the ensemble)
        r_hat = np.zeros((B, T, N), np.float32)
        u_hat = np.zeros((B, T, N), np.float32)
        r_hat[filled] = mean.numpy()
        u_hat[filled] = std.numpy()
        if not use_uncertainty:
            u_hat = np.ones_like(u_hat)
    else:
        r_hat = np.repeat(np.asarray(batch[S.REWARD], np.float32)[..., None] * filled[..., None], N, axis=-1)
        u_hat = np.ones_like(r_hat)
    g = K.monte_carlo_returns(r_hat, filled, gamma)
    pri = K.episode_priorities(g, filled)
    return {R_HAT: r_hat.astype(np.float32), U_HAT: u_hat.astype(np.float32), PRIORITY: pri}


def decompose_episodes(ardnem, episodes: Dict[str, np.ndarray], gamma: float, batch_episodes: int = 256,
                       use_uncertainty: bool = True, decompose: bool = True,
                       progress: Optional[callable] = None) -> Dict[str, np.ndarray]:
    """``decompose_batch`` over all in-memory episodes in chunks (local backend)."""
    K_ = episodes[S.FILLED].shape[0]
    out = {R_HAT: [], U_HAT: [], PRIORITY: []}
    for lo in range(0, K_, batch_episodes):
        sl = slice(lo, min(K_, lo + batch_episodes))
        b = {k: episodes[k][sl] for k in (S.OBS, S.ACTIONS, S.STATE, S.FILLED, S.REWARD)}
        res = decompose_batch(ardnem, b, gamma, use_uncertainty, decompose)
        for k in out:
            out[k].append(res[k])
        if progress:
            progress(sl.stop, K_)
    return {k: np.concatenate(v, 0) for k, v in out.items()}


class Stage2MapFn:
    """Callable class for ``ray.data.Dataset.map_batches``: builds the ARDNEM once per worker."""

    def __init__(self, model_config: dict, state_dict: dict, gamma: float, use_uncertainty: bool, decompose: bool):
        from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import build_ardnem

        torch.set_num_threads(1)
        self.ardnem = build_ardnem(model_config)
        self.ardnem.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()})
        self.ardnem.eval()
        self.gamma, self.use_uncertainty, self.decompose = gamma, use_uncertainty, decompose

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        res = decompose_batch(self.ardnem, batch, self.gamma, self.use_uncertainty, self.decompose)
        res[S.EPISODE_ID] = np.asarray(batch[S.EPISODE_ID])
        return res


def decompose_with_ray_data(dataset_path: str, model_config: dict, state_dict: dict, gamma: float,
                            episode_ids: np.ndarray, batch_episodes: int = 256, use_uncertainty: bool = True,
                            decompose: bool = True) -> Dict[str, np.ndarray]:
    """Stage II as one Ray Data ``map_batches`` pass (one actor, ``num_cpus=0``) over the Parquet dataset.

    Results are re-ordered to ``episode_ids`` (the in-memory order used by DPER).
    """
    from rllib_sit.data import read_dataset

    ds = read_dataset(dataset_path, validate="none")
    cols = [S.OBS, S.ACTIONS, S.STATE, S.FILLED, S.REWARD, S.EPISODE_ID]
    mapped = ds.ray_dataset(cols).map_batches(
        Stage2MapFn, fn_constructor_kwargs=dict(model_config=model_config, state_dict=state_dict, gamma=gamma,
                                                use_uncertainty=use_uncertainty, decompose=decompose),
        # num_cpus=0: inside a Tune trial that holds 1 of 2 CPUs, an actor reserving the last CPU
        # starves the Parquet read tasks forever (observed deadlock); the actor only needs CPU time.
        batch_size=batch_episodes, batch_format="numpy", concurrency=1, num_cpus=0)
    parts = {R_HAT: [], U_HAT: [], PRIORITY: [], S.EPISODE_ID: []}
    for b in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        for k in parts:
            parts[k].append(b[k])
    res = {k: np.concatenate(v, 0) for k, v in parts.items()}
    order = {int(e): i for i, e in enumerate(res[S.EPISODE_ID])}
    idx = np.array([order[int(e)] for e in episode_ids])
    return {k: res[k][idx] for k in (R_HAT, U_HAT, PRIORITY)}
