// recschedctl's argument parsing: global options anywhere, the command's own options,
// key=value policy parameters, --url. Table-driven, no daemon.
#include "cli/args.h"

#include <doctest/doctest.h>

namespace recsched::cli {
namespace {

using nlohmann::json;

TEST_CASE("parse_invocation takes global options before and after the command") {
  auto inv = parse_invocation({"--json", "placements", "--limit", "5", "--socket", "/tmp/s"}, "");
  REQUIRE(inv.has_value());
  CHECK(inv->command == "placements");
  CHECK(inv->args == std::vector<std::string>{"--limit", "5"});
  CHECK(inv->options.format == Format::kJson);
  CHECK(inv->options.endpoint.kind == Endpoint::Kind::kUnixSocket);
  CHECK(inv->options.endpoint.socket_path == "/tmp/s");
}

TEST_CASE("parse_invocation defaults to the system socket and a table") {
  auto inv = parse_invocation({"status"}, "ignored-without-url");
  REQUIRE(inv.has_value());
  CHECK(inv->options.endpoint.socket_path == "/run/recsched/recschedd.sock");
  CHECK(inv->options.endpoint.token.empty());
  CHECK(inv->options.format == Format::kTable);
  CHECK(inv->options.timeout == std::chrono::milliseconds(10000));
}

TEST_CASE("--url takes the token from --token, else from RECSCHED_TOKEN") {
  auto from_env = parse_invocation({"--url", "http://127.0.0.1:8000", "stats"}, "envtok");
  REQUIRE(from_env.has_value());
  CHECK(from_env->options.endpoint.kind == Endpoint::Kind::kTcp);
  CHECK(from_env->options.endpoint.token == "envtok");
  auto flag = parse_invocation({"--url=http://h:1", "--token=t1", "stats"}, "envtok");
  REQUIRE(flag.has_value());
  CHECK(flag->options.endpoint.token == "t1");
}

TEST_CASE("parse_invocation refuses bad global options with one line naming them") {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--socket"}, "--socket needs a value"},
      {{"--socket", "/a", "--url", "http://h:1", "status"}, "not both"},
      {{"--token", "t", "status"}, "--token goes with --url"},
      {{"--url", "https://h:1", "status"}, "plain HTTP"},
      {{"--url", "h:1", "status"}, "expected http://HOST:PORT"},
      {{"--timeout", "0", "status"}, "--timeout"},
      {{"--timeout", "abc", "status"}, "--timeout"},
      {{"--json=yes", "status"}, "--json takes no value"},
      {{"--frobnicate", "status"}, "unknown option '--frobnicate'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.says);
    auto inv = parse_invocation(c.args, "");
    REQUIRE_FALSE(inv.has_value());
    CHECK(inv.status().code() == StatusCode::kInvalidArgument);
    CHECK(inv.status().message().find(c.says) != std::string::npos);
    CHECK(inv.status().message().find('\n') == std::string::npos);
  }
}

TEST_CASE("\"--\" ends the global options") {
  auto inv = parse_invocation({"policy", "--", "set", "--json"}, "");
  REQUIRE(inv.has_value());
  CHECK(inv->options.format == Format::kTable);
  CHECK(inv->args == std::vector<std::string>{"--", "set", "--json"});
}

TEST_CASE("parse_url reads host, port and IPv6 brackets") {
  struct Case {
    std::string url;
    std::string host;
    uint16_t port;
  };
  for (const Case& c : std::vector<Case>{{"http://127.0.0.1:8000", "127.0.0.1", 8000},
                                         {"http://localhost:8000/", "localhost", 8000},
                                         {"http://[::1]:9", "::1", 9},
                                         {"http://example.org", "example.org", 80}}) {
    CAPTURE(c.url);
    auto ep = parse_url(c.url);
    REQUIRE_MESSAGE(ep.has_value(), ep.status().to_string());
    CHECK(ep->host == c.host);
    CHECK(ep->port == c.port);
  }
  CHECK(parse_url("http://[::1]:9")->describe() == "http://[::1]:9");
  for (const char* bad : {"http://", "http://h:", "http://h:0", "http://h:65536", "http://h:x",
                          "http://::1:80", "http://h:1/v1", "http://[::1"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_url(bad).has_value());
  }
}

TEST_CASE("parse_command_args splits values, flags and positionals") {
  static constexpr std::string_view kValues[] = {"--limit"};
  static constexpr std::string_view kFlags[] = {"--follow"};
  auto a = parse_command_args({"--limit=3", "--follow", "x"}, kValues, kFlags);
  REQUIRE(a.has_value());
  CHECK(a->values.at("--limit") == "3");
  CHECK(a->flags.count("--follow") == 1);
  CHECK(a->positional == std::vector<std::string>{"x"});
  CHECK(parse_command_args({"--limit"}, kValues, kFlags).status().message() ==
        "--limit needs a value");
  CHECK(parse_command_args({"--follow=1"}, kValues, kFlags).status().message() ==
        "--follow takes no value");
  CHECK(parse_command_args({"--nope"}, kValues, kFlags).status().message() ==
        "unknown option '--nope'");
  auto dashed = parse_command_args({"--", "--limit"}, kValues, kFlags);
  REQUIRE(dashed.has_value());
  CHECK(dashed->positional == std::vector<std::string>{"--limit"});
}

TEST_CASE("parse_params takes JSON values as JSON and anything else as a string") {
  const std::vector<std::string> kv = {"a=5",     "b=0.5",       "c=true", "d=cpu0", "e=\"7\"",
                                       "f=[1,2]", "g={\"x\":1}", "h=",     "i=null", "j=a=b"};
  auto p = parse_params(kv);
  REQUIRE(p.has_value());
  CHECK(*p == json{{"a", 5},
                   {"b", 0.5},
                   {"c", true},
                   {"d", "cpu0"},
                   {"e", "7"},
                   {"f", {1, 2}},
                   {"g", {{"x", 1}}},
                   {"h", ""},
                   {"i", nullptr},
                   {"j", "a=b"}});
  CHECK(parse_params(std::vector<std::string>{"novalue"}).status().message() ==
        "parameter 'novalue' is not key=value");
  CHECK(parse_params(std::vector<std::string>{"=1"}).status().message() ==
        "parameter '=1' has an empty key");
  CHECK(parse_params(std::vector<std::string>{"a=1", "a=2"}).status().message() ==
        "parameter 'a' is given twice");
}

TEST_CASE("parse_count checks its range") {
  CHECK(*parse_count("20", "--limit", 0, 100) == 20);
  CHECK_FALSE(parse_count("-1", "--limit", 0, 100).has_value());
  CHECK_FALSE(parse_count("101", "--limit", 0, 100).has_value());
  CHECK(parse_count("x", "--limit", 0, 100).status().message() ==
        "--limit must be a whole number in 0-100, not 'x'");
}

}  // namespace
}  // namespace recsched::cli
