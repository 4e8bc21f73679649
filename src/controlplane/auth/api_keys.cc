#include "controlplane/auth/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>

namespace flux::controlplane::auth {
namespace {

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view text) {
  Digest digest{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

// The credentials of "Bearer <token>" (RFC 7235: the scheme is case-insensitive
// and separated by one or more spaces), or nullopt.
std::optional<std::string_view> bearer_token(std::string_view header) {
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size() || !iequals(header.substr(0, kScheme.size()), kScheme)) return std::nullopt;
  std::string_view rest = header.substr(kScheme.size());
  if (rest.front() != ' ') return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty()) return std::nullopt;
  for (const char c : rest) {
    if (c < 0x21 || c > 0x7e) return std::nullopt;  // no inner spaces, controls or non-ASCII
  }
  return rest;
}

}  // namespace

ApiKeys ApiKeys::from(const std::vector<std::string>& keys) {
  ApiKeys result;
  for (const auto& raw : keys) {
    const std::string_view key = trim(raw);
    if (key.empty()) continue;
    Key entry{sha256(key), key_id(key)};
    const bool duplicate = std::any_of(result.keys_.begin(), result.keys_.end(),
                                       [&](const Key& existing) { return existing.digest == entry.digest; });
    if (!duplicate) result.keys_.push_back(std::move(entry));
  }
  return result;
}

std::string ApiKeys::key_id(std::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  const Digest digest = sha256(key);
  std::string id;
  for (int i = 0; i < 4; ++i) {
    id += kHex[digest[i] >> 4];
    id += kHex[digest[i] & 0x0f];
  }
  return id;
}

std::optional<std::string> ApiKeys::authenticate(std::string_view authorization_header) const {
  const auto token = bearer_token(authorization_header);
  // A malformed header still costs one digest, so that it is not told apart by timing either.
  const Digest presented = sha256(token.value_or(authorization_header));
  const Key* match = nullptr;
  for (const Key& key : keys_) {
    // Every key is compared, whatever matched before.
    const bool equal = CRYPTO_memcmp(presented.data(), key.digest.data(), presented.size()) == 0;
    if (equal) match = &key;
  }
  if (!token || match == nullptr) return std::nullopt;
  return match->id;
}

}  // namespace flux::controlplane::auth
