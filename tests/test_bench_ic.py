"""bench/ic.py's pure helpers: iperf3's JSON read, the summaries and the RESULT line."""

from __future__ import annotations

import json
import math

import pytest

from bench.ic import iperf_result, ratio, result_line, summary


def iperf_json(bits_per_second: float, retransmits: int) -> str:
    return json.dumps({
        "start": {"connected": [{"local_host": "10.18.0.3", "remote_host": "10.16.0.100"}]},
        "intervals": [],
        "end": {"sum_sent": {"bytes": 1, "bits_per_second": bits_per_second * 1.01,
                             "retransmits": retransmits},
                "sum_received": {"bytes": 1, "bits_per_second": bits_per_second}},
    })


def test_iperf_throughput_is_what_the_receiver_counted() -> None:
    mbps, retransmits = iperf_result(iperf_json(325_620_000.0, 17))
    assert mbps == pytest.approx(325.62) and retransmits == 17


def test_iperf_without_retransmits_reported_counts_none() -> None:
    data = json.loads(iperf_json(1e6, 0))
    del data["end"]["sum_sent"]["retransmits"]
    mbps, retransmits = iperf_result(json.dumps(data))
    assert mbps == pytest.approx(1.0) and retransmits == 0


def test_a_failed_iperf_test_says_why() -> None:
    failed = json.dumps({"start": {}, "intervals": [], "end": {},
                         "error": "unable to connect to server: Connection refused"})
    with pytest.raises(ValueError, match="Connection refused"):
        iperf_result(failed)
    with pytest.raises(ValueError, match="no JSON"):
        iperf_result("iperf3: error - unable to connect\n")


def test_summary_is_the_median_and_nearest_rank_p99() -> None:
    assert summary([5.3, 10.2, 5.4, 5.2, 5.5]) == (5.4, 10.2)
    assert summary([2.0]) == (2.0, 2.0)
    median, p99 = summary([])
    assert math.isnan(median) and math.isnan(p99)


def test_ratio_and_result_line() -> None:
    assert ratio(300.0, 400.0) == 0.75
    assert math.isnan(ratio(1.0, 0.0))
    line = result_line({"rounds": 5, "connect_s": 5.333, "tcp_mbps_across": 325.6,
                        "tcp_ratio_vs_intra": ratio(325.6, 381.9), "ping_ms_across": math.nan})
    assert line == ("RESULT name=ic rounds=5 connect_s=5.33 tcp_mbps_across=326 "
                    "tcp_ratio_vs_intra=0.85 ping_ms_across=nan")
