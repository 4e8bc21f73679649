"""Test harness for the flux-worker integration tests.

Everything here drives real processes: the flux-worker binary, s3rver, an HTTP
input server, ffmpeg and ffprobe. Nothing from the project's own C++ code is
used by the client side: the gRPC stubs are generated from the .proto alone.
"""
