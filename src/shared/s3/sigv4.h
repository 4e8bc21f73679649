#pragma once
// The pieces of AWS Signature Version 4 the project computes itself: URI
// encoding, hashing, and query-string (presigned URL) signing. Request headers
// are signed by libcurl (CURLOPT_AWS_SIGV4); everything here is checked against
// botocore by tests/s3_oracle.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flux::s3 {

// AWS URI encoding: every byte except A-Z a-z 0-9 - _ . ~ becomes %XX (upper
// case hex); '/' is kept when `keep_slash` (object key paths), encoded otherwise
// (query names and values).
std::string uri_encode(std::string_view text, bool keep_slash);

// An object key as it appears in a request path: each segment URI-encoded, '/' kept.
inline std::string encode_key(std::string_view key) { return uri_encode(key, /*keep_slash=*/true); }

// "k1=v1&k2=v2" with names and values URI-encoded and sorted by encoded name
// (then value) — the canonical query form. Sending the query in exactly this
// form matters: libcurl 7.88 signs the query string as given, unsorted.
std::string canonical_query(const std::multimap<std::string, std::string>& params);

std::string sha256_hex(std::string_view data);
// Hex SHA-256 of `length` bytes of `file` starting at `offset`, read in chunks.
absl::StatusOr<std::string> sha256_file_hex(const std::filesystem::path& file, uint64_t offset, uint64_t length);
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw bytes
std::string hex_encode(std::string_view bytes);                        // lower case

// "20130524T000000Z" and "20130524" for a point in time (UTC).
std::string amz_timestamp(std::chrono::system_clock::time_point t);

struct PresignInput {
  std::string scheme = "https";  // "http" | "https"
  std::string host;              // as sent in the Host header: default ports omitted
  std::string canonical_uri;     // already encoded path: "/bucket/key" or "/key"
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // "" = none
  std::string region;
  std::chrono::seconds expires{3600};  // clamped to [1 s, 7 days]
  std::chrono::system_clock::time_point now;
};

// A presigned GET URL (X-Amz-Algorithm ... X-Amz-Signature query), signing only
// the host header with an UNSIGNED-PAYLOAD body.
std::string presign_get_url(const PresignInput& input);

}  // namespace flux::s3
