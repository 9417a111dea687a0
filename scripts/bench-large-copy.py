"""Large-copy benchmark, on one local Garage server: the replicator copying one large object in
parts (the source's own layout), by part size and part concurrency, in one invocation and handed
from invocation to invocation. Garage has no object tagging API: the driver's proxy answers it as
for untagged objects.

Garage stores content-addressed blocks: a part copied on block boundaries is mostly a metadata
update there, so these rates are Garage's, not S3's. What they show is the function's own cost per
part and per hand-off. Prints a Markdown table. Run through scripts/bench-large-copy.sh.
"""

from __future__ import annotations

import json
import os
import statistics

from bench_common import LatencyProxy, driver, garage_bench

SIZE_MIB = int(os.environ.get("BENCH_LARGE_MIB", "2048"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
PART_MIB = [8, 64, 256]
CONCURRENCY = [1, 4, 16]
# Hand-offs: parts per invocation, for the smallest parts.
PER_INVOCATION = [16, 64]


def main() -> None:
    with garage_bench("bench-large-") as (_, garage, keys, env):
        key_id = keys["AWS_ACCESS_KEY_ID"]
        source = garage.bucket("bench-large-source", key_id)
        for part in PART_MIB:
            put = driver(env, "put-large", source, f"object-{part}", str(SIZE_MIB), str(part))
            print(json.dumps({"put": part, **put}), flush=True)
        # Garage has no object tagging API: the driver's proxy answers it, as for untagged
        # objects, and adds no latency.
        shim = LatencyProxy(env, garage.endpoint, 0, 0, untagged=True)
        copy_env = {**env, "AWS_ENDPOINT_URL": shim.endpoint}
        runs = []
        count = 0

        def copy(part: int, concurrency: int, per_invocation: str) -> None:
            nonlocal count
            for _ in range(REPEATS):
                count += 1
                destination = garage.bucket(f"bench-large-{count}", key_id)
                before = garage.requests_by_api()
                run = driver(copy_env, "large-copy", source, f"object-{part}", destination,
                             str(concurrency), per_invocation)
                after = garage.requests_by_api()
                run["requests"] = {api: after[api] - before.get(api, 0) for api in after
                                   if after[api] != before.get(api, 0)}
                runs.append({"part": part, "concurrency": concurrency,
                             "per_invocation": per_invocation, **run})
                print(json.dumps(runs[-1]), flush=True)

        for part in PART_MIB:
            for concurrency in CONCURRENCY:
                copy(part, concurrency, "all")
        for per_invocation in PER_INVOCATION:
            copy(PART_MIB[0], 16, str(per_invocation))
        shim.stop()
        table(runs)


def table(runs: list[dict]) -> None:
    print(f"\n{SIZE_MIB} MiB object, {REPEATS} runs each (median, min-max):\n")
    print("| part size | parts at once | invocations | MiB/s | requests (by API) |")
    print("|---:|---:|---:|---:|---|")
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["part"], run["concurrency"], run["per_invocation"]), []).append(run)
    for (part, concurrency, _), group in groups.items():
        rates = [run["mib_per_second"] for run in group]
        requests = ", ".join(f"{api} {n}" for api, n in sorted(group[0]["requests"].items()))
        print(f"| {part} MiB | {concurrency} | {group[0]['invocations']} | "
              f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f}) | "
              f"{requests} |")


if __name__ == "__main__":
    main()
