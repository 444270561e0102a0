"""`python -m simulator [--encounters N] [--seed S] ...` writes a day as JSON Lines to stdout."""
import argparse
import sys
from datetime import date

from . import simulate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    p.add_argument("--encounters", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--day", type=date.fromisoformat, default=date(2026, 3, 2))
    p.add_argument("--utc-offset-minutes", type=int, default=-300)
    p.add_argument("--gap-rate", type=float, default=0.05)
    p.add_argument("--bad-line-rate", type=float, default=0.0)
    a = p.parse_args(argv)
    out = sys.stdout
    try:
        for line in simulate(a.encounters, a.seed, a.day, a.utc_offset_minutes, a.gap_rate,
                             a.bad_line_rate):
            out.write(line + "\n")
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
