"""SIT speed and memory on this machine: the three stages through RLlib beside plain PyTorch loops.

    python benchmarks/sit_speed.py                       # 10,000-episode 2s3z low dataset (generated on first use)
    python benchmarks/sit_speed.py --threads 2 --updates 100
    python benchmarks/sit_speed.py --synthetic 1000      # synthetic 2s3z-sized episodes, no simulator

Measured (prints a Markdown table, the command, and one JSON object):
* column cache: first build (Parquet -> memory-mapped .npy, validated) and a re-open;
* Stage II: a bare PyTorch forward of the 5-member ARDNEM over every real agent-step (the reference)
  vs SIT's Stage II pass (forward + Eq. 4-7) and, unless ``--skip-ray-data``, the Ray Data pass;
* Stage I and Stage III: ms per update through ``learner_group.update`` (and Stage III inside
  ``train()``, with the DPER round trip) vs the same modules and losses in a plain PyTorch loop
  (RMSprop, global-norm clipping) on the same batches;
* the paper-length estimate 20,000 x Stage I + Stage II + 15,000 x Stage III;
* memory: private (anonymous) and file-backed resident memory of the algorithm process and of the
  DPER actor (file-backed pages are the shared page-cache copy of the column cache).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch


def rss_mb(pid: int | str = "self") -> dict:
    """Resident memory of a process in MB: private (RssAnon) and file-backed (RssFile) pages."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon", "RssFile", "VmHWM")):
                k, v = line.split(":")
                out[k] = round(int(v.split()[0]) / 1024, 1)
    return out


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return 1000 * (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--input", default=None, help="dataset folder (default: smac:2s3z low, 10,000 episodes, seed 0)")
    p.add_argument("--synthetic", type=int, default=0, help="use N synthetic 2s3z-sized episodes instead")
    p.add_argument("--updates", type=int, default=50, help="timed updates per stage")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = what a 1-CPU Tune trial gets)")
    p.add_argument("--skip-ray-data", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import ray

    from rllib_sit.algorithms.common.algorithm import to_multi_agent_batch
    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.algorithms.sit import sit_learner as K
    from rllib_sit.algorithms.sit import stage2
    from rllib_sit.algorithms.sit.torch.sit_torch_learner import (ardnem_mse_loss, crr_filtered_actor_loss,
                                                                  uncertainty_weighted_td_loss)
    from rllib_sit.data import DatasetMeta, write_dataset
    from rllib_sit.data import schema as S
    from rllib_sit.data.episode_store import EpisodeStore
    from rllib_sit.replay import keys as B

    if args.synthetic:
        from rllib_sit.data.synthetic import SMAC_2S3Z_INFO, synthetic_rows

        path = os.path.join(tempfile.mkdtemp(), "synthetic_2s3z")
        write_dataset(synthetic_rows(SMAC_2S3Z_INFO, args.synthetic, seed=0), path, DatasetMeta(env=SMAC_2S3Z_INFO))
    elif args.input:
        path = args.input
    else:
        from rllib_sit.data.generation import ensure_dataset

        path = str(ensure_dataset("smac:2s3z", "low", n_episodes=10000, seed=0))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    out: dict = {"dataset": path, "torch_threads": torch.get_num_threads(), "updates": args.updates}

    cache_root = tempfile.mkdtemp(prefix="sit_speed_cache_")
    t0 = time.perf_counter()
    EpisodeStore.open(path, validate="full", cache_root=cache_root)
    out["cache_build_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    store = EpisodeStore.open(path, validate="full", cache_root=cache_root)
    info, episodes = store.info, store.columns
    out["cache_reopen_s"] = round(time.perf_counter() - t0, 3)
    filled = np.asarray(episodes[S.FILLED])
    out["episodes"] = int(filled.shape[0])
    out["agent_steps"] = int(filled.sum()) * info.n_agents
    out["cache_size_mb"] = round(sum(np.asarray(v).nbytes for v in episodes.values()) / 2**20, 1)

    # ---- Stage II ------------------------------------------------------------------------------
    cfg = (SITConfig().environment(info.env_id).offline_data(input_=path)
           .training(ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=10**9,
                     agent_updates_per_iteration=args.updates, validate_dataset="schema", column_cache_dir=cache_root,
                     num_torch_threads=args.threads)
           .debugging(seed=0))
    spec = cfg.build_module_specs(info)
    torch.manual_seed(0)
    net = spec.rl_module_specs[K.ARDNEM_MODULE_ID].build().ardnem.eval()
    stage2.decompose_batch(net, {k: episodes[k][:64] for k in episodes}, 0.99)  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, out["episodes"], 256):
            sl = slice(lo, lo + 256)
            f = filled[sl]
            T = f.shape[1]
            net.weighted_rewards(torch.as_tensor(episodes[S.OBS][sl, :T][f]), torch.as_tensor(episodes[S.ACTIONS][sl][f]),
                                 torch.as_tensor(episodes[S.STATE][sl, :T][f]))
    out["stage2_bare_forward_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    stage2.decompose_episodes(net, episodes, 0.99, 256)
    out["stage2_sit_local_s"] = round(time.perf_counter() - t0, 2)
    out["stage2_sit_over_bare"] = round(out["stage2_sit_local_s"] / out["stage2_bare_forward_s"], 2)
    if not args.skip_ray_data:
        sd = {k: v.numpy() for k, v in net.state_dict().items()}
        t0 = time.perf_counter()
        stage2.decompose_with_ray_data(path, spec.rl_module_specs[K.ARDNEM_MODULE_ID].model_config, sd, 0.99,
                                       episodes[S.EPISODE_ID], 256)
        out["stage2_ray_data_s"] = round(time.perf_counter() - t0, 2)

    # ---- SIT through RLlib -----------------------------------------------------------------------
    algo = cfg.build_algo()
    algo.train()  # 1 Stage I update + Stage II -> DPER loaded
    out["stage2_in_algo_s"] = round(algo.stage2_seconds, 2)
    n = args.updates
    ardnem_batches = [to_multi_agent_batch(algo._ardnem_batch()) for _ in range(n)]
    out["stage1_timesteps_per_batch"] = float(np.mean([len(b.policy_batches[K.ARDNEM_MODULE_ID]) for b in ardnem_batches]))
    out["stage1_rllib_ms"] = round(timed(lambda i: algo.learner_group.update(batch=ardnem_batches[i]), n), 1)
    samples = [ray.get(algo.dper.sample.remote(32)) for _ in range(n)]
    out["stage3_mean_batch_length"] = float(np.mean([b[t][B.FILLED].shape[1] for b in samples for t in b]))
    out["stage3_rllib_ms"] = round(timed(lambda i: algo.update_learners(samples[i]), n), 1)
    t0 = time.perf_counter()
    algo.train()  # n agent updates: DPER round trip (prefetched) + update + metrics
    out["stage3_rllib_train_loop_ms"] = round(1000 * (time.perf_counter() - t0) / n, 1)
    out["memory_algorithm_process_mb"] = rss_mb()
    dper_pid = ray.get(algo.dper.__ray_call__.remote(lambda self: os.getpid()))
    out["memory_dper_actor_mb"] = rss_mb(dper_pid)

    # ---- the same losses in plain PyTorch loops ---------------------------------------------------
    def rmsprop(params, lr):
        return torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-5)

    ard = spec.rl_module_specs[K.ARDNEM_MODULE_ID].build().ardnem
    ard_opt = rmsprop(ard.parameters(), 1e-4)
    ab = [{k: torch.as_tensor(v) for k, v in b.policy_batches[K.ARDNEM_MODULE_ID].items()} for b in ardnem_batches]

    def plain_stage1(i):
        b = ab[i]
        loss = ardnem_mse_loss(ard.weighted_rewards(b[B.OBS], b[B.ACTIONS], b[B.STATE]), b[B.REWARD])
        ard_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ard.parameters(), 10.0)
        ard_opt.step()

    out["stage1_plain_ms"] = round(timed(plain_stage1, n), 1)
    mods = {t: spec.rl_module_specs[t].build() for t in algo.env_info.type_names()}
    for m in mods.values():
        m.make_target_networks()
    opts = {t: (rmsprop(m.actor.parameters(), 5e-4), rmsprop(m.critic.parameters(), 1e-4)) for t, m in mods.items()}
    tb = [{t: {k: torch.as_tensor(v) for k, v in b[t].items()} for t in b} for b in samples]

    def plain_stage3(i):
        for t, m in mods.items():
            b = tb[i][t]
            fwd = m._forward_train(b)
            c = uncertainty_weighted_td_loss(fwd[B.Q_TAKEN], fwd[B.Q_NEXT_TARGET], b[K.REWARD_HAT], b[K.UNCERTAINTY],
                                             b[B.TERMINATED], b[B.FILLED], b[B.NEXT_FILLED], 0.99, 1.0, 1e-2)
            a = crr_filtered_actor_loss(fwd[B.LOGP], fwd[B.Q_TAKEN], b[K.UNCERTAINTY], b[B.FILLED], 0.1, 1.0, 1e-2)
            for o in opts[t]:
                o.zero_grad()
            (c + a).backward()
            torch.nn.utils.clip_grad_norm_(m.actor.parameters(), 10.0)
            torch.nn.utils.clip_grad_norm_(m.critic.parameters(), 10.0)
            for o in opts[t]:
                o.step()

    out["stage3_plain_ms"] = round(timed(plain_stage3, n), 1)
    algo.stop()
    out["stage1_rllib_over_plain"] = round(out["stage1_rllib_ms"] / out["stage1_plain_ms"], 2)
    out["stage3_rllib_over_plain"] = round(out["stage3_rllib_ms"] / out["stage3_plain_ms"], 2)
    est = (20000 * out["stage1_rllib_ms"] + 15000 * out["stage3_rllib_train_loop_ms"]) / 60000 + out["stage2_in_algo_s"] / 60
    out["paper_length_minutes_estimate"] = round(est, 1)

    print("command: python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])))
    print(f"dataset {path}: {out['episodes']} episodes, {out['agent_steps']:,} agent-steps, "
          f"torch threads {out['torch_threads']}")
    print("| measurement | SIT through RLlib | plain PyTorch | ratio |")
    print("|---|---|---|---|")
    print(f"| Stage II pass (s) | {out['stage2_sit_local_s']} (in algo: {out['stage2_in_algo_s']}) | "
          f"{out['stage2_bare_forward_s']} (bare forward) | {out['stage2_sit_over_bare']} |")
    if "stage2_ray_data_s" in out:
        print(f"| Stage II, Ray Data pass (s) | {out['stage2_ray_data_s']} | | |")
    print(f"| Stage I update (ms, {out['stage1_timesteps_per_batch']:.0f} timesteps) | {out['stage1_rllib_ms']} | "
          f"{out['stage1_plain_ms']} | {out['stage1_rllib_over_plain']} |")
    print(f"| Stage III update (ms, both types, L={out['stage3_mean_batch_length']:.0f}) | {out['stage3_rllib_ms']} "
          f"(train(): {out['stage3_rllib_train_loop_ms']}) | {out['stage3_plain_ms']} | {out['stage3_rllib_over_plain']} |")
    print(f"| paper-length run (20k + 15k updates), minutes | {out['paper_length_minutes_estimate']} | | |")
    print(f"| column cache: build / re-open (s), size (MB) | {out['cache_build_s']} / {out['cache_reopen_s']}, "
          f"{out['cache_size_mb']} | | |")
    print(f"| memory MB: algorithm {out['memory_algorithm_process_mb']}, DPER actor {out['memory_dper_actor_mb']} | | | |")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
