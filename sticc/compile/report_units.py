"""How a report writes its figures: durations, sizes, bandwidths, shares, rates, counts and bit
histograms, one place for units; report.md, the terminal view and timeline.svg all write them so."""

from __future__ import annotations

NA = "n/a"


def ms_text(seconds: float | None) -> str:
    if seconds is None:
        return NA
    ms = seconds * 1e3
    if ms == 0:
        return "0 ms"
    if abs(ms) >= 1000:
        return f"{ms:.0f} ms"
    if abs(ms) >= 10:
        return f"{ms:.1f} ms"
    if abs(ms) >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def ms_value_text(seconds: float) -> str:
    """`ms_text` without its unit, for ranges: '21.3' of '21.3-38.0 ms'."""
    return ms_text(seconds).removesuffix(" ms")


def bytes_text(nbytes: float | None) -> str:
    """MB (10^6 bytes, as the CLI prints), or kB for small tiny-model sizes."""
    if nbytes is None:
        return NA
    if abs(nbytes) >= 1e6 or nbytes == 0:
        return f"{nbytes / 1e6:.2f} MB"
    if abs(nbytes) >= 1e3:
        return f"{nbytes / 1e3:.1f} kB"
    return f"{nbytes:.0f} B"


def bandwidth_text(bandwidth_Bps: float | None) -> str:
    return NA if bandwidth_Bps is None else f"{bandwidth_Bps / 1e6:.1f} MB/s"


def percent_text(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return ""
    return f"{100 * part / whole:.1f}%"


def of_fp32_text(nbytes: float | None, full_precision_bytes: float | None) -> str:
    share = percent_text(nbytes, full_precision_bytes)
    return bytes_text(nbytes) + (f" ({share} of fp32)" if share else "")


def number_text(value: float | None, digits: int = 6) -> str:
    return NA if value is None else f"{value:.{digits}g}"


def count_text(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def bits_text(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}"


def rate_text(per_s: float | None) -> str:
    """A rate (tokens/s) with three significant digits or so."""
    if per_s is None:
        return NA
    if per_s >= 100:
        return f"{per_s:.0f}"
    return f"{per_s:.1f}" if per_s >= 10 else f"{per_s:.2f}"


def tokens_per_s_at(latency_s: float | None) -> float | None:
    """Tokens per second at one token per `latency_s` (None when unknown)."""
    return 1.0 / latency_s if latency_s else None


def percentile_text(predicted: dict) -> str:
    """The planned percentile, 90 rather than 90.0 (plan.json's float read back)."""
    value = predicted.get("planned_percentile")
    return "?" if value is None else f"{value:g}"


def histogram_text(bits: list[int]) -> str:
    """'20x 8-bit, 42x 4-bit, 10x dropped', widest first."""
    counts: dict[int, int] = {}
    for b in bits:
        counts[b] = counts.get(b, 0) + 1
    return ", ".join(f"{n}x {'dropped' if b == 0 else f'{b}-bit'}" for b, n in sorted(counts.items(), reverse=True))
