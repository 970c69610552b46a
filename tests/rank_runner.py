"""Run one function on this rank and write its outcome to <outdir>/rank-<r>.json."""

import importlib
import json
import sys
import traceback


def main() -> None:
    target, outdir, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    from dask_mpi_lx.mpi.environ import rank_from_env

    rank = rank_from_env()
    try:
        module, _, name = target.partition(":")
        value = getattr(importlib.import_module(module), name)(*args)
        outcome = {"ok": True, "value": value}
    except SystemExit as e:  # batch-mode server ranks leave this way after serving
        outcome = {"ok": e.code in (0, None), "value": f"exit {e.code}",
                   "traceback": f"SystemExit({e.code})"}
        with open(f"{outdir}/rank-{rank}.json", "w") as f:
            json.dump(outcome, f)
        raise
    except BaseException:
        outcome = {"ok": False, "traceback": traceback.format_exc()}
    with open(f"{outdir}/rank-{rank}.json", "w") as f:
        json.dump(outcome, f, default=str)


if __name__ == "__main__":
    main()
