"""Webhooks (SPEC §4): signed deliveries on terminal statuses, retries with
backoff until the receiver answers, and the delivery state on the job."""

import json
import time

import pytest

from conftest import local_worker_env
from cpharness.api import job_body
from cpharness.checks import dump, parse_time
from cpharness.webhooks import WebhookReceiver, signature

SECRET = "whsec-integration-0123456789"


@pytest.fixture
def receivers():
    made = []

    def make(statuses=(200,)):
        receiver = WebhookReceiver(statuses)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def _stack(worker_factory, cp_factory, out):
    worker = worker_factory(env=local_worker_env(out), name="w")
    cp = cp_factory([worker], env={"WEBHOOK_SECRET": SECRET})
    return cp, worker


@pytest.fixture(scope="module")
def shared_stack(module_worker_factory, module_cp_factory, tmp_path_factory):
    """One worker behind one control plane for the tests that neither stop nor
    restart it (each has its own receiver and jobs)."""
    return _stack(module_worker_factory, module_cp_factory, tmp_path_factory.mktemp("out"))


@pytest.fixture
def stack(worker_factory, cp_factory, tmp_path):
    """A stack of the test's own, for the tests that stop the control plane."""
    return _stack(worker_factory, cp_factory, tmp_path / "out")


def wait_webhook(cp, job_id: str, state: str, timeout: float = 30) -> dict:
    return cp.api.wait_job(job_id, predicate=lambda d: d.get("webhook", {}).get("state") == state,
                           timeout=timeout, what=f"webhook.state {state}")


def assert_signed(delivery, event: str) -> dict:
    headers = delivery.headers
    assert headers.get("x-flux-signature") == signature(SECRET, delivery.body), (
        f"X-Flux-Signature {headers.get('x-flux-signature')!r} is not the HMAC of the body")
    assert headers.get("x-flux-signature") != signature(SECRET + "x", delivery.body)
    assert headers.get("x-flux-event") == event, headers
    assert headers.get("content-type", "").startswith("application/json"), headers
    return json.loads(delivery.body)


def test_signed_deliveries_for_completed_and_failed(shared_stack, receivers, inputs):
    cp, _ = shared_stack
    receiver = receivers()
    done = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "hook/done.mp4",
                                  callback_url=receiver.url("/hooks/done?token=abc")))
    missing = inputs.server.add_status("hook-missing.mp4", 404)
    failed = cp.api.submit(job_body(missing, "hook/failed.mp4", callback_url=receiver.url("/hooks/failed")))

    done_doc = wait_webhook(cp, done, "delivered")
    failed_doc = wait_webhook(cp, failed, "delivered")
    deliveries = receiver.wait_deliveries(2, timeout=5)
    assert len(deliveries) == 2, [d.path for d in deliveries]
    by_path = {d.path: d for d in deliveries}
    assert set(by_path) == {"/hooks/done?token=abc", "/hooks/failed"}, set(by_path)

    body = assert_signed(by_path["/hooks/done?token=abc"], "job.completed")
    assert body["job_id"] == done and body["status"] == "completed", body
    assert body["output_url"] == done_doc["output_url"] and body["result"] == done_doc["result"], body
    body = assert_signed(by_path["/hooks/failed"], "job.failed")
    assert body["job_id"] == failed and body["status"] == "failed", body
    assert body["error_code"] == failed_doc["error_code"] and body["error_code"], body

    for doc in (done_doc, failed_doc):
        hook = doc["webhook"]
        assert hook["attempts"] == 1 and hook["last_status"] == 200, dump(doc)
        parse_time(hook["delivered_at"])
    # Each delivery is made once: no duplicate after it succeeded.
    assert len(receiver.wait_deliveries(3, timeout=2)) == 2


def test_receiver_failing_twice_gets_it_on_the_third_try(shared_stack, receivers, inputs):
    cp, _ = shared_stack
    receiver = receivers(statuses=(500, 500, 200))
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "hook/retry.mp4",
                                    callback_url=receiver.url()))
    doc = wait_webhook(cp, job_id, "delivered", timeout=60)
    hook = doc["webhook"]
    assert hook["attempts"] == 3 and hook["last_status"] == 200, dump(doc)
    deliveries = receiver.wait_deliveries(3, timeout=5)
    assert [d.answered for d in deliveries] == [500, 500, 200]
    for delivery in deliveries:
        body = assert_signed(delivery, "job.completed")
        assert body["job_id"] == job_id and body["status"] == "completed"
    ids = {d.headers.get("x-flux-delivery") for d in deliveries}
    assert len(ids) == 1 and None not in ids, f"one delivery, one X-Flux-Delivery id: {ids}"
    gaps = [b.received_at - a.received_at for a, b in zip(deliveries, deliveries[1:])]
    assert all(gap < 10 for gap in gaps), f"retry delays {gaps} (base 1 s)"
    assert len(receiver.wait_deliveries(4, timeout=2)) == 3, "delivered again after a 200"


def test_client_error_is_not_retried(shared_stack, receivers, inputs):
    cp, _ = shared_stack
    receiver = receivers(statuses=(400,))
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "hook/gone.mp4",
                                    callback_url=receiver.url()))
    doc = wait_webhook(cp, job_id, "failed", timeout=60)
    hook = doc["webhook"]
    assert hook["attempts"] == 1 and hook["last_status"] == 400, dump(doc)
    assert hook["delivered_at"] is None and hook["last_error"], dump(doc)
    assert doc["status"] == "completed", "the webhook outcome does not change the job's status"
    assert len(receiver.wait_deliveries(2, timeout=3)) == 1


def test_pending_delivery_survives_a_restart(stack, receivers, inputs):
    """A delivery still being retried when the control plane stops is made
    after it restarts: the job's outcome must not be lost for the receiver."""
    cp, _ = stack
    receiver = receivers(statuses=(503,))
    job_id = cp.api.submit(job_body(inputs.clip_url("small.mp4"), "hook/restart.mp4",
                                    callback_url=receiver.url()))
    doc = wait_webhook(cp, job_id, "pending", timeout=60)
    assert doc["status"] == "completed" and doc["webhook"]["attempts"] >= 1, dump(doc)
    assert cp.terminate(timeout=15) == 0, cp.output_tail()
    tries_before = len(receiver.deliveries)
    receiver.statuses = [200]
    cp.start()
    doc = wait_webhook(cp, job_id, "delivered", timeout=30)
    assert doc["webhook"]["last_status"] == 200, dump(doc)
    deliveries = receiver.wait_deliveries(tries_before + 1, timeout=5)
    assert_signed(deliveries[-1], "job.completed")
    assert json.loads(deliveries[-1].body)["job_id"] == job_id


def test_job_finishing_while_the_control_plane_is_down_is_still_announced(stack, receivers, inputs):
    cp, worker = stack
    receiver = receivers()
    job_id = cp.api.submit(job_body(inputs.clip_url("medium.mp4"), "hook/down.mp4",
                                    callback_url=receiver.url()))
    cp.api.wait_job(job_id, statuses=("processing",), timeout=30)
    cp.kill()
    # The worker finishes on its own and holds the result for its control plane.
    deadline = time.monotonic() + 60
    while worker.status().current_jobs and time.monotonic() < deadline:
        time.sleep(0.2)
    assert receiver.deliveries == []
    cp.start()
    doc = wait_webhook(cp, job_id, "delivered", timeout=30)
    assert doc["status"] == "completed" and doc["attempts"] == 1, dump(doc)
    deliveries = receiver.wait_deliveries(1, timeout=5)
    body = assert_signed(deliveries[0], "job.completed")
    assert body["job_id"] == job_id and body["status"] == "completed"
