"""A small REST client for the control plane, on `requests` (a real HTTP client)."""

import json
import time

import requests

TERMINAL = ("completed", "failed", "cancelled")

# wait_job's polling interval: the first, and the most it grows to.
POLL_FIRST = 0.05
POLL_MAX = 0.5


def job_body(input_url: str, path: str, preset: str = "480p_h264", storage: str = "local",
             **extra) -> dict:
    """A valid job request (SPEC §3.1); extra keys are added at the top level."""
    body = {"input_url": input_url, "preset": preset,
            "output": {"storage": storage, "path": path}}
    body.update(extra)
    return body


def describe(response: requests.Response) -> str:
    return f"HTTP {response.status_code} {dict(response.headers)} {response.text[:2000]!r}"


class Api:
    """Requests against one control plane, with its bearer key by default."""

    def __init__(self, base_url: str, api_key: str = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, auth=True, headers=None, timeout: float = 15,
                **kwargs) -> requests.Response:
        """auth: True = the control plane's key, False = no Authorization, a
        str = that bearer key."""
        headers = dict(headers or {})
        key = self.api_key if auth is True else (auth or None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # A fresh connection per request (Connection: close) keeps the tests
        # independent of keep-alive reuse across a control plane restart.
        headers.setdefault("Connection", "close")
        return requests.request(method, self.url(path), headers=headers, timeout=timeout,
                                allow_redirects=False, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    # ---- jobs ---------------------------------------------------------------------

    def submit(self, body: dict, headers=None) -> str:
        """POST /api/v1/jobs expecting 202; returns the job id."""
        response = self.post("/api/v1/jobs", json=body, headers=headers)
        assert response.status_code == 202, f"POST /api/v1/jobs: {describe(response)}"
        accepted = response.json()
        job_id = accepted["job_id"]
        assert accepted == {"job_id": job_id, "status": "accepted",
                            "stream_url": f"/api/v1/jobs/{job_id}/stream",
                            "job_url": f"/api/v1/jobs/{job_id}"}, f"202 body {accepted}"
        return job_id

    def job(self, job_id: str) -> dict:
        response = self.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, f"GET job {job_id}: {describe(response)}"
        return response.json()

    def wait_job(self, job_id: str, statuses=TERMINAL, timeout: float = 60.0,
                 predicate=None, what: str = None) -> dict:
        """Polls the job document until its status is in `statuses` (or
        predicate(doc) holds); fails with the last document on timeout.

        A poll costs the control plane and this process ~15 ms of CPU (one
        request on a fresh connection through a sanitizer build), so the
        interval grows from 50 ms to 0.5 s while the job's status and phase
        stay as they are, and is short again as soon as they move: quick
        around the transitions a test waits for, cheap in a long encode."""
        deadline = time.monotonic() + timeout
        doc = None
        interval = POLL_FIRST
        seen = None
        while True:
            try:
                doc = self.job(job_id)
            except requests.RequestException as error:  # a restart in progress
                doc = {"request_error": repr(error)}
            ok = predicate(doc) if predicate else doc.get("status") in statuses
            if ok:
                return doc
            if time.monotonic() >= deadline:
                raise AssertionError(f"job {job_id} never reached {what or statuses} within "
                                     f"{timeout}s; last document:\n{json.dumps(doc, indent=1)}")
            state = (doc.get("status"), doc.get("phase"))
            interval = POLL_FIRST if state != seen else min(POLL_MAX, interval * 1.5)
            seen = state
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def list_jobs(self, **params) -> dict:
        response = self.get("/api/v1/jobs", params=params)
        assert response.status_code == 200, f"GET /api/v1/jobs {params}: {describe(response)}"
        return response.json()

    def all_job_ids(self) -> list:
        """Every job id the control plane lists, newest first, following cursors."""
        ids, cursor = [], None
        while True:
            params = {"limit": 200}
            if cursor:
                params["cursor"] = cursor
            page = self.list_jobs(**params)
            ids += [j["job_id"] for j in page["jobs"]]
            cursor = page.get("next_cursor")
            if not cursor:
                return ids

    def cancel(self, job_id: str) -> requests.Response:
        return self.post(f"/api/v1/jobs/{job_id}/cancel")

    def workers(self) -> list:
        response = self.get("/api/v1/workers/status")
        assert response.status_code == 200, f"GET /api/v1/workers/status: {describe(response)}"
        return response.json()["workers"]
