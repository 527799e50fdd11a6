"""SIT speed on 2 CPUs: Stage II pass and Stage III updates/s (RLlib LearnerGroup vs a plain loop).

    python benchmarks/sit_speed.py --episodes 1000 --updates 50

Stage II: a synthetic 2s3z-sized dataset (obs [121, 5, 80]) written as Parquet; measured are
(a) a bare PyTorch forward of the 5-member ARDNEM over every agent-step (the reference),
(b) SIT's in-process Stage II (forward + Eq. 4-7 in NumPy), (c) the Ray Data map_batches pass.
Stage III: SIT built on that dataset; ``--updates`` learner updates on DPER batches (32 individual
trajectories per type) through ``learner_group.update`` vs the same modules and losses in a plain
PyTorch loop (RMSprop + global-norm clip + target sync) on the same pre-sampled batches.
Numbers are for the machine it runs on; results print as one JSON object.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--updates", type=int, default=50)
    p.add_argument("--skip-ray-data", action="store_true")
    p.add_argument("--out", default=None, help="dataset folder (default: a temp dir)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = what a Tune trial gets)")
    p.add_argument("--skip-stage2", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    import ray

    from rllib_sit.algorithms.sit import SITConfig
    from rllib_sit.algorithms.sit import sit_learner as K
    from rllib_sit.algorithms.sit import stage2
    from rllib_sit.algorithms.sit.data import load_episodes
    from rllib_sit.algorithms.sit.sit import build_sit_module_spec
    from rllib_sit.algorithms.sit.torch.default_sit_torch_rl_module import build_ardnem
    from rllib_sit.data import DatasetMeta, write_dataset
    from rllib_sit.data.synthetic import SMAC_2S3Z_INFO, synthetic_rows

    out: dict = {"episodes": args.episodes, "torch_threads": torch.get_num_threads()}
    path = args.out or os.path.join(tempfile.mkdtemp(), "synthetic_2s3z")
    if not os.path.exists(path):
        t0 = time.time()
        write_dataset(synthetic_rows(SMAC_2S3Z_INFO, args.episodes, seed=0), path, DatasetMeta(env=SMAC_2S3Z_INFO))
        out["write_seconds"] = round(time.time() - t0, 2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    t0 = time.time()
    info, episodes = load_episodes(path, validate="schema")
    out["load_seconds"] = round(time.time() - t0, 2)
    agent_steps = int(episodes["filled"].sum()) * info.n_agents
    out["agent_steps"] = agent_steps
    cfg = SITConfig().environment("smac:2s3z").offline_data(input_=path)
    mc = build_sit_module_spec(info, cfg).rl_module_specs[K.ARDNEM_MODULE_ID].model_config
    torch.manual_seed(0)
    net = build_ardnem(mc).eval()

    if args.skip_stage2:
        out["stage2_local_seconds"] = out["stage2_bare_forward_seconds"] = float("nan")
        args.skip_ray_data = True
    # (a) bare forward over the filled agent-steps, in chunks of 256 episodes
    t0 = time.time()
    with torch.no_grad():
        for lo in (range(0, args.episodes, 256) if not args.skip_stage2 else []):
            sl = slice(lo, lo + 256)
            f = episodes["filled"][sl].astype(bool)
            net.weighted_rewards(torch.as_tensor(episodes["obs"][sl, :-1][f]), torch.as_tensor(episodes["actions"][sl][f]),
                                 torch.as_tensor(episodes["state"][sl, :-1][f]))
    out["stage2_bare_forward_seconds"] = round(time.time() - t0, 2)
    # (b) SIT local Stage II
    t0 = time.time()
    if not args.skip_stage2:
        stage2.decompose_episodes(net, episodes, 0.99, 256)
        out["stage2_local_seconds"] = round(time.time() - t0, 2)
    # (c) Ray Data pass
    if not args.skip_ray_data:
        sd = {k: v.numpy() for k, v in net.state_dict().items()}
        t0 = time.time()
        stage2.decompose_with_ray_data(path, mc, sd, 0.99, episodes["episode_id"], 256)
        out["stage2_ray_data_seconds"] = round(time.time() - t0, 2)
    scale = 10_000 / args.episodes
    if not args.skip_stage2:
        out["stage2_local_seconds_per_10k_episodes"] = round(out["stage2_local_seconds"] * scale, 1)
        out["stage2_bare_forward_seconds_per_10k_episodes"] = round(out["stage2_bare_forward_seconds"] * scale, 1)
    del episodes

    # Stage III
    algo = (SITConfig().environment("smac:2s3z").offline_data(input_=path)
            .training(ardnem_updates=1, ardnem_updates_per_iteration=1, agent_updates=10**9,
                      agent_updates_per_iteration=args.updates, validate_dataset="schema")
            .debugging(seed=0)).build_algo()
    algo.train()  # Stage I (1 update) + Stage II
    batches = [ray.get(algo.dper.sample.remote(32)) for _ in range(args.updates)]
    t0 = time.time()
    for b in batches:
        algo.learner_group.update(batch=algo._agent_batch(b))
    out["stage3_rllib_ms_per_update"] = round(1000 * (time.time() - t0) / args.updates, 1)
    out["stage3_mean_batch_length"] = float(np.mean([b[t]["filled"].shape[1] for b in batches for t in b]))
    t0 = time.time()
    algo.train()  # the real loop: DPER round trip (prefetched) + update + metrics
    out["stage3_rllib_train_loop_ms_per_update"] = round(1000 * (time.time() - t0) / args.updates, 1)

    # Stage I updates (32 episodes, all real timesteps) through the LearnerGroup
    ab = [algo._ardnem_batch() for _ in range(max(5, args.updates // 2))]
    t0 = time.time()
    for b in ab:
        algo.learner_group.update(batch=b)
    out["stage1_rllib_ms_per_update"] = round(1000 * (time.time() - t0) / len(ab), 1)
    out["stage1_timesteps_per_batch"] = float(np.mean([len(b.policy_batches[K.ARDNEM_MODULE_ID]) for b in ab]))
    out["paper_length_stage1_minutes_estimate"] = round(20000 * out["stage1_rllib_ms_per_update"] / 60000, 1)

    # plain PyTorch loop with the same modules/losses
    from rllib_sit.algorithms.sit.torch.sit_torch_learner import (crr_filtered_actor_loss,
                                                                  uncertainty_weighted_td_loss)

    spec = build_sit_module_spec(info, algo.config)
    mods = {t: spec.rl_module_specs[t].build() for t in algo.types}
    opts = {t: (torch.optim.RMSprop(m.actor.parameters(), lr=5e-4, alpha=0.99, eps=1e-5),
                torch.optim.RMSprop(m.critic.parameters(), lr=1e-4, alpha=0.99, eps=1e-5)) for t, m in mods.items()}
    tb = [{t: {k: torch.as_tensor(v) for k, v in b[t].items()} for t in b} for b in batches]
    t0 = time.time()
    for i, b in enumerate(tb):
        for t, m in mods.items():
            fwd = m._forward_train(b[t])
            c = uncertainty_weighted_td_loss(fwd["q_taken"], fwd["q_next_target"], b[t]["reward_hat"],
                                             b[t]["uncertainty"], b[t]["terminated"], b[t]["filled"],
                                             b[t]["next_filled"], 0.99, 1.0, 1e-2)
            a = crr_filtered_actor_loss(fwd["logp"], fwd["q_taken"], b[t]["uncertainty"], b[t]["filled"], 0.1, 1.0, 1e-2)
            for o in opts[t]:
                o.zero_grad()
            (c + a).backward()
            torch.nn.utils.clip_grad_norm_(m.actor.parameters(), 10.0)
            torch.nn.utils.clip_grad_norm_(m.critic.parameters(), 10.0)
            for o in opts[t]:
                o.step()
            if (i + 1) % 100 == 0:
                m.sync_target_critic()
    out["stage3_plain_torch_ms_per_update"] = round(1000 * (time.time() - t0) / args.updates, 1)
    out["stage3_rllib_overhead_ratio"] = round(out["stage3_rllib_ms_per_update"] / out["stage3_plain_torch_ms_per_update"], 2)
    out["paper_length_stage3_minutes_estimate"] = round(15000 * out["stage3_rllib_train_loop_ms_per_update"] / 60000, 1)
    algo.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
