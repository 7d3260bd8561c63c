"""The printed report of ``soaes bench serve`` (one block per phase, printed as it ends)."""

from __future__ import annotations

from typing import Any


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _acceptance(acc: dict[str, Any]) -> str:
    return (
        f"acceptance rate {_f(acc['acceptance_rate'])}, mean acceptance length"
        f" {_f(acc['mean_acceptance_length'])}"
    )


def report_single(res: dict[str, Any]) -> None:
    """Print the single-stream phase: speed-ups over HTTP and offline, Serve overhead."""
    s = res["single_stream"]
    t, acc = s["tokens_per_s"], s["acceptance"]
    print(
        f"\n== soaes bench serve: {res['app']}\n   target {res['target']}\n"
        f"   draft {res['draft']}, k={res['k']}"
    )
    print(f"single stream, {s['prompts']} prompts x {s['max_tokens']} tokens, greedy (tokens/s):")
    print(f"  HTTP via Serve:  target+draft {t['spec']:.1f} | target alone {t['plain']:.1f}")
    print(
        f"  in-process vLLM: target+draft {t['inproc_spec']:.1f} |"
        f" target alone {t['inproc_plain']:.1f}  (same engine configs)"
    )
    print(
        f"  speculation speed-up: HTTP {s['speedup_spec_vs_plain_http']:.3f}x, offline"
        f" {s['speedup_spec_vs_plain_inproc']:.3f}x (HTTP/offline"
        f" {s['http_speedup_vs_offline_speedup']:.3f})"
    )
    print(
        f"  Serve overhead, HTTP / in-process: {s['serve_overhead_http_vs_inproc']:.3f}x"
        f" with the draft, {s['serve_overhead_plain']:.3f}x without (goal >= 0.9)"
    )
    print(f"  identical greedy outputs in all four: {s['identical_outputs_all_four']}")
    print(f"  {_acceptance(acc)} ({acc['spec_drafts']} drafts)", flush=True)


def report_load(res: dict[str, Any]) -> None:
    """Print the load phase: throughput, latency, TTFT, statuses, acceptance, replicas."""
    ld = res["load"]
    print(
        f"load: {ld['requests']} streaming chat requests at concurrency {res['concurrency']}:"
        f" statuses {ld['by_status']} in {ld['wall_s']:.1f} s"
    )
    print(
        f"  {ld['requests_per_s']:.2f} req/s, {ld['tokens_per_s']:.1f} tokens/s;"
        f" latency p50 {_f(ld['latency_p50_s'])} s p99 {_f(ld['latency_p99_s'])} s;"
        f" TTFT p50 {_f(ld['ttft_p50_s'])} s p99 {_f(ld['ttft_p99_s'])} s"
    )
    print(
        f"  {_acceptance(ld['acceptance'])}; only 200/429/503:"
        f" {ld['only_200_429_503']}; replicas before/after {ld['replicas_before_after']},"
        f" none died: {ld['no_replica_died']}",
        flush=True,
    )


def report_fault(res: dict[str, Any]) -> None:
    """Print the replica-kill phase."""
    f = res["fault"]
    print(
        f"fault: a vLLM replica SIGKILLed under load ({f['replicas_before']} replicas):"
        f" statuses {f['load']['by_status']}; failed in flight {f['failed_in_flight']};"
        f" replacement RUNNING after {_f(f['seconds_until_replacement_running'])} s;"
        f" later requests ok {f['after_kill_ok']};"
        f" orphaned engine processes killed {f['orphan_engine_processes_killed']}",
        flush=True,
    )
