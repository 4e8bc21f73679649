"""URL-level hostile inputs: loopback, private, link-local and metadata
addresses in every spelling, names resolving to them, redirects to them, and
the proof that the address checked is the address connected to.

- Through the worker over gRPC (its own checks, with no control plane in
  front) and through the control plane at submission (400 with the code and
  the field).
- With ALLOW_PRIVATE_INPUTS off, the loopback spellings aim at the trap: a
  listener on 127.0.0.1 and [::1] that must see no connection at all.
- Redirects need a reachable redirector, and every address of this machine
  is loopback or private: they run on a stack with ALLOW_PRIVATE_INPUTS=true,
  where what must stay refused is every other scheme and the metadata
  service (which no setting opens). The unit tests (tests/unit/http) cover a
  redirect from an allowed to a forbidden loopback address.

tests/integration/test_security.py and tests/integration_cp/test_validation.py
already cover 127.0.0.1, localhost, 127.1, 2130706433, 0x7f000001,
0177.0.0.1, 0.0.0.0, [::1], [::ffff:127.0.0.1], 10/8, 172.16/12,
192.168/16, 169.254.169.254 and [fd00:ec2::254]: the spellings here are the
others.
"""

import uuid

import pytest

import hostile
from cpharness.api import job_body
from cpharness.checks import assert_error

PUBLIC_INPUT = "https://93.184.216.34/source.mp4"  # a literal public address: no DNS needed

# Authorities ({port} = the trap's) that all reach the trap if connected to.
LOOPBACK = [
    "0x7f.0.0.1:{port}", "0x7f.1:{port}", "0X7F000001:{port}", "017700000001:{port}",
    "0177.1:{port}", "127.0.1:{port}", "127.000.000.001:{port}", "127.0.0.1.:{port}",
    "2130706433.:{port}", "127.1.:{port}", "0:{port}", "0x0:{port}", "0.0.0.0.:{port}",
    "[::]:{port}", "[0:0:0:0:0:0:0:1]:{port}", "[::ffff:7f00:1]:{port}",
    "[0:0:0:0:0:ffff:127.0.0.1]:{port}", "[::ffff:0:127.0.0.1]:{port}", "[::127.0.0.1]:{port}",
    "[64:ff9b::127.0.0.1]:{port}", "[2002:7f00:1::]:{port}", "localhost.:{port}",
    "LocalHost:{port}", "ip6-localhost:{port}", "ip6-loopback:{port}", "evil.localhost:{port}",
    "evil.example@127.0.0.1:{port}", "user:pw@127.0.0.1:{port}",
    "93.184.216.34:80@127.0.0.1:{port}", "evil.example@[::1]:{port}",
]

# Private, link-local and metadata addresses (nothing of the test listens
# there; the code says it was refused on sight, not after a failed connect).
PRIVATE = [
    "0x0a000001", "10.1", "172.31.255.255", "100.64.0.1", "169.254.169.254.",
    "0251.0376.0251.0376", "2852039166", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]",
    "[fe80::1]", "[fc00::1]", "metadata.google.internal", "metadata", "instance-data",
    "192.0.2.2", "[fd00::2]", "[ff02::1]", "224.0.0.1", "255.255.255.255",
]


def url_of(authority: str, trap, path: str = "/latest/meta-data/") -> str:
    return f"http://{authority.replace('{port}', str(trap.port))}{path}"


def aliases():
    return hostile.loopback_aliases()[:2]


@pytest.fixture(scope="module")
def strict_worker(module_worker_factory, tmp_path_factory):
    """The production default: ALLOW_PRIVATE_INPUTS unset."""
    env = {"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(tmp_path_factory.mktemp("strict-out")),
           "ALLOW_PRIVATE_INPUTS": None, "MAX_CONCURRENT_JOBS": "4"}
    return module_worker_factory(env=env, name="strict")


@pytest.fixture(scope="module")
def open_worker(module_worker_factory, tmp_path_factory):
    env = {"STORAGE_TYPE": "local", "LOCAL_STORAGE_DIR": str(tmp_path_factory.mktemp("open-out")),
           "ALLOW_PRIVATE_INPUTS": "true"}
    return module_worker_factory(env=env, name="open")


@pytest.fixture(scope="module")
def strict_cp(module_cp_factory, strict_worker):
    return module_cp_factory([strict_worker], env={"ALLOW_PRIVATE_INPUTS": "false"}, name="strict")


@pytest.fixture(scope="module")
def open_cp(module_cp_factory, open_worker):
    return module_cp_factory([open_worker], env={"ALLOW_PRIVATE_INPUTS": "true"}, name="open")


def refused_at_submission(cp, body: dict, code: str, field: str):
    """400 with the code and field; nothing stored is checked once for the
    whole module (these control planes are only ever sent refusals)."""
    assert_error(cp.api.post("/api/v1/jobs", json=body), 400, code, field)


# ---- the worker's own checks ------------------------------------------------------------


@pytest.mark.parametrize("authority", LOOPBACK)
def test_worker_refuses_loopback_spelling(authority, strict_worker, trap):
    hostile.run_failing_job(strict_worker, url_of(authority, trap), "url_address_forbidden",
                            storage="local", trap=trap)


@pytest.mark.parametrize("host", PRIVATE)
def test_worker_refuses_private_or_metadata(host, strict_worker, trap):
    hostile.run_failing_job(strict_worker, f"http://{host}/latest/meta-data/",
                            "url_address_forbidden", storage="local", trap=trap)


def test_worker_refuses_a_name_at_the_address_it_connects_to(strict_worker, trap):
    """A name no rule knows (this machine's own, from /etc/hosts) passes the
    text checks; curl resolves it and the refusal comes from the check on the
    very address the socket would be opened to, so an answer that changes
    between any earlier check and the fetch (DNS rebinding) gains nothing."""
    names = aliases()
    if not names:
        pytest.skip("no loopback name in /etc/hosts besides the ones refused by name")
    for name in names:
        stream = hostile.run_failing_job(strict_worker, f"http://{name}:{trap.port}/secret",
                                         "url_address_forbidden", storage="local", trap=trap)
        error = stream.final.error
        assert "refused to connect to the non-public address 127." in error, error


# ---- the control plane at submission ------------------------------------------------------


@pytest.mark.parametrize("authority", LOOPBACK)
def test_control_plane_refuses_loopback_spelling(authority, strict_cp, trap):
    url = url_of(authority, trap)
    refused_at_submission(strict_cp, job_body(url, "x/out.mp4"), "input_url_address_forbidden",
                          "input_url")
    refused_at_submission(strict_cp, job_body(PUBLIC_INPUT, "x/out.mp4", callback_url=url),
                          "callback_url_address_forbidden", "callback_url")
    assert trap.seen() == []


@pytest.mark.parametrize("host", PRIVATE)
def test_control_plane_refuses_private_or_metadata(host, strict_cp):
    url = f"http://{host}/latest/meta-data/"
    refused_at_submission(strict_cp, job_body(url, "x/out.mp4"), "input_url_address_forbidden",
                          "input_url")
    refused_at_submission(strict_cp, job_body(PUBLIC_INPUT, "x/out.mp4", callback_url=url),
                          "callback_url_address_forbidden", "callback_url")


def test_control_plane_resolves_names_before_accepting(strict_cp, trap):
    names = aliases()
    if not names:
        pytest.skip("no loopback name in /etc/hosts besides the ones refused by name")
    for name in names:
        url = f"http://{name}:{trap.port}/secret"
        refused_at_submission(strict_cp, job_body(url, "x/out.mp4"), "input_url_address_forbidden",
                              "input_url")
        refused_at_submission(strict_cp, job_body(PUBLIC_INPUT, "x/out.mp4", callback_url=url),
                              "callback_url_address_forbidden", "callback_url")
    assert trap.seen() == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1\r\nX-Injected: 1/a.mp4", "http://127.0.0.1%0d%0a/a.mp4",
    "http://127.0.0.1\\@93.184.216.34/a.mp4", "http://93.184.216.34\\@127.0.0.1/a.mp4",
    "http://[::1%25lo]/a.mp4", "http://[fe80::1%25eth0]/a.mp4", "http://1.2.3.4.5/a.mp4",
    "http://0x100000000/a.mp4", "http://256.0.0.1/a.mp4", "http://a@b@127.0.0.1/a.mp4",
    "http://127.0.0.1:0/a.mp4", "http://127.0.0.1:65536/a.mp4", "http:/127.0.0.1/a.mp4",
    "http:127.0.0.1/a.mp4", "http://%31%32%37.0.0.1/a.mp4", "http://\u0661\u0662\u0667.0.0.1/a.mp4",
])
def test_ambiguous_spellings_are_invalid(url, strict_cp, strict_worker, trap):
    """Spellings that parsers disagree on are refused outright, before any
    classification of the host could be fooled."""
    refused_at_submission(strict_cp, job_body(url, "x/out.mp4"), "input_url_invalid", "input_url")
    hostile.run_failing_job(strict_worker, url, "url_invalid", storage="local", trap=trap)


# ---- metadata stays closed when private inputs are allowed --------------------------------


METADATA = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.170.2/v2/credentials/x", "http://0xa9fea9fe/", "http://2852039166/",
    "http://[fd00:ec2::254]/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
    "http://metadata.google.internal/computeMetadata/v1/", "http://metadata/",
    "http://100.100.100.200/latest/meta-data/", "http://192.0.0.192/opc/v1/",
]


@pytest.mark.parametrize("url", METADATA)
def test_metadata_refused_even_with_private_inputs_allowed(url, open_worker, open_cp):
    """ALLOW_PRIVATE_INPUTS=true opens an internal store on 10.x, not the
    instance's cloud credentials."""
    hostile.run_failing_job(open_worker, url, "url_address_forbidden", storage="local")
    refused_at_submission(open_cp, job_body(url, "x/out.mp4"), "input_url_address_forbidden",
                          "input_url")
    refused_at_submission(open_cp, job_body(PUBLIC_INPUT, "x/out.mp4", callback_url=url),
                          "callback_url_address_forbidden", "callback_url")


# ---- redirects ------------------------------------------------------------------------------


REDIRECTS = [
    # (Location, status, expected error_code)
    ("file:///etc/passwd", 302, "url_scheme_forbidden"),
    ("gopher://127.0.0.1:{port}/_GET%20/", 302, "url_scheme_forbidden"),
    ("dict://127.0.0.1:{port}/info", 301, "url_scheme_forbidden"),
    ("data:video/mp4;base64,AAAAIGZ0eXBpc29t", 303, "url_scheme_forbidden"),
    ("concat:http://127.0.0.1:{port}/a|/etc/passwd", 302, "url_scheme_forbidden"),
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", 302,
     "url_address_forbidden"),
    ("http://[fd00:ec2::254]/latest/meta-data/", 307, "url_address_forbidden"),
    ("http://0251.0376.0251.0376/", 308, "url_address_forbidden"),
    ("http://metadata.google.internal/computeMetadata/v1/", 302, "url_address_forbidden"),
    ("//169.254.169.254/latest/meta-data/", 302, "url_address_forbidden"),
    ("http://user@169.254.169.254/", 301, "url_address_forbidden"),
]


@pytest.mark.parametrize("location,status,code", REDIRECTS, ids=[r[0][:40] for r in REDIRECTS])
def test_redirect_to_a_forbidden_target(location, status, code, open_worker, inputs, trap):
    target = location.replace("{port}", str(trap.port))
    name = f"redir/{uuid.uuid4().hex[:10]}.mp4"
    url = inputs.server.add_redirect(name, target, status)
    hostile.run_failing_job(open_worker, url, code, storage="local", trap=trap)
    assert inputs.server.requests_for(name), "the redirector itself was never asked"


def test_redirect_chain_ending_at_metadata(open_worker, inputs, trap):
    inputs.server.add_redirect("chain/3", "http://169.254.169.254/latest/meta-data/")
    middle = inputs.server.add_redirect("chain/2", "http://localhost:%d/chain/3" % inputs.server.port,
                                        307)
    first = inputs.server.add_redirect("chain/1.mp4", middle, 301)
    hostile.run_failing_job(open_worker, first, "url_address_forbidden", storage="local", trap=trap)
    assert inputs.server.requests_for("chain/3"), "the chain was not followed to its last hop"


def test_redirect_loop_gives_up(open_worker, inputs, trap):
    url = inputs.server.add_redirect("loop/a.mp4", "/loop/a.mp4")
    stream = hostile.run_failing_job(open_worker, url, "input_download_failed", storage="local",
                                     trap=trap)
    assert "redirects" in stream.final.error, stream.final.error
    # At most 5 redirects per attempt, and a loop is not worth a retry.
    assert len(inputs.server.requests_for("loop/a.mp4")) <= 6


def test_nothing_stored_and_nothing_contacted(strict_cp, open_cp, trap):
    assert strict_cp.api.all_job_ids() == [], "a refused request was stored"
    assert open_cp.api.all_job_ids() == [], "a refused request was stored"
    assert trap.seen() == [], f"connections reached the trap during the module: {trap.seen()}"
