#include "controlplane/api/validation.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flux::controlplane::api {
namespace {

using nlohmann::json;

const std::vector<PresetSummary>& catalogue() {
  static const std::vector<PresetSummary> presets = {
      {"720p_h264", "720p H.264", "single", "mp4"},
      {"hls_720p", "720p HLS", "hls", "m3u8"},
      {"dash_1080p", "1080p DASH", "dash", "mpd"},
  };
  return presets;
}

ValidationContext test_context() {
  ValidationContext context;
  context.find_preset = [](std::string_view name) -> const PresetSummary* {
    for (const auto& preset : catalogue()) {
      if (preset.name == name) return &preset;
    }
    return nullptr;
  };
  context.served_storage = {"s3", "local"};
  context.callback_policy.allowed_schemes = {"https", "http"};
  context.resolve_hosts = false;  // no DNS in unit tests (literal checks still apply)
  return context;
}

json valid_request() {
  return json::parse(R"({
    "input_url": "https://media.example.org/source.mp4",
    "preset": "720p_h264",
    "output": {"storage": "s3", "path": "outputs/video_123.mp4", "type": "single", "metadata": {"title": "Sample"}},
    "callback_url": "https://hooks.example.org/flux",
    "priority": 3
  })");
}

ApiError expect_error(std::string_view body, const ValidationContext& context = test_context()) {
  auto result = parse_job_request(body, context);
  if (std::holds_alternative<model::JobSpec>(result)) {
    ADD_FAILURE() << "accepted: " << body.substr(0, 300);
    return {};
  }
  return std::get<ApiError>(result);
}

model::JobSpec expect_spec(std::string_view body, const ValidationContext& context = test_context()) {
  auto result = parse_job_request(body, context);
  if (auto* error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << "refused with " << error->code << " (" << error->field << "): " << error->message;
    return {};
  }
  return std::get<model::JobSpec>(result);
}

// The valid request with one JSON pointer replaced (or removed when value is discarded).
std::string with(const std::string& pointer, const json& value) {
  json request = valid_request();
  if (value.is_discarded()) {
    const json::json_pointer ptr(pointer);
    request[ptr.parent_pointer()].erase(ptr.back());
  } else {
    request[json::json_pointer(pointer)] = value;
  }
  return request.dump();
}
std::string without(const std::string& pointer) { return with(pointer, json(json::value_t::discarded)); }

TEST(ParseJobRequest, AcceptsTheSpecExampleAndKeepsEveryField) {
  const model::JobSpec spec = expect_spec(valid_request().dump());
  EXPECT_EQ(spec.input_url, "https://media.example.org/source.mp4");
  EXPECT_EQ(spec.preset, "720p_h264");
  EXPECT_EQ(spec.output.storage, "s3");
  EXPECT_EQ(spec.output.path, "outputs/video_123.mp4");
  EXPECT_EQ(spec.output.type, "single");
  EXPECT_EQ(spec.output.metadata, (std::map<std::string, std::string>{{"title", "Sample"}}));
  EXPECT_EQ(spec.callback_url, "https://hooks.example.org/flux");
  EXPECT_EQ(spec.priority, 3);
}

TEST(ParseJobRequest, OptionalFieldsMayBeAbsentOrNull) {
  const model::JobSpec spec = expect_spec(R"({"input_url": "s3://bucket/in.mov", "preset": "hls_720p",
      "output": {"storage": "local", "path": "hls/abc/", "type": null, "metadata": null},
      "callback_url": null, "priority": null})");
  EXPECT_EQ(spec.output.type, "");
  EXPECT_TRUE(spec.output.metadata.empty());
  EXPECT_EQ(spec.callback_url, "");
  EXPECT_EQ(spec.priority, 0);
}

TEST(ParseJobRequest, IgnoresUnknownFields) {
  json request = valid_request();
  request["future_field"] = {{"nested", {1, 2, 3}}};
  request["output"]["another"] = true;
  EXPECT_EQ(expect_spec(request.dump()).preset, "720p_h264");
}

std::string repeat(std::string_view text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text;
  return out;
}

struct Refusal {
  std::string name;
  std::string body;
  std::string code;
  std::string field;
};
void PrintTo(const Refusal& r, std::ostream* os) { *os << r.name; }

class RefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(RefusalTest, HasItsCodeAndField) {
  const Refusal& r = GetParam();
  const ApiError error = expect_error(r.body);
  EXPECT_EQ(error.http_status, 400);
  EXPECT_EQ(error.code, r.code) << error.message;
  EXPECT_EQ(error.field, r.field) << error.message;
  EXPECT_FALSE(error.message.empty());
}

INSTANTIATE_TEST_SUITE_P(
    InvalidJson, RefusalTest,
    ::testing::Values(
        Refusal{"Empty", "", "invalid_json", ""}, Refusal{"Text", "hello", "invalid_json", ""},
        Refusal{"Truncated", R"({"input_url": "https://a.example/x")", "invalid_json", ""},
        Refusal{"TrailingGarbage", valid_request().dump() + " x", "invalid_json", ""},
        Refusal{"TwoDocuments", valid_request().dump() + valid_request().dump(), "invalid_json", ""},
        Refusal{"Array", "[1, 2]", "invalid_json", ""}, Refusal{"String", R"("job")", "invalid_json", ""},
        Refusal{"Null", "null", "invalid_json", ""}, Refusal{"Number", "42", "invalid_json", ""},
        Refusal{"SingleQuotes", "{'input_url': 'x'}", "invalid_json", ""},
        Refusal{"Comment", "{/* c */}", "invalid_json", ""},
        Refusal{"InvalidUtf8InString", std::string(R"({"input_url": "https://a.example/)") + "\xff" + R"("})",
                "invalid_json", "input_url"},
        Refusal{"OverlongUtf8", std::string(R"({"preset": ")") + "\xc0\xaf" + R"("})", "invalid_json", "preset"},
        Refusal{"Utf8Surrogate", std::string(R"({"preset": ")") + "\xed\xa0\x80" + R"("})", "invalid_json", "preset"},
        Refusal{"LoneSurrogateEscape", R"({"preset": "\ud800"})", "invalid_json", "preset"},
        Refusal{"RawControlCharInString", std::string("{\"preset\": \"a\x01\"}"), "invalid_json", "preset"},
        Refusal{"NumberOverflow", R"({"input_url": "https://a.example/x", "priority": 1e400})", "invalid_json",
                "priority"},
        Refusal{"NegativeNumberOverflow", R"({"priority": -1e400})", "invalid_json", "priority"},
        Refusal{"OverflowDeepInside", R"({"output": {"metadata": {"m": [1, 2, {"x": 1e999}]}}})", "invalid_json",
                "output.metadata.m[2].x"},
        Refusal{"BrokenArrayElement", R"({"output": {"list": [1, tru]}})", "invalid_json", "output.list[1]"},
        Refusal{"BadKeyInsideObject", std::string(R"({"output": {"pa)") + "\xff" + R"(th": "a"}})", "invalid_json",
                "output"},
        Refusal{"DuplicateKeyByEscape", R"({"preset": "720p_h264", "pre\u0073et": "hls_720p"})", "invalid_json",
                "preset"},
        Refusal{"DeepNesting", std::string(10000, '[') + std::string(10000, ']'), "invalid_json",
                repeat("[0]", kMaxJsonDepth)},
        Refusal{"DuplicateTopLevelKey",
                R"({"preset": "720p_h264", "preset": "hls_720p", "input_url": "https://a.example/x"})", "invalid_json",
                "preset"},
        Refusal{"DuplicateNestedKey",
                R"({"input_url": "https://a.example/x", "preset": "720p_h264",
                    "output": {"storage": "s3", "path": "a.mp4", "path": "../b.mp4"}})",
                "invalid_json", "output.path"}));

INSTANTIATE_TEST_SUITE_P(
    InputUrl, RefusalTest,
    ::testing::Values(
        Refusal{"Missing", without("/input_url"), "input_url_required", "input_url"},
        Refusal{"Null", with("/input_url", nullptr), "input_url_required", "input_url"},
        Refusal{"Empty", with("/input_url", ""), "input_url_required", "input_url"},
        Refusal{"NotString", with("/input_url", 42), "input_url_invalid", "input_url"},
        Refusal{"Object", with("/input_url", json::object()), "input_url_invalid", "input_url"},
        Refusal{"Malformed", with("/input_url", "https://exa mple.org/a.mp4"), "input_url_invalid", "input_url"},
        Refusal{"Ftp", with("/input_url", "ftp://example.org/a.mp4"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"Concat", with("/input_url", "concat:a.mp4|b.mp4"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"Data", with("/input_url", "data:video/mp4;base64,AAAA"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"Pipe", with("/input_url", "pipe:0"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"Subfile", with("/input_url", "subfile:,,start,0,end,0,,:a.mp4"), "input_url_scheme_forbidden",
                "input_url"},
        Refusal{"Gopher", with("/input_url", "gopher://example.org/"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"BarePath", with("/input_url", "/etc/passwd"), "input_url_scheme_forbidden", "input_url"},
        Refusal{"FileWithoutLocalDir", with("/input_url", "file:///etc/passwd"), "input_url_scheme_forbidden",
                "input_url"},
        Refusal{"Loopback", with("/input_url", "http://127.0.0.1/a.mp4"), "input_url_address_forbidden", "input_url"},
        Refusal{"LoopbackHex", with("/input_url", "http://0x7f000001/a.mp4"), "input_url_address_forbidden",
                "input_url"},
        Refusal{"LoopbackV6", with("/input_url", "http://[::1]/a.mp4"), "input_url_address_forbidden", "input_url"},
        Refusal{"Private", with("/input_url", "https://10.1.2.3/a.mp4"), "input_url_address_forbidden", "input_url"},
        Refusal{"Metadata", with("/input_url", "http://169.254.169.254/latest/meta-data/"),
                "input_url_address_forbidden", "input_url"},
        Refusal{"Localhost", with("/input_url", "http://localhost:9000/a.mp4"), "input_url_address_forbidden",
                "input_url"}));

INSTANTIATE_TEST_SUITE_P(Preset, RefusalTest,
                         ::testing::Values(Refusal{"Missing", without("/preset"), "preset_required", "preset"},
                                           Refusal{"Empty", with("/preset", ""), "preset_required", "preset"},
                                           Refusal{"Unknown", with("/preset", "4k_av1"), "preset_unknown", "preset"},
                                           Refusal{"NotString", with("/preset", 720), "preset_unknown", "preset"}));

INSTANTIATE_TEST_SUITE_P(
    Output, RefusalTest,
    ::testing::Values(
        Refusal{"Missing", without("/output"), "output_required", "output"},
        Refusal{"Null", with("/output", nullptr), "output_required", "output"},
        Refusal{"NotObject", with("/output", "s3://bucket/key"), "output_invalid", "output"},
        Refusal{"StorageMissing", without("/output/storage"), "output_storage_invalid", "output.storage"},
        Refusal{"StorageUnknown", with("/output/storage", "gcs"), "output_storage_invalid", "output.storage"},
        Refusal{"StorageCase", with("/output/storage", "S3"), "output_storage_invalid", "output.storage"},
        Refusal{"StorageNotString", with("/output/storage", 1), "output_storage_invalid", "output.storage"},
        Refusal{"PathMissing", without("/output/path"), "output_path_invalid", "output.path"},
        Refusal{"PathNotString", with("/output/path", 7), "output_path_invalid", "output.path"},
        Refusal{"PathEmpty", with("/output/path", ""), "output_path_invalid", "output.path"},
        Refusal{"PathAbsolute", with("/output/path", "/etc/cron.d/x"), "output_path_invalid", "output.path"},
        Refusal{"PathDotDot", with("/output/path", "a/../../b.mp4"), "output_path_invalid", "output.path"},
        Refusal{"PathOnlyDotDot", with("/output/path", ".."), "output_path_invalid", "output.path"},
        Refusal{"PathTrailingDotDot", with("/output/path", "a/.."), "output_path_invalid", "output.path"},
        Refusal{"PathBackslash", with("/output/path", "a\\..\\b.mp4"), "output_path_invalid", "output.path"},
        Refusal{"PathNewline", with("/output/path", "a\nb.mp4"), "output_path_invalid", "output.path"},
        Refusal{"PathNul", with("/output/path", std::string("a\0b.mp4", 7)), "output_path_invalid", "output.path"},
        Refusal{"PathDel", with("/output/path", "a\x7f.mp4"), "output_path_invalid", "output.path"},
        Refusal{"PathTooLong", with("/output/path", std::string(1025, 'a')), "output_path_invalid", "output.path"},
        Refusal{"TypeUnknown", with("/output/type", "mp4"), "output_type_invalid", "output.type"},
        Refusal{"TypeNotString", with("/output/type", 1), "output_type_invalid", "output.type"},
        Refusal{"TypeMismatch", with("/output/type", "hls"), "output_type_mismatch", "output.type"}));

INSTANTIATE_TEST_SUITE_P(
    Metadata, RefusalTest,
    ::testing::Values(
        Refusal{"NotObject", with("/output/metadata", "title=x"), "metadata_invalid", "output.metadata"},
        Refusal{"Array", with("/output/metadata", json::array({"a"})), "metadata_invalid", "output.metadata"},
        Refusal{"TooMany",
                with("/output/metadata",
                     [] {
                       json m = json::object();
                       for (int i = 0; i < 33; ++i) m["k" + std::to_string(i)] = "v";
                       return m;
                     }()),
                "metadata_invalid", "output.metadata"},
        Refusal{"KeyWithSpace", with("/output/metadata", {{"bad key", "v"}}), "metadata_invalid",
                "output.metadata.bad key"},
        Refusal{"KeyWithDot", with("/output/metadata", {{"a.b", "v"}}), "metadata_invalid", "output.metadata.a.b"},
        Refusal{"KeyEmpty", with("/output/metadata", {{"", "v"}}), "metadata_invalid", "output.metadata."},
        Refusal{"KeyTooLong", with("/output/metadata", {{std::string(65, 'k'), "v"}}), "metadata_invalid",
                "output.metadata." + std::string(64, 'k')},
        Refusal{"KeyNonAscii", with("/output/metadata", {{"t\xc3\xadtulo", "v"}}), "metadata_invalid",
                "output.metadata.t\xc3\xadtulo"},
        Refusal{"ValueNumber", with("/output/metadata", {{"n", 1}}), "metadata_invalid", "output.metadata.n"},
        Refusal{"ValueNull", with("/output/metadata", {{"n", nullptr}}), "metadata_invalid", "output.metadata.n"},
        Refusal{"ValueTooLong", with("/output/metadata", {{"v", std::string(1025, 'x')}}), "metadata_invalid",
                "output.metadata.v"},
        Refusal{"ValueNewline", with("/output/metadata", {{"v", "a\r\nX-Injected: 1"}}), "metadata_invalid",
                "output.metadata.v"},
        Refusal{"ValueNul", with("/output/metadata", {{"v", std::string("a\0b", 3)}}), "metadata_invalid",
                "output.metadata.v"}));

INSTANTIATE_TEST_SUITE_P(
    CallbackUrl, RefusalTest,
    ::testing::Values(
        Refusal{"NotString", with("/callback_url", 5), "callback_url_invalid", "callback_url"},
        Refusal{"Malformed", with("/callback_url", "https://hooks.exa mple.org/"), "callback_url_invalid",
                "callback_url"},
        Refusal{"NoHost", with("/callback_url", "https:///path"), "callback_url_invalid", "callback_url"},
        Refusal{"Ftp", with("/callback_url", "ftp://hooks.example.org/"), "callback_url_scheme_forbidden",
                "callback_url"},
        Refusal{"S3", with("/callback_url", "s3://bucket/key"), "callback_url_scheme_forbidden", "callback_url"},
        Refusal{"File", with("/callback_url", "file:///tmp/x"), "callback_url_scheme_forbidden", "callback_url"},
        Refusal{"Javascript", with("/callback_url", "javascript:alert(1)"), "callback_url_scheme_forbidden",
                "callback_url"},
        Refusal{"BarePath", with("/callback_url", "/hook"), "callback_url_scheme_forbidden", "callback_url"},
        Refusal{"Loopback", with("/callback_url", "http://127.0.0.1:8080/hook"), "callback_url_address_forbidden",
                "callback_url"},
        Refusal{"LoopbackDecimal", with("/callback_url", "http://2130706433/hook"), "callback_url_address_forbidden",
                "callback_url"},
        Refusal{"Metadata", with("/callback_url", "http://169.254.169.254/"), "callback_url_address_forbidden",
                "callback_url"},
        Refusal{"MappedV6", with("/callback_url", "http://[::ffff:10.0.0.1]/"), "callback_url_address_forbidden",
                "callback_url"}));

INSTANTIATE_TEST_SUITE_P(
    Priority, RefusalTest,
    ::testing::Values(Refusal{"TooHigh", with("/priority", 11), "priority_invalid", "priority"},
                      Refusal{"TooLow", with("/priority", -11), "priority_invalid", "priority"},
                      Refusal{"String", with("/priority", "1"), "priority_invalid", "priority"},
                      Refusal{"Fraction", with("/priority", 1.5), "priority_invalid", "priority"},
                      Refusal{"FloatInteger", with("/priority", 1.0), "priority_invalid", "priority"},
                      Refusal{"Boolean", with("/priority", true), "priority_invalid", "priority"},
                      Refusal{"HugeUnsigned", with("/priority", 18446744073709551615ULL), "priority_invalid",
                              "priority"},
                      Refusal{"HugeNegative", with("/priority", INT64_MIN), "priority_invalid", "priority"}));

TEST(ParseJobRequest, IntegersBeyond64BitsAreNotPriorities) {
  std::string body = valid_request().dump();
  body.replace(body.find("\"priority\":3"), 12, "\"priority\":123456789012345678901234567890");
  EXPECT_EQ(expect_error(body).code, "priority_invalid");
}

TEST(ParseJobRequest, AcceptsTheBoundaries) {
  EXPECT_EQ(expect_spec(with("/priority", 10)).priority, 10);
  EXPECT_EQ(expect_spec(with("/priority", -10)).priority, -10);
  EXPECT_EQ(expect_spec(with("/output/path", std::string(1024, 'a'))).output.path.size(), 1024u);
  EXPECT_EQ(expect_spec(with("/output/path", "a/..b/c..d/.../e.mp4")).output.path, "a/..b/c..d/.../e.mp4");
  json metadata = json::object();
  for (int i = 0; i < 32; ++i) metadata["key_" + std::to_string(i)] = std::string(1024, 'v');
  metadata[std::string(64, 'K')] = "Tab-free, UTF-8 is fine: caf\xc3\xa9";
  metadata.erase("key_0");
  EXPECT_EQ(expect_spec(with("/output/metadata", metadata)).output.metadata.size(), 32u);
  EXPECT_EQ(expect_spec(with("/output/type", "")).output.type, "");
}

TEST(ParseJobRequest, OutputTypeMustMatchThePreset) {
  json request = valid_request();
  request["preset"] = "hls_720p";
  request["output"]["type"] = "hls";
  EXPECT_EQ(expect_spec(request.dump()).output.type, "hls");
  request["output"]["type"] = "dash";
  EXPECT_EQ(expect_error(request.dump()).code, "output_type_mismatch");
  request["output"].erase("type");
  EXPECT_EQ(expect_spec(request.dump()).output.type, "");
}

TEST(ParseJobRequest, StorageMustBeServedBySomeWorker) {
  ValidationContext context = test_context();
  context.served_storage = {"s3"};
  EXPECT_EQ(expect_spec(valid_request().dump(), context).output.storage, "s3");
  const ApiError error = expect_error(with("/output/storage", "local"), context);
  EXPECT_EQ(error.code, "output_storage_unavailable");
  EXPECT_EQ(error.field, "output.storage");
  context.served_storage.clear();
  EXPECT_EQ(expect_error(valid_request().dump(), context).code, "output_storage_unavailable");
}

TEST(ParseJobRequest, PrivateInputsOnlyWhenAllowed) {
  ValidationContext context = test_context();
  context.input_policy.allow_private = true;
  EXPECT_EQ(expect_spec(with("/input_url", "http://127.0.0.1:9000/a.mp4"), context).input_url,
            "http://127.0.0.1:9000/a.mp4");
  // Callbacks follow their own policy.
  EXPECT_EQ(expect_error(with("/callback_url", "http://127.0.0.1/hook"), context).code,
            "callback_url_address_forbidden");
  context.callback_policy.allow_private = true;
  EXPECT_EQ(expect_spec(with("/callback_url", "http://127.0.0.1/hook"), context).callback_url, "http://127.0.0.1/hook");
}

TEST(ParseJobRequest, CallbackSchemesAreHttpOnlyWhateverThePolicyLists) {
  ValidationContext context = test_context();
  context.callback_policy.allowed_schemes = {"https", "http", "s3"};
  context.callback_policy.local_input_dir = "/tmp";
  EXPECT_EQ(expect_error(with("/callback_url", "s3://bucket/hook"), context).code, "callback_url_scheme_forbidden");
  EXPECT_EQ(expect_error(with("/callback_url", "file:///tmp/hook"), context).code, "callback_url_scheme_forbidden");
  context.callback_policy.allowed_schemes = {"https"};
  EXPECT_EQ(expect_error(with("/callback_url", "http://hooks.example.org/"), context).code,
            "callback_url_scheme_forbidden");
  EXPECT_EQ(expect_spec(with("/callback_url", "https://hooks.example.org/"), context).callback_url,
            "https://hooks.example.org/");
}

TEST(ParseJobRequest, FileInputsStayUnderLocalInputDir) {
  ValidationContext context = test_context();
  context.input_policy.local_input_dir = "/srv/inputs";
  EXPECT_EQ(expect_spec(with("/input_url", "file:///srv/inputs/clips/a.mp4"), context).input_url,
            "file:///srv/inputs/clips/a.mp4");
  for (const char* url : {"file:///srv/other/a.mp4", "file:///srv/inputs/../../etc/passwd",
                          "file:///srv/inputs/%2e%2e/secret.mp4", "file:///srv/inputs-evil/a.mp4"}) {
    const ApiError error = expect_error(with("/input_url", url), context);
    EXPECT_EQ(error.code, "input_url_path_forbidden") << url << ": " << error.message;
    EXPECT_EQ(error.field, "input_url");
  }
}

TEST(ParseJobRequest, ResolvesHostNamesWhenAsked) {
  ValidationContext context = test_context();
  context.resolve_hosts = true;
  json base = valid_request();
  base["input_url"] = "https://8.8.8.8/a.mp4";  // literal: no lookup needed
  base.erase("callback_url");
  // Resolved through /etc/hosts to loopback (or refused by name): either way forbidden.
  EXPECT_EQ(expect_error(with("/input_url", "http://localhost/a.mp4"), context).code, "input_url_address_forbidden");
  base["callback_url"] = "http://localhost/hook";
  EXPECT_EQ(expect_error(base.dump(), context).code, "callback_url_address_forbidden");
  // A literal public address needs no lookup and passes (there is no DNS here:
  // the example callback's name would not resolve, so it is dropped).
  json request = valid_request();
  request.erase("callback_url");
  request["input_url"] = "https://8.8.8.8/a.mp4";
  EXPECT_EQ(expect_spec(request.dump(), context).input_url, "https://8.8.8.8/a.mp4");
}

TEST(ParseJobRequest, DeepNestingIsRefusedWithoutRecursing) {
  // 100,000 levels would overflow the stack of a recursive parser or destructor.
  const std::string deep =
      R"({"input_url": "https://a.example/x", "extra": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  const ApiError error = expect_error(deep);
  EXPECT_EQ(error.code, "invalid_json");
  EXPECT_NE(error.message.find("nesting"), std::string::npos) << error.message;

  const std::string deep_objects = R"({"extra": )" + [] {
    std::string s;
    for (int i = 0; i < 20000; ++i) s += R"({"a":)";
    s += "1";
    s += std::string(20000, '}');
    return s;
  }() + "}";
  EXPECT_EQ(expect_error(deep_objects).code, "invalid_json");
}

TEST(ParseJobRequest, NestingUpToTheLimitIsFine) {
  json request = valid_request();
  // The request object is level 1, so 63 more levels make 64.
  request["extra"] = json::parse(std::string(63, '[') + std::string(63, ']'));
  EXPECT_EQ(expect_spec(request.dump()).preset, "720p_h264");
  request["extra"] = json::parse(std::string(64, '[') + std::string(64, ']'));
  EXPECT_EQ(expect_error(request.dump()).code, "invalid_json");
}

TEST(ParseJobRequest, DuplicateKeysSayWhy) {
  const ApiError error = expect_error(R"({"priority": 1, "priority": 2})");
  EXPECT_EQ(error.code, "invalid_json");
  EXPECT_NE(error.message.find("duplicate key \"priority\""), std::string::npos) << error.message;
}

TEST(ParseJobRequest, InvalidJsonSaysWhere) {
  const ApiError error = expect_error(R"({"preset": })");
  EXPECT_NE(error.message.find("byte"), std::string::npos) << error.message;
}

TEST(ParseJobRequest, ChecksFieldsInDocumentOrder) {
  // Everything is wrong: the first rule of §3.1 (input_url) is reported.
  const ApiError error = expect_error(R"({"preset": "nope", "output": 1, "priority": 99})");
  EXPECT_EQ(error.code, "input_url_required");
}

TEST(ParseJobRequest, WithoutCatalogueEveryPresetIsUnknown) {
  ValidationContext context = test_context();
  context.find_preset = nullptr;
  EXPECT_EQ(expect_error(valid_request().dump(), context).code, "preset_unknown");
}

TEST(ErrorBody, HasTheSpecShape) {
  const json body = error_body(ApiError{400, "output_path_invalid", "bad path", "output.path"});
  EXPECT_EQ(body, json::parse(R"({"error": "bad path", "code": "output_path_invalid", "field": "output.path"})"));
  const json no_field = error_body(ApiError{404, "job_not_found", "job not found", ""});
  EXPECT_EQ(no_field, json::parse(R"({"error": "job not found", "code": "job_not_found"})"));
}

TEST(ErrorBody, AlwaysDumpsEvenWithInvalidUtf8) {
  const json body = error_body(ApiError{400, "x", "bad \xff\xfe text", "output.metadata.\xc3"});
  std::string text;
  EXPECT_NO_THROW(text = body.dump());
  EXPECT_NE(text.find("bad "), std::string::npos);
}

TEST(ErrorBody, RefusalsOfClientTextDumpCleanly) {
  // A long non-ASCII key is cut for the field path without splitting a character.
  std::string key;
  for (int i = 0; i < 40; ++i) key += "\xc3\xa9";  // 80 bytes
  const ApiError error = expect_error(with("/output/metadata", {{key, "v"}}));
  EXPECT_EQ(error.code, "metadata_invalid");
  EXPECT_NO_THROW((void)error_body(error).dump());
  EXPECT_LE(error.field.size(), std::string("output.metadata.").size() + 64);
}

// --- list query -------------------------------------------------------------

TEST(ParseListQuery, Defaults) {
  auto result = parse_list_query({});
  ASSERT_TRUE(std::holds_alternative<ListParams>(result));
  const auto& params = std::get<ListParams>(result);
  EXPECT_FALSE(params.status.has_value());
  EXPECT_EQ(params.limit, 50);
  EXPECT_EQ(params.cursor, "");
}

TEST(ParseListQuery, ReadsEveryParameter) {
  auto result = parse_list_query({{"status", "completed"}, {"limit", "200"}, {"cursor", "abc_123"}, {"x", "y"}});
  ASSERT_TRUE(std::holds_alternative<ListParams>(result));
  const auto& params = std::get<ListParams>(result);
  EXPECT_EQ(params.status, model::JobStatus::kCompleted);
  EXPECT_EQ(params.limit, 200);
  EXPECT_EQ(params.cursor, "abc_123");
}

TEST(ParseListQuery, EmptyValuesMeanAbsent) {
  auto result = parse_list_query({{"status", ""}, {"limit", ""}, {"cursor", ""}});
  ASSERT_TRUE(std::holds_alternative<ListParams>(result));
  EXPECT_FALSE(std::get<ListParams>(result).status.has_value());
  EXPECT_EQ(std::get<ListParams>(result).limit, 50);
}

TEST(ParseListQuery, RefusesBadValues) {
  for (const char* status : {"done", "COMPLETED", "queued,failed"}) {
    auto result = parse_list_query({{"status", status}});
    ASSERT_TRUE(std::holds_alternative<ApiError>(result)) << status;
    EXPECT_EQ(std::get<ApiError>(result).code, "status_invalid");
    EXPECT_EQ(std::get<ApiError>(result).field, "status");
  }
  for (const char* limit : {"0", "201", "-1", "abc", "1.5", "10x", " 5", "+5", "99999999999999999999"}) {
    auto result = parse_list_query({{"limit", limit}});
    ASSERT_TRUE(std::holds_alternative<ApiError>(result)) << limit;
    EXPECT_EQ(std::get<ApiError>(result).code, "limit_invalid") << limit;
    EXPECT_EQ(std::get<ApiError>(result).http_status, 400);
  }
}

}  // namespace
}  // namespace flux::controlplane::api
