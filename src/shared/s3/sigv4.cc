#include "shared/s3/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <vector>

#include "shared/core/error.h"

namespace flux::s3 {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";
constexpr int64_t kMaxPresignSeconds = 7 * 24 * 3600;

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
         c == '.' || c == '~';
}

struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;

std::string scope_date(const std::string& timestamp) { return timestamp.substr(0, 8); }

}  // namespace

std::string uri_encode(std::string_view text, bool keep_slash) {
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0f]);
    }
  }
  return out;
}

std::string canonical_query(const std::multimap<std::string, std::string>& params) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(params.size());
  for (const auto& [name, value] : params) encoded.emplace_back(uri_encode(name, false), uri_encode(value, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [name, value] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHexLower[c >> 4]);
    out.push_back(kHexLower[c & 0x0f]);
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

absl::StatusOr<std::string> sha256_file_hex(const std::filesystem::path& file, uint64_t offset, uint64_t length) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return flux::internal_error("file_unreadable", "cannot open " + file.string() + ": " + std::strerror(errno));
  in.seekg(static_cast<std::streamoff>(offset));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return flux::internal_error("internal", "cannot initialise SHA-256");
  }
  std::vector<char> buffer(1 << 20);
  uint64_t remaining = length;
  while (remaining > 0) {
    const auto want = static_cast<std::streamsize>(std::min<uint64_t>(remaining, buffer.size()));
    in.read(buffer.data(), want);
    const std::streamsize got = in.gcount();
    if (got <= 0) return flux::internal_error("file_unreadable", "short read from " + file.string());
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(got));
    remaining -= static_cast<uint64_t>(got);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &digest_len);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(digest), digest_len));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), digest, &digest_len);
  return std::string(reinterpret_cast<const char*>(digest), digest_len);
}

std::string amz_timestamp(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y%m%dT%H%M%SZ", &utc);
  return buffer;
}

std::string presign_get_url(const PresignInput& input) {
  const std::string timestamp = amz_timestamp(input.now);
  const std::string date = scope_date(timestamp);
  const std::string scope = date + "/" + input.region + "/s3/aws4_request";
  const int64_t expires = std::clamp<int64_t>(input.expires.count(), 1, kMaxPresignSeconds);

  std::multimap<std::string, std::string> params = {
      {"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
      {"X-Amz-Credential", input.access_key_id + "/" + scope},
      {"X-Amz-Date", timestamp},
      {"X-Amz-Expires", std::to_string(expires)},
      {"X-Amz-SignedHeaders", "host"},
  };
  if (!input.session_token.empty()) params.emplace("X-Amz-Security-Token", input.session_token);
  const std::string query = canonical_query(params);

  const std::string canonical_request =
      "GET\n" + input.canonical_uri + "\n" + query + "\nhost:" + input.host + "\n\nhost\nUNSIGNED-PAYLOAD";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + timestamp + "\n" + scope + "\n" + sha256_hex(canonical_request);

  std::string key = hmac_sha256("AWS4" + input.secret_access_key, date);
  key = hmac_sha256(key, input.region);
  key = hmac_sha256(key, "s3");
  key = hmac_sha256(key, "aws4_request");
  const std::string signature = hex_encode(hmac_sha256(key, string_to_sign));

  return input.scheme + "://" + input.host + input.canonical_uri + "?" + query + "&X-Amz-Signature=" + signature;
}

}  // namespace flux::s3
