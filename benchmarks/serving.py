"""Private serving over loopback (TR-4928 scenario 3), clean and private clients side by side.

    .venv/bin/python benchmarks/serving.py [--requests 60] [--duration 8] [--levels 1,2,4,8]
                                           [--sustain 60] [--protocols http,grpc]

Exports the face detector's tail to a model-repository volume in a scratch veil home, starts a
real Triton server on it (`veil serve start`), and measures, end to end (640 x 480 frame ->
faces: preprocess, head, [obfuscation], request, tail on the server, response, postprocess):

1. batch 1, one request at a time: median and p99 latency and throughput of the clean `Client`
   and the `PrivateClient`, interleaved request by request, and the obfuscation's share of the
   private latency (its own time, measured inside each request);
2. a concurrency sweep (client threads, one connection each) for both clients;
3. `--sustain` seconds of private requests at the highest concurrency: every request sent must
   come back complete (lost must be 0), and the server's own count must agree.

The obfuscator is fitted with 0 epochs (signal statistics only): the noise's values do not change
its cost. Writes benchmarks/out/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def summary(lat: list[float], wall: float | None = None) -> dict:
    out = {"n": len(lat), "median_ms": 1e3 * pct(lat, 50), "p99_ms": 1e3 * pct(lat, 99)}
    out["throughput_rps"] = (len(lat) / wall) if wall else (1.0 / statistics.fmean(lat))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=60, help="per client kind in phase 1")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per sweep point")
    p.add_argument("--levels", default="1,2,4,8")
    p.add_argument("--sustain", type=float, default=60.0)
    p.add_argument("--protocols", default="http,grpc")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/serving.json"))
    args = p.parse_args()
    levels = [int(v) for v in args.levels.split(",")]
    protocols = args.protocols.split(",")

    home = Path(tempfile.mkdtemp(prefix="veil-serving-bench-"))
    os.environ.update(VEIL_HOME=str(home / "home"), VEIL_DRIVER="copy")
    from veil import serve
    from veil.privacy import Obfuscator
    from veil.serve import Client, PrivateClient
    from veil.solutions import face_privacy as fp

    rng = np.random.default_rng(0)
    frames = [fp.render(rng, (640, 480))[0] for _ in range(16)]
    model = fp.load_model("cpu")
    x = torch.stack([fp.to_input(f) for f in frames[:4]])
    obf = Obfuscator(0.8, epochs=0).fit(model, [(x, None)], None)
    fp.export_models("triton-model-repo")
    t0 = time.perf_counter()
    info = serve.start("triton-model-repo", name="bench")
    print(f"server ready in {time.perf_counter() - t0:.1f} s: http {info.http}, grpc "
          f"{info.grpc}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs", flush=True)
    kw = dict(preprocess=fp.to_input,
              postprocess=lambda outs, items: fp.postprocess(
                  outs[0], outs[1], [f.shape[:2] for f in items]),
              input_shape=(3, fp.INPUT, fp.INPUT))

    def make(kind: str, protocol: str):
        if kind == "private":
            return PrivateClient("bench", fp.NOISY, model, obf, protocol=protocol, **kw)
        return Client("bench", fp.BASE, model, protocol=protocol, **kw)

    result: dict = {"server": info.to_json(), "threads": torch.get_num_threads(),
                    "cpus": os.cpu_count(), "frame": [480, 640], "batch1": {}, "sweep": {},
                    "sustained": {}}
    try:
        # 1. batch 1, sequential, interleaved clean / private
        for protocol in protocols:
            clients = {k: make(k, protocol) for k in ("clean", "private")}
            for c in clients.values():  # warm-up
                for f in frames[:3]:
                    c.predict([f])
            lat = {k: [] for k in clients}
            obf_t, parts = [], {k: [] for k in clients}
            for i in range(args.requests):
                f = frames[i % len(frames)]
                for k, c in clients.items():
                    t = time.perf_counter()
                    c.predict([f])
                    lat[k].append(time.perf_counter() - t)
                    parts[k].append(dict(c.last_timing))
                    if k == "private":
                        obf_t.append(c.last_timing["obfuscation"])
            for c in clients.values():
                c.close()
            row = {k: summary(v) for k, v in lat.items()}
            for k in clients:
                row[k]["parts_median_ms"] = {
                    part: 1e3 * pct([d[part] for d in parts[k]], 50) for part in parts[k][0]}
            row["obfuscation_median_ms"] = 1e3 * pct(obf_t, 50)
            row["obfuscation_share"] = pct(obf_t, 50) / pct(lat["private"], 50)
            row["private_over_clean"] = pct(lat["private"], 50) / pct(lat["clean"], 50) - 1
            result["batch1"][protocol] = row
            print(f"\n[batch 1, {protocol}] {args.requests} requests each, interleaved")
            for k in clients:
                r = row[k]
                print(f"  {k:<8} median {r['median_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                      f"{r['throughput_rps']:6.1f} req/s   parts: " + ", ".join(
                          f"{n} {v:.1f}" for n, v in r["parts_median_ms"].items()))
            print(f"  obfuscation {row['obfuscation_median_ms']:.2f} ms = "
                  f"{100 * row['obfuscation_share']:.2f}% of private latency; private/clean "
                  f"medians {100 * row['private_over_clean']:+.1f}%", flush=True)

        # 2. concurrency sweep
        def load(kind: str, protocol: str, conc: int, seconds: float, check=None) -> dict:
            lat: list[float] = []
            errors: list[str] = []
            sent = [0]
            lock = threading.Lock()
            kinds = [protocol if protocol != "mixed" else protocols[i % len(protocols)]
                     for i in range(conc)]
            start = threading.Barrier(conc + 1)
            end = [0.0]

            def worker(proto: str, seed: int) -> None:
                c = make(kind, proto)  # a client per thread, made in its thread
                i = seed
                start.wait()
                while time.perf_counter() < end[0]:
                    f = frames[i % len(frames)]
                    i += conc
                    with lock:
                        sent[0] += 1
                    t = time.perf_counter()
                    try:
                        dets = c.predict([f])
                        if check is not None:
                            check(dets)
                    except Exception as e:  # counted, not fatal: the point is to see them
                        with lock:
                            errors.append(f"{type(e).__name__}: {e}")
                        continue
                    with lock:
                        lat.append(time.perf_counter() - t)
                c.close()

            threads = [threading.Thread(target=worker, args=(k, i)) for i, k in enumerate(kinds)]
            for t in threads:
                t.start()
            t0 = time.perf_counter()
            end[0] = t0 + seconds
            start.wait()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            r = summary(lat, wall)
            r.update(sent=sent[0], completed=len(lat), errors=len(errors),
                     lost=sent[0] - len(lat), first_errors=errors[:3], wall_s=wall)
            return r

        for protocol in protocols:
            result["sweep"][protocol] = {}
            print(f"\n[concurrency sweep, {protocol}] {args.duration:g} s per point")
            print(f"  {'clients':>7} {'kind':<8} {'req/s':>7} {'median ms':>10} {'p99 ms':>8} "
                  f"{'errors':>6}")
            for conc in levels:
                for kind in ("clean", "private"):
                    r = load(kind, protocol, conc, args.duration)
                    result["sweep"][protocol].setdefault(str(conc), {})[kind] = r
                    print(f"  {conc:>7} {kind:<8} {r['throughput_rps']:7.1f} "
                          f"{r['median_ms']:10.1f} {r['p99_ms']:8.1f} {r['errors']:>6}",
                          flush=True)

        # 3. sustained load: nothing lost
        if args.sustain > 0:
            conc = max(levels)

            def check(dets) -> None:
                boxes, scores = dets[0]
                assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(scores) == len(boxes)

            with Client("bench", fp.NOISY, protocol="http") as c:
                before = c.statistics()["model_stats"][0]["inference_count"]
            r = load("private", "mixed", conc, args.sustain, check)
            with Client("bench", fp.NOISY, protocol="http") as c:
                after = c.statistics()["model_stats"][0]["inference_count"]
            r["server_inference_count"] = after - before
            result["sustained"] = {"clients": conc, "protocols": protocols, **r}
            print(f"\n[sustained] {args.sustain:g} s, {conc} private clients "
                  f"({'/'.join(protocols)}): sent {r['sent']}, completed {r['completed']}, "
                  f"lost {r['lost']}, errors {r['errors']}; server counted "
                  f"{r['server_inference_count']}; {r['throughput_rps']:.1f} req/s, median "
                  f"{r['median_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms", flush=True)
            ok = r["lost"] == 0 and r["errors"] == 0 and r["server_inference_count"] == r["sent"]
            print(f"zero loss: {'MET' if ok else 'NOT MET'}")
    finally:
        serve.stop("bench")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    sys.exit(0 if not result["sustained"] or result["sustained"]["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
