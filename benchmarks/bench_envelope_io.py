"""End-to-end I/O cost of client-side encryption: guarded vs plain boto3 vs the official client.

Run: .venv/bin/python benchmarks/bench_envelope_io.py [--sizes 8,64,256] [--rounds 7]
     [--no-official] [--no-rss] [--rss-mib 256] [--keyring kms|raw-aes]

Everything talks to one moto server running in its own process on 127.0.0.1 (a free
port), S3 and KMS alike. Both encrypting clients use a KMS keyring on a key created in
that server's KMS, so both pay the same KMS calls (one GenerateDataKey per put, one
Decrypt per get). ``--keyring raw-aes`` gives sse_guard a raw AES wrapping key instead
(no KMS call at all), which separates what the envelope costs from what KMS costs:
moto serves KMS from the same process, and on a shared core, as the S3 body it streams.

Wall time (one process, rounds alternate the order plain / guarded / official so that
drift on a shared machine hits all of them), per size:
- put: ``put_object(Body=<open file>)`` from a file on disk;
- upload_file: the managed transfer (multipart from 8 MiB, 10 threads); the official
  client does not encrypt managed uploads, so it has no figure there;
- get: ``get_object`` and the Body read in 1 MiB chunks into a file.
Medians per size and the ratio to plain; target <= 1.15x.

Peak RSS (``--no-rss`` to skip): each of put_object, upload_file and get of a
``--rss-mib`` object in a fresh child process (``--child put|upload|get --mode
plain|guarded|official``), its VmHWM at the end (not ru_maxrss: Linux carries that over
execve, so it would show the parent's peak), reported as MiB above the plain boto3 child
doing the same thing; target <= +64 MiB. ``--trace`` adds tracemalloc's
peak, ``--profile FILE`` a cProfile of a child (for finding where the time goes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _moto_server import fake_aws_env, moto_server

MiB = 1024 * 1024
BUCKET = "bench-envelope-io"
MODES = ("plain", "guarded", "official")
OPS = ("put", "upload", "get")
TARGET_RATIO = 1.15
TARGET_RSS_MIB = 64.0
OFFICIAL_REFERENCE = {"put": "1.35-1.69x", "upload": "n/a", "get": "2.2-5.2x"}
OFFICIAL_RSS_REFERENCE = {"put": "+266", "upload": "n/a", "get": "+1,035"}
READ_CHUNK = MiB
KEYRING = "kms"  # sse_guard's keyring (--keyring); the official client always uses KMS


# -- clients -----------------------------------------------------------------------------


def make_clients(endpoint: str, key_arn: str, modes: tuple[str, ...], keyring: str | None = None) -> dict[str, Any]:
    """One S3 client per mode, each its own (the encrypting ones register handlers on it)."""
    import boto3

    def s3() -> Any:
        return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    clients: dict[str, Any] = {}
    if "plain" in modes:
        clients["plain"] = s3()
    if "guarded" in modes:
        import sse_guard

        kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
        spec: dict[str, Any] = {"type": "kms", "key_id": key_arn}
        if (keyring or KEYRING) == "raw-aes":
            # A fixed key: parent and children must read each other's objects.
            spec = {"type": "raw-aes", "key_file": str(_raw_key_file())}
        policy = sse_guard.Policy.from_dict(
            {
                "mode": "enforce",
                "rules": [{"bucket": BUCKET, "algorithm": "client-side", "keyring": spec}],
            }
        )
        client = s3()
        sse_guard.register(client, policy=policy, kms_client=kms)
        clients["guarded"] = client
    if "official" in modes:
        from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
        from s3_encryption.materials.kms_keyring import KmsKeyring

        kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
        clients["official"] = S3EncryptionClient(
            wrapped_s3_client=s3(),
            config=S3EncryptionClientConfig(keyring=KmsKeyring(kms_client=kms, kms_key_id=key_arn)),
        )
    return clients


def _raw_key_file() -> Path:
    path = Path(tempfile.gettempdir()) / "bench_envelope_io-raw-aes.key"
    if not path.exists():
        path.write_bytes(hashlib.sha256(b"bench_envelope_io").digest())
    return path


def supported(mode: str, op: str) -> bool:
    # The official client's managed uploads go through its wrapped client's multipart
    # calls unencrypted: there is nothing comparable to measure.
    return not (mode == "official" and op == "upload")


def object_key(mode: str, size_mib: int, op: str) -> str:
    return f"{mode}/{size_mib}{'-uf' if op == 'upload' else ''}"


def do_op(client: Any, mode: str, op: str, size_mib: int, source: Path, out: Path) -> None:
    if op == "put":
        with source.open("rb") as f:
            client.put_object(Bucket=BUCKET, Key=object_key(mode, size_mib, op), Body=f)
    elif op == "upload":
        client.upload_file(str(source), BUCKET, object_key(mode, size_mib, op))
    elif op == "get":
        body = client.get_object(Bucket=BUCKET, Key=object_key(mode, size_mib, "put"))["Body"]
        with out.open("wb") as f:
            while True:
                chunk = body.read(READ_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
        body.close()
    else:  # pragma: no cover
        raise ValueError(op)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def write_random(path: Path, size_mib: int) -> None:
    with path.open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MiB))


# -- child (one measured operation in a fresh process) -------------------------------------


def child(args: argparse.Namespace) -> None:
    import tracemalloc

    # The same imports in every mode, so the baseline is the same.
    import boto3  # noqa: F401
    import s3_encryption  # noqa: F401

    import sse_guard  # noqa: F401

    client = make_clients(args.endpoint, args.key_arn, (args.mode,), args.keyring)[args.mode]
    source, out = Path(args.source), Path(args.out)
    out.unlink(missing_ok=True)
    before = _vm("VmRSS")
    if args.trace:
        tracemalloc.start()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    do_op(client, args.mode, args.child, args.size, source, out)
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    traced = tracemalloc.get_traced_memory()[1] if args.trace else None
    result = {
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "hwm_kib": _vm("VmHWM"),
        "rss_before_kib": before,
        "seconds": seconds,
        "traced_peak": traced,
    }
    print("RESULT " + json.dumps(result), flush=True)


def _vm(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_child(
    endpoint: str,
    key_arn: str,
    mode: str,
    op: str,
    size_mib: int,
    source: Path,
    out: Path,
    *,
    trace: bool,
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        op,
        "--mode",
        mode,
        "--endpoint",
        endpoint,
        "--key-arn",
        key_arn,
        "--size",
        str(size_mib),
        "--source",
        str(source),
        "--out",
        str(out),
    ]
    if trace:
        cmd.append("--trace")
    cmd += ["--keyring", KEYRING]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError(f"child {mode} {op} failed:\n{proc.stderr[-3000:]}")


# -- parent ----------------------------------------------------------------------------------


def setup_server(endpoint: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    return str(kms.create_key(Description="bench_envelope_io")["KeyMetadata"]["Arn"])


Samples = dict[tuple[int, str, str], list[tuple[float, float]]]  # (wall, client CPU)


def timing(
    endpoint: str, key_arn: str, modes: tuple[str, ...], sizes: list[int], rounds: int, work: Path
) -> Samples:
    clients = make_clients(endpoint, key_arn, modes)
    sources = {size: work / f"src-{size}" for size in sizes}
    out = work / "out"
    samples: Samples = {}
    # Warm-up: connections, KMS, imports on first use; not measured.
    for mode in modes:
        do_op(clients[mode], mode, "put", sizes[0], sources[sizes[0]], out)
        do_op(clients[mode], mode, "get", sizes[0], sources[sizes[0]], out)
    for r in range(rounds):
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        started = time.perf_counter()
        for size in sizes:
            for op in OPS:
                for mode in order:
                    if not supported(mode, op):
                        continue
                    # A fresh file for every get: rewriting a truncated file makes ext4
                    # flush it on close (auto_da_alloc), which would land in the timing.
                    out.unlink(missing_ok=True)
                    wall, cpu = time.perf_counter(), time.process_time()
                    do_op(clients[mode], mode, op, size, sources[size], out)
                    sample = (time.perf_counter() - wall, time.process_time() - cpu)
                    samples.setdefault((size, op, mode), []).append(sample)
                    if (
                        r == 0
                        and op == "get"
                        and mode != "plain"
                        and digest(out) != digest(sources[size])
                    ):
                        raise SystemExit(f"{mode} get of {size} MiB did not return the plaintext")
        print(
            f"  round {r + 1}/{rounds}: {time.perf_counter() - started:5.1f} s  (order {', '.join(order)})",
            flush=True,
        )
    return samples


def _median(samples: Samples, key: tuple[int, str, str], which: int) -> float:
    return statistics.median(s[which] for s in samples[key])


def _ratio(samples: Samples, size: int, op: str, mode: str) -> float:
    """Median of the per-round ratios to plain: each pair ran back to back, so drift
    between rounds (other jobs on a shared machine) cancels out of it."""
    pairs = zip(samples[(size, op, mode)], samples[(size, op, "plain")], strict=True)
    return statistics.median(ours[0] / plain[0] for ours, plain in pairs)


def kms_round_trips(endpoint: str, key_arn: str, n: int = 15) -> tuple[float, float]:
    """Median GenerateDataKey and Decrypt latency: what each encrypted put / get adds."""
    import boto3

    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    blob = kms.generate_data_key(KeyId=key_arn, KeySpec="AES_256")["CiphertextBlob"]
    gen, dec = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        kms.generate_data_key(KeyId=key_arn, KeySpec="AES_256")
        t1 = time.perf_counter()
        kms.decrypt(CiphertextBlob=blob)
        gen.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    return statistics.median(gen), statistics.median(dec)


def print_timing(samples: Samples, modes: tuple[str, ...], sizes: list[int]) -> list[str]:
    missed: list[str] = []
    rounds = len(next(iter(samples.values())))
    official = "official" in modes
    print()
    print(
        f"Wall time, median of {rounds} rounds (s); ratio to plain = median of the per-round "
        f"ratios (target <= {TARGET_RATIO:.2f}x); then this process's CPU time (s, all threads; "
        "moto's is not in it)"
    )
    header = f"{'op':<8}{'MiB':>5}{'plain':>9}{'guarded':>9}{'ratio':>8}{'':>6}"
    if official:
        header += f"{'official':>10}{'ratio':>8}  {'(issue)':<11}"
    header += f" | cpu {'plain':>7}{'guarded':>9}"
    if official:
        header += f"{'official':>10}"
    print(header)
    for op in OPS:
        for size in sizes:
            plain = _median(samples, (size, op, "plain"), 0)
            guarded = _median(samples, (size, op, "guarded"), 0)
            ratio = _ratio(samples, size, op, "guarded")
            verdict = "ok" if ratio <= TARGET_RATIO else "MISS"
            if verdict == "MISS":
                missed.append(f"{op} {size} MiB: {ratio:.2f}x")
            line = f"{op:<8}{size:>5}{plain:>9.3f}{guarded:>9.3f}{ratio:>7.2f}x{verdict:>6}"
            if official:
                if supported("official", op):
                    off = _median(samples, (size, op, "official"), 0)
                    line += f"{off:>10.3f}{_ratio(samples, size, op, 'official'):>7.2f}x"
                else:
                    line += f"{'n/a':>10}{'':>8}"
                line += f"  {OFFICIAL_REFERENCE[op]:<11}"
            line += f" |     {_median(samples, (size, op, 'plain'), 1):>7.3f}{_median(samples, (size, op, 'guarded'), 1):>9.3f}"
            if official:
                cpu = (
                    f"{_median(samples, (size, op, 'official'), 1):.3f}"
                    if supported("official", op)
                    else "n/a"
                )
                line += f"{cpu:>10}"
            print(line)
    return missed


def rss_phase(
    endpoint: str, key_arn: str, modes: tuple[str, ...], size: int, work: Path, *, trace: bool
) -> dict[tuple[str, str], dict[str, Any]]:
    source = work / f"src-{size}"
    if not source.exists():
        write_random(source, size)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for op in OPS:  # put before get: get reads what put stored
        for mode in modes:
            if supported(mode, op):
                results[(op, mode)] = run_child(
                    endpoint, key_arn, mode, op, size, source, work / f"out-{mode}", trace=trace
                )
    return results


def peak_mib(result: dict[str, Any]) -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so a child spawned
    # from this (large) process would report the parent's peak.
    kib = result.get("hwm_kib") or result["maxrss_kib"]
    return float(kib) / 1024


def print_rss(
    results: dict[tuple[str, str], dict[str, Any]], modes: tuple[str, ...], size: int
) -> list[str]:
    missed: list[str] = []
    print()
    print(
        f"Peak RSS of one {size} MiB operation in a fresh process (VmHWM; MiB above plain; target <= +{TARGET_RSS_MIB:.0f})"
    )
    header = f"{'op':<8}{'plain':>9}{'guarded':>9}{'delta':>9}{'':>6}"
    if "official" in modes:
        header += f"{'official':>10}{'delta':>9}   {'(issue: official)':<18}"
    if any(r.get("traced_peak") for r in results.values()):
        header += "  traced peak MiB (plain/guarded/official)"
    print(header)
    for op in OPS:
        plain = peak_mib(results[(op, "plain")])
        guarded = peak_mib(results[(op, "guarded")])
        delta = guarded - plain
        verdict = "ok" if delta <= TARGET_RSS_MIB else "MISS"
        if verdict == "MISS":
            missed.append(f"RSS {op}: +{delta:.0f} MiB")
        line = f"{op:<8}{plain:>9.0f}{guarded:>9.0f}{delta:>+9.0f}{verdict:>6}"
        if "official" in modes:
            if (op, "official") in results:
                off = peak_mib(results[(op, "official")])
                line += f"{off:>10.0f}{off - plain:>+9.0f}"
            else:
                line += f"{'n/a':>10}{'':>9}"
            line += f"   {OFFICIAL_RSS_REFERENCE[op]:<18}"
        peaks = [results.get((op, m), {}).get("traced_peak") for m in modes]
        if any(peaks):
            line += "  " + " / ".join("-" if p is None else f"{p / MiB:.1f}" for p in peaks)
        print(line)
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="8,64,256", help="object sizes in MiB, comma-separated")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-official", action="store_true")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--no-timing", action="store_true", help="only the peak-RSS children")
    parser.add_argument("--rss-mib", type=int, default=256)
    parser.add_argument("--trace", action="store_true", help="tracemalloc peak in the RSS children")
    parser.add_argument(
        "--keyring", choices=("kms", "raw-aes"), default="kms",
        help="sse_guard's keyring: kms (default, as the official client) or raw-aes (no KMS call)",
    )
    # child-only
    parser.add_argument("--child", choices=OPS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--key-arn", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="(child) write a cProfile of the operation here")
    args = parser.parse_args()
    global KEYRING
    KEYRING = args.keyring
    fake_aws_env()
    if args.child:
        child(args)
        return

    modes: tuple[str, ...] = ("plain", "guarded") if args.no_official else MODES
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    began = time.perf_counter()
    missed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_envelope_io-") as tmp, moto_server() as endpoint:
        work = Path(tmp)
        key_arn = setup_server(endpoint)
        print(f"moto server {endpoint}; KMS key {key_arn}")
        print(
            f"modes {', '.join(modes)}; sizes {sizes} MiB; {args.rounds} rounds; "
            f"sse_guard keyring {KEYRING}; python {sys.version.split()[0]}"
        )
        for size in sizes:
            write_random(work / f"src-{size}", size)
        if not args.no_timing:
            samples = timing(endpoint, key_arn, modes, sizes, args.rounds, work)
            for path in work.glob("out*"):
                path.unlink()
            missed += print_timing(samples, modes, sizes)
            gen, dec = kms_round_trips(endpoint, key_arn)
            print(
                f"KMS on this moto server: GenerateDataKey {gen * 1e3:.1f} ms, Decrypt {dec * 1e3:.1f} ms "
                "(one per encrypted put / get, guarded and official alike)"
            )
        if not args.no_rss:
            results = rss_phase(endpoint, key_arn, modes, args.rss_mib, work, trace=args.trace)
            missed += print_rss(results, modes, args.rss_mib)
    print()
    print(
        f"total {time.perf_counter() - began:.0f} s; "
        + ("all targets met" if not missed else "missed: " + "; ".join(missed))
    )


if __name__ == "__main__":
    main()
