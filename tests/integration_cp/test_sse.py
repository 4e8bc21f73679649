"""The progress stream (SPEC §3.3), read by a raw-socket SSE reader: the exact
event format and headers, keep-alive comments, several watchers, a late
watcher, Last-Event-ID replay, and watchers that never read."""

import json
import re
import time

import pytest

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import assert_error, dump, epoch, parse_time, wait_until
from cpharness.sse import SseClient, open_stream

STATUSES = {"queued", "processing", "uploading", "completed", "failed", "cancelled"}
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def stack(module_worker_factory, module_cp_factory, tmp_path_factory):
    worker = module_worker_factory(env=local_worker_env(tmp_path_factory.mktemp("out"),
                                                        MAX_CONCURRENT_JOBS=4), name="w")
    cp = module_cp_factory([worker], env={"SSE_KEEPALIVE": "0.5"}, name="cp")
    return cp, worker


def submit(cp, inputs, clip: str, name: str) -> str:
    return cp.api.submit(job_body(inputs.clip_url(clip), f"sse/{name}.mp4"))


def assert_contiguous(ids, what: str):
    numbers = [int(i) for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
        f"{what}: event ids not consecutive: {numbers}")


def terminal_last(stream, what: str) -> dict:
    events = stream.json_events()
    statuses = [e["status"] for e in events]
    assert statuses and statuses[-1] in TERMINAL, f"{what}: last event is not terminal: {statuses}"
    assert not set(statuses[:-1]) & TERMINAL, f"{what}: an event after the terminal one: {statuses}"
    return events[-1]


def test_event_format_headers_and_keepalive(stack, inputs):
    cp, _ = stack
    job_id = submit(cp, inputs, "medium.mp4", "format")
    stream = open_stream(cp, job_id)
    assert stream.wait_head() == 200, stream.body
    assert stream.headers.get("content-type", "").split(";")[0].strip() == "text/event-stream", stream.headers
    assert stream.headers.get("cache-control") == "no-cache", stream.headers
    assert stream.headers.get("x-accel-buffering") == "no", stream.headers
    assert stream.wait_closed(90), "the stream was not closed after the job finished"
    assert stream.error is None, repr(stream.error)

    events = stream.events
    assert len(events) >= 3, events
    for event in events:
        # Exactly `id: N` then one `data:` line, nothing else: an unnamed event.
        assert len(event.block) == 2, f"event block {event.block}"
        assert re.fullmatch(r"id: \d+", event.block[0]), event.block
        assert event.block[1].startswith("data: {") and event.event == "message", event.block
        data = event.json()
        assert set(data) >= {"job_id", "status", "progress", "message", "timestamp"}, data
        assert data["job_id"] == job_id and data["status"] in STATUSES, data
        assert isinstance(data["progress"], (int, float)) and 0 <= data["progress"] <= 100, data
        assert isinstance(data["message"], str), data
        parse_time(data["timestamp"])
    assert_contiguous(stream.ids(), "one watcher")
    datas = stream.json_events()
    assert datas[0]["status"] in ("queued", "processing"), (
        f"the first event should be the state at connect time: {datas[0]}")
    final = terminal_last(stream, "format")
    assert final["status"] == "completed" and final["output_url"].startswith("file://"), final
    assert final["result"]["height"] == 480 and final["progress"] == 100, final
    assert "phase" in final, final
    stamps = [parse_time(d["timestamp"]) for d in datas]
    assert stamps == sorted(stamps), "timestamps go backwards"
    progress = [d["progress"] for d in datas]
    assert progress == sorted(progress), f"progress goes backwards: {progress}"
    assert any(d["status"] == "processing" and d.get("phase") == "encoding" for d in datas), datas

    # The job took more than a second: keep-alive comments every 0.5 s.
    assert stream.comments, "no keep-alive comment with SSE_KEEPALIVE=0.5"
    assert all(text == "keep-alive" for text, _ in stream.comments), stream.comments


def test_two_watchers_see_the_same_events(stack, inputs):
    cp, _ = stack
    job_id = submit(cp, inputs, "medium.mp4", "two")
    first = open_stream(cp, job_id)
    second = open_stream(cp, job_id)
    for stream in (first, second):
        assert stream.wait_head() == 200
        assert stream.wait_closed(90), "a watcher's stream stayed open"
        assert_contiguous(stream.ids(), "watcher")
        assert terminal_last(stream, "watcher")["status"] == "completed"
    a = [(e.id, e.data) for e in first.events]
    b = [(e.id, e.data) for e in second.events]
    start = max(int(a[0][0]), int(b[0][0]))
    tail_a = [x for x in a if int(x[0]) >= start]
    tail_b = [x for x in b if int(x[0]) >= start]
    assert tail_a == tail_b, f"watchers differ:\n{tail_a}\n{tail_b}"
    assert len(tail_a) >= 3, tail_a


def test_watcher_after_completion_gets_final_state_and_close(stack, inputs):
    cp, _ = stack
    job_id = submit(cp, inputs, "small.mp4", "late")
    doc = cp.api.wait_job(job_id, timeout=60)
    assert doc["status"] == "completed", dump(doc)
    for _ in range(2):
        stream = open_stream(cp, job_id)
        assert stream.wait_head() == 200
        assert stream.wait_closed(5), "a finished job's stream stayed open"
        events = stream.json_events()
        assert len(events) == 1, events
        final = events[0]
        assert final["status"] == "completed" and final["job_id"] == job_id, final
        assert final["output_url"] == doc["output_url"] and final["progress"] == 100, final
        assert final["result"] == doc["result"], final


def test_last_event_id_replays_missed_events(stack, inputs):
    cp, _ = stack
    job_id = submit(cp, inputs, "small_long.mp4", "replay")
    reference = open_stream(cp, job_id)
    dropped = open_stream(cp, job_id)
    dropped.wait_for(lambda events: sum(1 for e in events if e.json()["phase"] == "encoding") >= 3,
                     timeout=60, what="three encoding events")
    dropped.close()
    last_seen = dropped.events[-1].id
    time.sleep(1.0)  # events go by while this client is away
    resumed = open_stream(cp, job_id, last_event_id=last_seen)
    assert resumed.wait_head() == 200
    assert resumed.wait_closed(90) and reference.wait_closed(10)
    assert terminal_last(reference, "reference")["status"] == "completed"
    resumed_ids = [int(i) for i in resumed.ids()]
    assert resumed_ids and resumed_ids[0] == int(last_seen) + 1, (
        f"resumed after {last_seen} but got {resumed_ids[:5]}...")
    assert_contiguous(resumed.ids(), "resumed")
    by_id = {e.id: e.data for e in reference.events}
    for event in resumed.events:
        assert by_id.get(event.id) == event.data, f"replayed event {event.id} differs from the original"
    assert int(resumed.events[-1].id) == int(reference.events[-1].id)

    # After completion: replay from an older id, and nothing for an up-to-date client.
    middle = reference.events[len(reference.events) // 2]
    late = open_stream(cp, job_id, last_event_id=middle.id)
    assert late.wait_head() == 200 and late.wait_closed(5)
    expected = [(e.id, e.data) for e in reference.events if int(e.id) > int(middle.id)]
    assert [(e.id, e.data) for e in late.events] == expected
    current = open_stream(cp, job_id, last_event_id=reference.events[-1].id)
    status = current.wait_head()
    assert status in (200, 204), status
    assert current.wait_closed(5) and current.events == [], current.events


def test_watchers_that_never_read_do_not_delay_the_others(stack, inputs):
    cp, _ = stack
    job_id = submit(cp, inputs, "small_long.mp4", "stalled")
    stalled = [open_stream(cp, job_id, read=False, receive_buffer=1024) for _ in range(20)]
    reader = open_stream(cp, job_id)
    final = reader.wait_event(lambda e: e["status"] in TERMINAL, timeout=90, what="terminal event")
    assert final.json()["status"] == "completed", final
    doc = cp.api.job(job_id)
    # The reader hears of the end promptly, whatever the stalled ones do ...
    lag = final.received_wall - epoch(doc["finished_at"])
    assert lag < 3, f"the terminal event reached the reader {lag:.2f}s after the job finished"
    assert reader.wait_closed(5)
    started = parse_time(doc["started_at"])
    took = (parse_time(doc["finished_at"]) - started).total_seconds()
    assert took < 45, f"the job took {took:.1f}s with stalled watchers:\n{dump(doc)}"
    assert_contiguous(reader.ids(), "reader")
    # ... and the stalled watchers' connections are not leaked: once their
    # clients go away, the server lets go of them.
    for stream in stalled:
        stream.close()
    wait_until(lambda: _open_streams(cp) == 0, 10, "flux_sse_connections back to 0")


def test_stream_of_unknown_job_is_404(stack):
    cp, _ = stack
    stream = open_stream(cp, "job_unknown0000000000000000000")
    assert stream.wait_head() == 404
    assert stream.wait_closed(5)
    body = json.loads(stream.body)
    assert body["code"] == "job_not_found", body
    assert_error(cp.api.get("/api/v1/jobs/job_unknown0000000000000000000/stream"), 404, "job_not_found")


def _open_streams(cp) -> float:
    for line in cp.api.get("/metrics").text.splitlines():
        if line.startswith("flux_sse_connections "):
            return float(line.split()[-1])
    raise AssertionError("flux_sse_connections missing from /metrics")


def test_browser_eventsource_authenticates_with_a_query_token(stack, inputs):
    """EventSource cannot send Authorization: the stream alone takes ?access_token=."""
    cp, _ = stack
    job_id = submit(cp, inputs, "small.mp4", "token")
    doc = cp.api.wait_job(job_id, timeout=60)
    assert doc["status"] == "completed", dump(doc)
    path = f"/api/v1/jobs/{job_id}/stream"
    ok = SseClient(cp.port, f"{path}?access_token={cp.api_key}")
    assert ok.wait_head() == 200
    assert ok.wait_closed(5)
    assert ok.json_events()[-1]["status"] == "completed"
    wrong = SseClient(cp.port, f"{path}?access_token=not-the-key-0123456789")
    assert wrong.wait_head() == 401
    assert wrong.wait_closed(5)
    # Only the stream: other routes still need the header.
    assert_error(cp.api.get(f"/api/v1/jobs/{job_id}?access_token={cp.api_key}", auth=False), 401, "unauthorized")
