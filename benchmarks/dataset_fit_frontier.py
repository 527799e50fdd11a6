"""Can one random member serve both of HalfCheetah_2l's Table 9 datasets? (issue 20, docs/datasets.md)

    python benchmarks/dataset_fit_frontier.py                 # the shipped pool card, 100 episodes per point
    python benchmarks/dataset_fit_frontier.py --card /tmp/pools/mamujoco_halfcheetah_2l.json --episodes 200

HalfCheetah_2l ``low`` = 100% [l1:m, l2:r] (paper −110.52) and ``medium`` = 100% [l1:r, l2:e] (paper 41.79)
share the random member. For random grades across the band interval the pool fit found (card's
``dataset_fit.grade_intervals``), this prints the *lowest* ``low`` reachable (medium member at its
lowest in-band grade) and the *highest* ``medium`` reachable (expert member at its highest in-band
grade), on common random numbers. If no random grade has both inside the acceptance band
(±15 %), the two targets cannot be met together by any members inside the paper's bands.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

ENV = "mamujoco:halfcheetah_2l"


def main(argv=None) -> int:
    from rllib_sit.data import pool_fit as F
    from rllib_sit.data.composition import env_spec
    from rllib_sit.data.pool_calibration import _find_heuristic
    from rllib_sit.data.pool_card import pool_card_path
    from rllib_sit.envs.registry import make_env

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--card", default=None, help="pool card (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--points", type=int, default=5)
    args = p.parse_args(argv)
    card = json.loads(open(args.card or pool_card_path(ENV)).read())
    iv = card["dataset_fit"]["grade_intervals"]
    spec, env = env_spec(ENV), make_env(ENV)
    heuristic = _find_heuristic("mamujoco")

    def lad(g):
        return F.ladder_member("mamujoco", False, heuristic, g)

    low, med = spec.datasets["low"], spec.datasets["medium"]
    t_low, t_med = low.paper_average_return, med.paper_average_return
    tol_low, tol_med = F.tolerance("mamujoco", t_low), F.tolerance("mamujoco", t_med)
    print(f"targets: low {t_low} (accepted <= {t_low + tol_low:.2f}), medium {t_med} "
          f"(accepted >= {t_med - tol_med:.2f}); {args.episodes} episodes per point\n")
    print("| random grade | lowest `low` (medium member at grade "
          f"{iv['medium'][0]:+.3f}) | highest `medium` (expert member at grade {iv['expert'][1]:+.3f}) | both? |")
    print("|---|---|---|---|")
    for g in np.linspace(iv["random"][0], iv["random"][1], args.points):
        lo = F.composition_return(env, low.composition, {"random": lad(g), "medium": lad(iv["medium"][0])},
                                  args.episodes, 5_000_000)
        me = F.composition_return(env, med.composition, {"random": lad(g), "expert": lad(iv["expert"][1])},
                                  args.episodes, 5_000_000)
        both = lo <= t_low + tol_low and me >= t_med - tol_med
        print(f"| {g:+.3f} | {lo:.2f} | {me:.2f} | {'yes' if both else 'no'} |", flush=True)
    print("\ncommand: python " + " ".join(shlex.quote(x) for x in sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
