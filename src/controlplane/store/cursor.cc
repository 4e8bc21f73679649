#include <charconv>

#include "absl/strings/escaping.h"
#include "controlplane/store/job_store.h"
#include "shared/core/error.h"

namespace flux::controlplane::store {
namespace {
// The version prefix lets the format change without misreading old cursors.
constexpr std::string_view kPrefix = "c1:";
constexpr size_t kMaxCursorLength = 256;

bool plausible_job_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) return false;
  }
  return true;
}

absl::Status cursor_invalid() { return invalid_argument("cursor_invalid", "the cursor is malformed"); }
}  // namespace

std::string encode_cursor(const ListCursor& cursor) {
  std::string plain = std::string(kPrefix) + std::to_string(cursor.created_ms) + ":" + cursor.job_id;
  return absl::WebSafeBase64Escape(plain);
}

absl::StatusOr<ListCursor> decode_cursor(const std::string& text) {
  if (text.empty() || text.size() > kMaxCursorLength) return cursor_invalid();
  std::string plain;
  if (!absl::WebSafeBase64Unescape(text, &plain)) return cursor_invalid();
  std::string_view rest(plain);
  if (!rest.starts_with(kPrefix)) return cursor_invalid();
  rest.remove_prefix(kPrefix.size());
  const size_t colon = rest.find(':');
  if (colon == std::string_view::npos) return cursor_invalid();
  ListCursor cursor;
  const std::string_view number = rest.substr(0, colon);
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), cursor.created_ms);
  if (ec != std::errc() || end != number.data() + number.size() || cursor.created_ms < 0) return cursor_invalid();
  cursor.job_id = std::string(rest.substr(colon + 1));
  if (!plausible_job_id(cursor.job_id)) return cursor_invalid();
  // The decoder accepts padding and other spellings; only our own is valid.
  if (encode_cursor(cursor) != text) return cursor_invalid();
  return cursor;
}

}  // namespace flux::controlplane::store
