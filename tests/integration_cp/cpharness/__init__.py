"""Test harness for the flux-controlplane integration tests.

It builds on the worker suite's harness (tests/integration/harness: worker
processes, s3rver, the HTTP input server, clips, ffprobe, ports, sanitizer
checks) and adds what the control plane needs: its process, a REST client, an
SSE reader that parses the wire format itself, and a webhook receiver.
"""
