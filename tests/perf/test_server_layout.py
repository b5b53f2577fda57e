"""perf.server_layout: the real ranking server, started through common.stack, under the clients'
open-loop driver. Checked at a low rate: every call answered, every alternative measured, the
calls spread over the processes. Not which layout is faster (that depends on the machine)."""

from __future__ import annotations

from shortlist.gateway.settings import GatewaySettings
from shortlist.perf import server_layout
from tests.perf.conftest import check_result, check_timed

# The measurements default to the gateway's ranking deadline (0.3 s); the tests check that
# every call is answered, not how fast, on a machine that may be busy with other work.
LENIENT_DEADLINE_S = 2.0


def check_served(res: dict, rate: float, seconds: float) -> None:
    for case in res["cases"].values():
        for s in case["alternatives"].values():
            check_timed(s)
            assert s["sent"] == round(rate * seconds)
            assert s["ok"] == s["sent"] and s["errors"] == {} and s["unanswered"] == 0
            assert s["throughput_rps"] > 0


def test_the_default_deadline_is_the_gateways():
    default = GatewaySettings.model_fields["ranking_timeout_s"].default
    assert server_layout.RANKING_DEADLINE_S == default


def test_pool_sizes_of_the_real_server(workload):
    res = server_layout.measure_workers(workload, rates=(20.0,), seconds=1.0, channels=2,
                                        workers=(2, 4), timeout_s=LENIENT_DEADLINE_S)
    current = f"{server_layout.DEFAULT_WORKERS} workers"
    check_result(res, "server_workers", {"2 workers", "4 workers", current})
    assert res["current"] == current
    check_served(res, 20.0, 1.0)
    for served in res["served"].values():
        assert served >= 20  # the measured calls plus the warm-up ones


def test_processes_share_the_calls(workload, tmp_path):
    res = server_layout.measure_processes(workload, rates=(20.0,), seconds=1.0, channels=4,
                                          timeout_s=LENIENT_DEADLINE_S, log_dir=tmp_path)
    check_result(res, "processes", {"1 process", "2 processes"})
    check_served(res, 20.0, 1.0)
    (split,) = res["split"]  # one 2-process run: calls each process handled
    assert len(split) == 2 and sum(split) >= 20
    assert min(split) > 0  # round robin reached both
    # each server ran as its own process with its own log, started by common.stack
    assert sorted(p.name for p in tmp_path.glob("*/ranking.log")) == ["ranking.log"] * 2
