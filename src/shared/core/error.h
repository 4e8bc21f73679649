#pragma once
// Errors that carry a machine code ("input_not_found", "upload_failed", ...)
// beside the human message. The machine code travels as an absl::Status
// payload, so every fallible call keeps returning plain absl::Status.
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace flux {

// An error with a gRPC-style category, a machine code and a human message.
absl::Status make_error(absl::StatusCode category, std::string_view code, std::string_view message);

// Shorthands for the common categories.
absl::Status invalid_argument(std::string_view code, std::string_view message);
absl::Status failed_precondition(std::string_view code, std::string_view message);
absl::Status not_found(std::string_view code, std::string_view message);
absl::Status unavailable(std::string_view code, std::string_view message);
absl::Status internal_error(std::string_view code, std::string_view message);

// The machine code of an error: the attached one, or one derived from the
// category ("internal", "cancelled", ...) when none was attached. "" for OK.
std::string error_code(const absl::Status& status);

// The same status with its machine code replaced (message and category kept).
absl::Status with_code(const absl::Status& status, std::string_view code);

// Prefixes the message ("downloading input: <message>"), keeping code and category.
absl::Status annotate(const absl::Status& status, std::string_view context);

}  // namespace flux
