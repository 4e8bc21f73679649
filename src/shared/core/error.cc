#include "shared/core/error.h"

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace flux {
namespace {
// Debian's abseil has its own string_view type, distinct from std::string_view.
constexpr absl::string_view kCodeUrl = "flux.dev/error_code";
absl::string_view to_absl(std::string_view s) { return {s.data(), s.size()}; }
}  // namespace

absl::Status make_error(absl::StatusCode category, std::string_view code, std::string_view message) {
  absl::Status status(category, to_absl(message));
  status.SetPayload(kCodeUrl, absl::Cord(to_absl(code)));
  return status;
}

absl::Status invalid_argument(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kInvalidArgument, code, message);
}
absl::Status failed_precondition(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kFailedPrecondition, code, message);
}
absl::Status not_found(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kNotFound, code, message);
}
absl::Status unavailable(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kUnavailable, code, message);
}
absl::Status internal_error(std::string_view code, std::string_view message) {
  return make_error(absl::StatusCode::kInternal, code, message);
}

std::string error_code(const absl::Status& status) {
  if (status.ok()) return "";
  if (auto payload = status.GetPayload(kCodeUrl)) return std::string(*payload);
  // StatusCodeToString gives "INVALID_ARGUMENT"; machine codes are lower case.
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

absl::Status with_code(const absl::Status& status, std::string_view code) {
  if (status.ok()) return status;
  absl::Status copy = status;
  copy.SetPayload(kCodeUrl, absl::Cord(to_absl(code)));
  return copy;
}

absl::Status annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(to_absl(context), ": ", status.message()));
  status.ForEachPayload([&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace flux
