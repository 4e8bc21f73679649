#include "cli/progress_view.h"

#include <gtest/gtest.h>

#include "cli/text.h"

namespace flux::cli {
namespace {

JobEvent encoding(double progress, std::optional<double> eta = 3.0) {
  JobEvent e;
  e.job_id = "job_1";
  e.status = "processing";
  e.phase = "encoding";
  e.progress = progress;
  e.fps = 118.4;
  e.speed = 4.73;
  e.eta_seconds = eta;
  return e;
}

TEST(ProgressBar, FullLayoutOnAWideTerminal) {
  const std::string line = render_progress_bar(encoding(45), 100);
  EXPECT_EQ(line, " 45% [##################......................] encoding  118 fps  4.7x  ETA 0:03");
}

TEST(ProgressBar, NeverReachesTheLastColumn) {
  for (double progress : {0.0, 7.5, 45.0, 99.9, 100.0}) {
    for (int width = 0; width <= 160; ++width) {
      const std::string line = render_progress_bar(encoding(progress), width);
      EXPECT_LE(display_width(line), static_cast<size_t>(std::max(width - 1, 0))) << "width " << width << ": " << line;
      EXPECT_EQ(line.find_first_of("\r\n\x1b"), std::string::npos);
    }
  }
}

TEST(ProgressBar, BarFillFollowsProgress) {
  const std::string empty = render_progress_bar(encoding(0), 100);
  const std::string full = render_progress_bar(encoding(100), 100);
  EXPECT_NE(empty.find("[....."), std::string::npos) << empty;
  EXPECT_EQ(empty.find('#'), std::string::npos) << empty;
  EXPECT_EQ(full.find('.'), full.find("4.7x") + 1) << full;  // only the speed's dot: no empty cell
  EXPECT_EQ(full.substr(0, 4), "100%");
}

TEST(ProgressBar, FloorsThePercentSoOnlyDoneShows100) {
  EXPECT_EQ(render_progress_bar(encoding(99.9), 80).substr(0, 4), " 99%");
  EXPECT_EQ(render_progress_bar(encoding(-5), 80).substr(0, 4), "  0%");
  EXPECT_EQ(render_progress_bar(encoding(250), 80).substr(0, 4), "100%");
}

TEST(ProgressBar, UnknownEtaWhileEncoding) {
  const std::string line = render_progress_bar(encoding(10, std::nullopt), 100);
  EXPECT_NE(line.find("ETA --:--"), std::string::npos) << line;
}

TEST(ProgressBar, ZeroRatesMeanNotReportedYet) {
  JobEvent e = encoding(0, std::nullopt);
  e.fps = 0;
  e.speed = 0;
  const std::string line = render_progress_bar(e, 100);
  EXPECT_EQ(line.find("fps"), std::string::npos) << line;
  EXPECT_EQ(line.find("0.0x"), std::string::npos) << line;
  EXPECT_NE(line.find("encoding  ETA --:--"), std::string::npos) << line;
}

TEST(ProgressBar, LongEtaUsesHours) {
  const std::string line = render_progress_bar(encoding(1, 3723), 100);
  EXPECT_NE(line.find("ETA 1:02:03"), std::string::npos) << line;
}

TEST(ProgressBar, OtherPhasesShowNoStats) {
  JobEvent e;
  e.status = "processing";
  e.phase = "downloading";
  e.progress = 0;
  const std::string line = render_progress_bar(e, 80);
  EXPECT_NE(line.find("downloading"), std::string::npos);
  EXPECT_EQ(line.find("ETA"), std::string::npos) << line;
  EXPECT_EQ(line.find("fps"), std::string::npos) << line;
}

TEST(ProgressBar, NarrowTerminalDropsStatsThenBar) {
  const std::string medium = render_progress_bar(encoding(50), 44);
  EXPECT_NE(medium.find('['), std::string::npos) << medium;
  EXPECT_EQ(medium.find("fps"), std::string::npos) << medium;
  EXPECT_NE(medium.find("ETA 0:03"), std::string::npos) << medium;

  const std::string narrow = render_progress_bar(encoding(50), 20);
  EXPECT_EQ(narrow.find('['), std::string::npos) << narrow;
  EXPECT_EQ(narrow.substr(0, 4), " 50%");
}

TEST(ProgressBar, ServerTextCannotInjectEscapes) {
  JobEvent e = encoding(10);
  e.phase = "enc\x1b[2Jx";
  const std::string line = render_progress_bar(e, 100);
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
}

TEST(ProgressLine, PlainLineHasPercentPhaseAndStats) {
  EXPECT_EQ(render_progress_line(encoding(45)), "[ 45%] encoding  118 fps  4.7x  ETA 0:03");
  JobEvent e;
  e.status = "processing";
  e.phase = "downloading";
  e.message = "downloading input";
  EXPECT_EQ(render_progress_line(e), "[  0%] downloading: downloading input");
}

TEST(PlainFilter, PrintsFirstEventChangesAndEachTenPercent) {
  PlainProgressFilter filter;
  JobEvent queued;
  queued.status = "queued";
  queued.phase = "queued";
  EXPECT_TRUE(filter.should_print(queued));
  EXPECT_FALSE(filter.should_print(queued));  // nothing new
  JobEvent e = encoding(0);
  EXPECT_TRUE(filter.should_print(e));  // phase change
  int printed = 0;
  for (double p = 0.5; p < 100; p += 0.5) {
    e.progress = p;
    if (filter.should_print(e)) ++printed;
  }
  EXPECT_EQ(printed, 9);  // 10%, 20%, ... 90%: not one per event
  JobEvent done = e;
  done.status = "completed";
  done.phase = "done";
  EXPECT_FALSE(filter.should_print(done));  // left to the summary line
}

TEST(Summary, CompletedShowsTheOutputAndResult) {
  JobEvent e;
  e.job_id = "job_1";
  e.status = "completed";
  e.output_url = "file:///out/a.mp4";
  e.result = {{"video_codec", "h264"},   {"width", 1280},         {"height", 720},  {"audio_codec", "aac"},
              {"duration_seconds", 2.0}, {"size_bytes", 1258291}, {"file_count", 1}};
  EXPECT_EQ(render_summary(e), "job_1 completed: file:///out/a.mp4 (h264 1280x720, aac, 2.0 s, 1.2 MiB)");
}

TEST(Summary, FailedShowsErrorAndCode) {
  JobEvent e;
  e.job_id = "job_2";
  e.status = "failed";
  e.error = "input not found: HTTP 404";
  e.error_code = "input_not_found";
  EXPECT_EQ(render_summary(e), "job_2 failed: input not found: HTTP 404 (input_not_found)");
  e.status = "cancelled";
  e.error = "cancelled by the client";
  e.error_code = "cancelled";
  EXPECT_EQ(render_summary(e), "job_2 cancelled: cancelled by the client (cancelled)");
}

}  // namespace
}  // namespace flux::cli
