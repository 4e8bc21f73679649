#include "cli/sse_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace flux::cli {
namespace {

// Feeds `stream` in chunks of `chunk` bytes and collects every event.
std::vector<SseEvent> parse_in_chunks(const std::string& stream, size_t chunk, SseParser& parser) {
  std::vector<SseEvent> events;
  for (size_t i = 0; i < stream.size(); i += chunk) {
    for (auto& e : parser.feed(std::string_view(stream).substr(i, chunk))) events.push_back(std::move(e));
  }
  return events;
}

TEST(SseParser, IdAndDataMakeAnEvent) {
  SseParser parser;
  auto events = parser.feed("id: 1\ndata: {\"status\":\"queued\"}\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, "1");
  EXPECT_EQ(events[0].type, "message");
  EXPECT_EQ(events[0].data, "{\"status\":\"queued\"}");
  EXPECT_EQ(parser.last_event_id(), "1");
}

TEST(SseParser, NoEventUntilTheBlankLine) {
  SseParser parser;
  EXPECT_TRUE(parser.feed("id: 7\ndata: x\n").empty());
  auto events = parser.feed("\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "x");
}

TEST(SseParser, MultiLineDataJoinsWithNewlines) {
  SseParser parser;
  auto events = parser.feed("data: first\ndata:second\ndata\ndata:  indented\n\n");
  ASSERT_EQ(events.size(), 1u);
  // One space after the colon is dropped, not two; a bare "data" adds an empty line.
  EXPECT_EQ(events[0].data, "first\nsecond\n\n indented");
}

TEST(SseParser, CommentsAreCountedAndIgnored) {
  SseParser parser;
  auto events = parser.feed(": keep-alive\n\n:another\ndata: a\n: in the middle\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, "a");
  EXPECT_EQ(parser.comments(), 3u);
}

TEST(SseParser, IdPersistsAcrossEventsAndWithoutData) {
  SseParser parser;
  auto events = parser.feed("id: 5\ndata: a\n\ndata: b\n\nid: 9\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].id, "5");
  EXPECT_EQ(events[1].id, "5");            // no id line: the last one stays
  EXPECT_EQ(parser.last_event_id(), "9");  // set even though no event was dispatched
}

TEST(SseParser, IdWithNulIsIgnored) {
  SseParser parser;
  parser.feed("id: 3\n\n");
  parser.feed(std::string("id: 4\0x\n\n", 10));
  EXPECT_EQ(parser.last_event_id(), "3");
}

TEST(SseParser, EventTypeAndRetry) {
  SseParser parser;
  auto events = parser.feed("event: ping\ndata: p\n\nretry: 1500\nretry: 12x\ndata: m\n\n");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, "ping");
  EXPECT_EQ(events[1].type, "message");  // the type is reset after each event
  EXPECT_EQ(parser.retry_ms(), 1500u);   // the malformed retry is ignored
}

TEST(SseParser, CrLfAndBareCrEndLines) {
  SseParser parser;
  auto events = parser.feed("id: 1\r\ndata: crlf\r\n\r\nid: 2\rdata: cr\r\rdata: lf\n\n");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].data, "crlf");
  EXPECT_EQ(events[1].data, "cr");
  EXPECT_EQ(events[1].id, "2");
  EXPECT_EQ(events[2].data, "lf");
}

TEST(SseParser, CrLfSplitAcrossChunksIsOneLineEnd) {
  SseParser parser;
  std::vector<SseEvent> events;
  for (const char* chunk : {"data: a\r", "\n", "\r", "\ndata: b\r", "\n\r", "\n"}) {
    for (auto& e : parser.feed(chunk)) events.push_back(e);
  }
  ASSERT_EQ(events.size(), 2u);  // a CR then LF in the next chunk must not count as two line ends
  EXPECT_EQ(events[0].data, "a");
  EXPECT_EQ(events[1].data, "b");
}

TEST(SseParser, AnyChunkingGivesTheSameEvents) {
  const std::string stream =
      "\xEF\xBB\xBFid: 1\r\ndata: {\"progress\": 10}\r\n\r\n: keep-alive\n\nid: 2\ndata: line one\ndata: line two\n\n"
      "id: 3\rdata: {\"status\":\"completed\"}\r\r";
  SseParser whole;
  const auto expected = whole.feed(stream);
  ASSERT_EQ(expected.size(), 3u);
  EXPECT_EQ(expected[0].data, "{\"progress\": 10}");  // the BOM is skipped
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    SseParser parser;
    const auto events = parse_in_chunks(stream, chunk, parser);
    ASSERT_EQ(events.size(), expected.size()) << "chunk " << chunk;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].id, expected[i].id) << "chunk " << chunk;
      EXPECT_EQ(events[i].data, expected[i].data) << "chunk " << chunk;
    }
    EXPECT_EQ(parser.last_event_id(), "3");
  }
}

TEST(SseParser, IncompleteEventAtTheEndIsNotDispatched) {
  SseParser parser;
  EXPECT_TRUE(parser.feed("id: 1\ndata: cut").empty());
  EXPECT_EQ(parser.last_event_id(), "1");
}

TEST(SseParser, FieldWithoutColonAndUnknownFields) {
  SseParser parser;
  auto events = parser.feed("foo: bar\nid\ndata: x\n\n");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].id, "");  // "id" alone sets an empty id
  EXPECT_EQ(events[0].data, "x");
}

TEST(SseParser, OverlongLineStopsTheParser) {
  SseParser parser(16);
  EXPECT_TRUE(parser.feed("data: 0123456789").empty());
  EXPECT_FALSE(parser.overflowed());
  EXPECT_TRUE(parser.feed("abcdef\n\n").empty());
  EXPECT_TRUE(parser.overflowed());
}

}  // namespace
}  // namespace flux::cli
