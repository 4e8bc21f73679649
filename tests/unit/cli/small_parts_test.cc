// Exit codes, --metadata parsing, text helpers and job events.
#include <gtest/gtest.h>

#include "cli/exit_codes.h"
#include "cli/job_event.h"
#include "cli/metadata.h"
#include "cli/text.h"
#include "shared/core/error.h"

namespace flux::cli {
namespace {

TEST(ExitCodes, JobStatuses) {
  EXPECT_EQ(exit_code_for_job_status("completed"), ExitCode::kSuccess);
  EXPECT_EQ(exit_code_for_job_status("failed"), ExitCode::kJobUnsuccessful);
  EXPECT_EQ(exit_code_for_job_status("cancelled"), ExitCode::kJobUnsuccessful);
  EXPECT_EQ(exit_code_for_job_status("processing"), ExitCode::kServerOrNetwork);
  EXPECT_EQ(exit_code_for_job_status(""), ExitCode::kServerOrNetwork);
}

TEST(ExitCodes, Errors) {
  EXPECT_EQ(exit_code_for_error(absl::OkStatus()), ExitCode::kSuccess);
  EXPECT_EQ(exit_code_for_error(invalid_argument("usage", "bad")), ExitCode::kUsage);
  EXPECT_EQ(exit_code_for_error(make_error(absl::StatusCode::kCancelled, "interrupted", "x")), ExitCode::kInterrupted);
  EXPECT_EQ(exit_code_for_error(unavailable("connection_failed", "x")), ExitCode::kServerOrNetwork);
  EXPECT_EQ(exit_code_for_error(make_error(absl::StatusCode::kUnauthenticated, "unauthorized", "x")),
            ExitCode::kServerOrNetwork);
  // A server's 400 is the server's answer, not a usage error of fluxctl.
  EXPECT_EQ(exit_code_for_error(invalid_argument("preset_unknown", "x")), ExitCode::kServerOrNetwork);
  EXPECT_EQ(to_int(ExitCode::kUsage), 2);
  EXPECT_EQ(to_int(ExitCode::kServerOrNetwork), 3);
}

TEST(Metadata, ParsesKeyValuePairs) {
  auto m = parse_metadata({"title=Sample", "empty=", "eq=a=b", "Key_2-x=v"});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->at("title"), "Sample");
  EXPECT_EQ(m->at("empty"), "");
  EXPECT_EQ(m->at("eq"), "a=b");  // split at the first '='
  EXPECT_EQ(m->at("Key_2-x"), "v");
  EXPECT_TRUE(parse_metadata({})->empty());
}

TEST(Metadata, RefusesMalformedItemsAsUsageErrors) {
  for (const char* bad : {"novalue", "=v", "sp ace=v", "dot.key=v", "ü=v"}) {
    auto m = parse_metadata({bad});
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(error_code(m.status()), "usage") << bad;
  }
  EXPECT_FALSE(parse_metadata({std::string(65, 'k') + "=v"}).ok());
  EXPECT_TRUE(parse_metadata({std::string(64, 'k') + "=v"}).ok());
  auto twice = parse_metadata({"a=1", "a=2"});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.status().message().find("twice"), absl::string_view::npos);
}

TEST(Text, PrintableReplacesControls) {
  EXPECT_EQ(printable("ok text ü"), "ok text ü");
  EXPECT_EQ(printable("a\x1b[31mb\r\n\x7f"), "a?[31mb???");
  EXPECT_EQ(printable("c1 \xc2\x9b x"), "c1 ? x");
}

TEST(Text, WidthAndTruncation) {
  EXPECT_EQ(display_width("abc"), 3u);
  EXPECT_EQ(display_width("äöü"), 3u);
  EXPECT_EQ(truncate_to_width("äöü", 2), "äö");
  EXPECT_EQ(truncate_to_width("abc", 5), "abc");
  EXPECT_EQ(truncate_to_width("abc", 0), "");
}

TEST(Text, Formats) {
  EXPECT_EQ(format_clock(7), "0:07");
  EXPECT_EQ(format_clock(754), "12:34");
  EXPECT_EQ(format_clock(3723), "1:02:03");
  EXPECT_EQ(format_clock(-1), "0:00");
  EXPECT_EQ(format_seconds(0.42), "0.4 s");
  EXPECT_EQ(format_seconds(125), "2 min 5 s");
  EXPECT_EQ(format_seconds(3720), "1 h 2 min");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(1258291), "1.2 MiB");
  EXPECT_EQ(format_bytes(1288490189), "1.20 GiB");
  EXPECT_EQ(format_bytes(50ull << 20), "50.0 MiB");
}

TEST(JobEvents, ReadsTheStreamFields) {
  auto e = parse_job_event(
      R"({"job_id":"job_1","status":"processing","phase":"encoding","progress":42.5,"message":"encoding",)"
      R"("timestamp":"2026-01-01T00:00:00.000Z","fps":30,"speed":1.5,"eta_seconds":4,"attempts":1,"new_field":[1]})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->job_id, "job_1");
  EXPECT_EQ(e->phase, "encoding");
  EXPECT_DOUBLE_EQ(e->progress, 42.5);
  EXPECT_EQ(e->fps, 30);
  EXPECT_EQ(e->eta_seconds, 4);
  EXPECT_FALSE(e->terminal());
}

TEST(JobEvents, LenientAboutMissingAndMistypedFields) {
  auto e = parse_job_event(R"({"status":"failed","progress":"lots","error_code":"input_not_found","error":null})");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->terminal());
  EXPECT_EQ(e->progress, 0);
  EXPECT_FALSE(e->fps.has_value());
  EXPECT_EQ(e->error_code, "input_not_found");
  EXPECT_FALSE(parse_job_event("not json").ok());
  EXPECT_FALSE(parse_job_event("[1,2]").ok());
  EXPECT_EQ(error_code(parse_job_event("").status()), "stream_invalid");
}

}  // namespace
}  // namespace flux::cli
