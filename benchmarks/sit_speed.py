"""Former SIT speed benchmark, now an alias of ``benchmarks/speed.py`` (SIT rows only).

    python benchmarks/sit_speed.py [--updates 50] [--threads 2] [--synthetic 10000] [--skip-ray-data]

runs ``python benchmarks/speed.py --sections learner stage2 --algos SIT`` with these options
mapped: ``--updates`` -> ``--updates`` (per side and round), ``--threads`` -> ``--threads``,
``--synthetic N`` -> ``--stage2-episodes N`` (speed.py always uses synthetic 2s3z-sized episodes),
the Ray Data Stage II pass unless ``--skip-ray-data``. Other options are passed through.
The real-dataset option (``--input``) is gone; the tables of docs/algorithms/sit.md measured with
it come from the former script (``git show 4a94b6b:benchmarks/sit_speed.py``). For memory, run
``speed.py --sections memory``.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--synthetic", type=int)
    p.add_argument("--skip-ray-data", action="store_true")
    p.add_argument("--input", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.input:
        p.error("--input is gone: speed.py measures synthetic 2s3z-sized episodes (see the docstring)")
    out = ["--sections", "learner", "stage2", "--algos", "SIT"]
    if args.updates:
        out += ["--updates", str(args.updates)]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.synthetic:
        out += ["--stage2-episodes", str(args.synthetic)]
    if not args.skip_ray_data:
        out.append("--stage2-ray-data")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import speed

    return speed.main(out + rest)


if __name__ == "__main__":
    sys.exit(main())
