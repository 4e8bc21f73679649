"""S3 request signing checked against botocore, the independent oracle.

s3rver accepts any signature, so this is what catches a signing mistake before
AWS does. A capture server on loopback answers like S3; s3_oracle_driver (the
project's S3 client) makes every request kind the worker makes; each captured
request's Authorization header must equal the one botocore's S3SigV4Auth
computes for the same method, URL, signed headers, body and X-Amz-Date. The
presigned URLs must equal botocore's S3SigV4QueryAuth at the same fixed time.
"""
import datetime
import hashlib
import http.server
import json
import os
import subprocess
import threading
import types
import urllib.parse
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

BUCKET = "flux-oracle"
ACCESS_KEY = "AKIDEXAMPLEFLUX"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDOn+Token/With=Special+Chars"
PRESIGN_EPOCH = 1369353600  # 2013-05-24T00:00:00Z
UPLOAD_ID = "VXBsb2FkIElE+for/oracle=.-_~"  # needs encoding in a query string
UNSIGNED = {"user-agent", "expect", "accept", "content-length", "authorization", "transfer-encoding"}


class CaptureServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), CaptureHandler)
        self.captured = []
        self.objects = {}
        self.lock = threading.Lock()


class CaptureHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        kind = classify(self.command, params)
        with self.server.lock:
            self.server.captured.append(
                {"kind": kind, "method": self.command, "path": path, "query": query,
                 "headers": list(self.headers.items()), "body": body})
        if kind == "put":
            self.server.objects[path] = body
            self._reply(200, headers=[("ETag", '"%s"' % hashlib.md5(body).hexdigest())])
        elif kind == "initiate":
            self._reply(200, xml("<InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>k</Key>"
                                 "<UploadId>%s</UploadId></InitiateMultipartUploadResult>" % (BUCKET, UPLOAD_ID)))
        elif kind == "upload_part":
            self._reply(200, headers=[("ETag", '"part-%s"' % params["partNumber"])])
        elif kind == "complete":
            if "/fail-complete/" in path:
                # S3 may fail a Complete after answering 200: only the body tells.
                self._reply(200, xml("<Error><Code>InvalidPart</Code><Message>One or more parts could not be "
                                     "found.</Message></Error>"))
            else:
                self._reply(200, xml("<CompleteMultipartUploadResult><Location>x</Location><Bucket>%s</Bucket>"
                                     "<Key>k</Key><ETag>\"abc-3\"</ETag></CompleteMultipartUploadResult>" % BUCKET))
        elif kind == "abort":
            self._reply(204)
        elif kind in ("get", "head"):
            data = self.server.objects.get(path)
            if data is None:
                self._reply(404, xml("<Error><Code>NoSuchKey</Code><Message>nope</Message></Error>"))
            else:
                headers = [("ETag", '"%s"' % hashlib.md5(data).hexdigest()), ("Content-Type", "text/plain")]
                if kind == "head":
                    self.send_response(200)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                else:
                    self._reply(200, data, headers)
        elif kind == "delete":
            self.server.objects.pop(path, None)
            self._reply(204)
        else:
            self._reply(400, xml("<Error><Code>Unexpected</Code></Error>"))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def classify(method, params):
    if method == "PUT":
        return "upload_part" if "uploadId" in params else "put"
    if method == "POST":
        return "initiate" if "uploads" in params else "complete" if "uploadId" in params else "post?"
    if method == "DELETE":
        return "abort" if "uploadId" in params else "delete"
    return method.lower()


def xml(text):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()


def frozen_botocore_clock(when):
    """botocore.auth reads datetime.datetime.utcnow(); give it a fixed instant."""
    class Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when
    return mock.patch.object(botocore.auth, "datetime", types.SimpleNamespace(datetime=Frozen))


def credentials(with_token):
    return Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN if with_token else None)


def botocore_authorization(request, with_token):
    """The Authorization header botocore computes for a captured request."""
    headers = {name.lower(): value for name, value in request["headers"]}
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    # Same signed headers as the client chose (host and the date/payload/token
    # headers botocore adds itself); its own choice is checked separately.
    given = [(n, v) for n, v in request["headers"]
             if n.lower() in signed and n.lower() not in ("host", "x-amz-date", "x-amz-content-sha256",
                                                           "x-amz-security-token")]
    url = "http://%s%s" % (headers["host"], request["path"])
    if request["query"]:
        url += "?" + request["query"]
    aws_request = AWSRequest(method=request["method"], url=url, headers=dict(given), data=request["body"])
    when = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    with frozen_botocore_clock(when):
        botocore.auth.S3SigV4Auth(credentials(with_token), "s3", "eu-west-3").add_auth(aws_request)
    return aws_request.headers["Authorization"]


def is_canonical_path(path):
    """S3 re-encodes the decoded path; the client must have sent exactly that form."""
    return urllib.parse.quote(urllib.parse.unquote(path), safe="/-_.~") == path


def is_canonical_query(query):
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted((urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join("%s=%s" % kv for kv in encoded) == query


@pytest.fixture
def server():
    srv = CaptureServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def run_driver(server, tmp_path, with_token, secret_key=SECRET_KEY):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=secret_key)
    env.pop("AWS_SESSION_TOKEN", None)
    if with_token:
        env["AWS_SESSION_TOKEN"] = SESSION_TOKEN
    endpoint = "http://127.0.0.1:%d" % server.server_address[1]
    proc = subprocess.run([os.environ["S3_ORACLE_DRIVER"], endpoint, BUCKET, str(tmp_path), str(PRESIGN_EPOCH)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "driver failed:\n" + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("with_token", [False, True], ids=["keys", "session-token"])
def test_every_request_kind_is_signed_like_botocore(server, tmp_path, with_token):
    run_driver(server, tmp_path, with_token)
    kinds = {r["kind"] for r in server.captured}
    assert kinds >= {"put", "initiate", "upload_part", "complete", "abort", "get", "head", "delete"}, kinds
    assert sum(r["kind"] == "upload_part" for r in server.captured) == 6  # 3 parts, two uploads

    for request in server.captured:
        label = "%s %s?%s" % (request["method"], request["path"], request["query"])
        headers = {name.lower(): value for name, value in request["headers"]}
        assert headers["authorization"] == botocore_authorization(request, with_token), label

        # What botocore cannot see from the signature alone:
        assert headers["x-amz-content-sha256"] == hashlib.sha256(request["body"]).hexdigest(), label
        signed = set(headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";"))
        must_sign = {n for n in headers if n not in UNSIGNED}
        assert must_sign <= signed, "%s: unsigned headers %s" % (label, must_sign - signed)
        assert ("x-amz-security-token" in headers) == with_token, label
        if with_token:
            assert headers["x-amz-security-token"] == SESSION_TOKEN
        assert is_canonical_path(request["path"]), label
        assert is_canonical_query(request["query"]), label


def test_object_metadata_and_keys_reach_s3_as_sent(server, tmp_path):
    run_driver(server, tmp_path, False)
    put = next(r for r in server.captured if r["kind"] == "put")
    headers = {name.lower(): value for name, value in put["headers"]}
    assert urllib.parse.unquote(put["path"]) == "/%s/small/hello world+=x~y/./café (1).txt" % BUCKET
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["x-amz-meta-job-id"] == "job-42"
    assert headers["x-amz-meta-preset"].split() == ["720p", "h264"]
    complete = [r for r in server.captured if r["kind"] == "complete"][0]
    assert b"<PartNumber>3</PartNumber>" in complete["body"]
    assert urllib.parse.parse_qs(complete["query"])["uploadId"] == [UPLOAD_ID]


@pytest.mark.parametrize("with_token", [False, True], ids=["keys", "session-token"])
def test_presigned_urls_match_botocore(server, tmp_path, with_token):
    presigned = run_driver(server, tmp_path, with_token)
    assert {p["label"] for p in presigned} == {"endpoint-path-style", "aws-virtual-hosted", "aws-dotted-bucket"}
    when = datetime.datetime.utcfromtimestamp(PRESIGN_EPOCH)
    for p in presigned:
        request = AWSRequest(method="GET", url=p["object_url"])
        with frozen_botocore_clock(when):
            botocore.auth.S3SigV4QueryAuth(credentials(with_token), "s3", p["region"],
                                           expires=p["expires"]).add_auth(request)
        ours, theirs = urllib.parse.urlsplit(p["url"]), urllib.parse.urlsplit(request.url)
        assert (ours.scheme, ours.netloc, ours.path) == (theirs.scheme, theirs.netloc, theirs.path), p["label"]
        assert urllib.parse.parse_qs(ours.query) == urllib.parse.parse_qs(theirs.query), p["label"]
        assert "X-Amz-Signature" in urllib.parse.parse_qs(ours.query)


def test_aws_urls_follow_the_documented_forms(server, tmp_path):
    presigned = {p["label"]: p for p in run_driver(server, tmp_path, False)}
    assert presigned["aws-virtual-hosted"]["object_url"] == \
        "https://flux-outputs.s3.us-west-2.amazonaws.com/jobs/a%20b/master.m3u8"
    # A dotted bucket cannot be a TLS virtual host: path style.
    assert presigned["aws-dotted-bucket"]["object_url"].startswith("https://s3.us-west-2.amazonaws.com/my.bucket/")


def test_the_oracle_notices_a_wrong_key(server, tmp_path):
    """Negative control: the comparisons above are not vacuous."""
    presigned = run_driver(server, tmp_path, False, secret_key=SECRET_KEY[:-1] + "X")
    assert server.captured
    for request in server.captured:
        headers = {name.lower(): value for name, value in request["headers"]}
        assert headers["authorization"] != botocore_authorization(request, False)
    when = datetime.datetime.utcfromtimestamp(PRESIGN_EPOCH)
    for p in presigned:
        request = AWSRequest(method="GET", url=p["object_url"])
        with frozen_botocore_clock(when):
            botocore.auth.S3SigV4QueryAuth(credentials(False), "s3", p["region"], expires=p["expires"]).add_auth(request)
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(p["url"]).query) != \
            urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
