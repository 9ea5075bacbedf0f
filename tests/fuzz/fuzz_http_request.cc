// libFuzzer harness: HTTP/1.1 requests as recschedd's sessions read them
// (daemon/http_server.cc): Beast's request_parser<string_body> with the server's header
// limit (64 KiB) and a 1 MiB body limit, fed the bytes in pieces whose sizes come from the
// input's first byte (a client may send a request in any number of reads), then turned
// into an HttpRequest the way Session::on_read does. An input may hold several pipelined
// requests; each is parsed in turn until one fails. Beast's own assertions are on.
#include <algorithm>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "daemon/http_server.h"
#include "tests/fuzz/fuzz_common.h"

namespace http = boost::beast::http;

// BOOST_ENABLE_ASSERT_HANDLER (set for this harness in CMakeLists.txt) routes Boost's
// assertions here. Boost 1.81's Beast asserts `n >= 5` in parse_chunk_header when the last
// chunk's closing CRLF arrives a byte at a time ("0\r\n", then "\r", then "\n"): a false
// assertion (the parser asks for more bytes and then finishes correctly; release builds
// compile it out), fixed upstream in boostorg/beast#2861 (Boost 1.86). This harness found
// it. That one is let through; every other Boost assertion aborts, as assert() would.
namespace boost {

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  if (std::string_view(expr) == "n >= 5" &&
      std::string_view(file).ends_with("beast/http/impl/basic_parser.ipp")) {
    return;
  }
  std::fprintf(stderr, "%s:%ld: %s: Boost assertion '%s' failed\n", file, line, function, expr);
  std::abort();
}

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file,
                          long line) {
  std::fprintf(stderr, "%s:%ld: %s: Boost assertion '%s' failed: %s\n", file, line, function, expr,
               msg);
  std::abort();
}

}  // namespace boost

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = size_t{data[0]} + 1;  // bytes per read: 1 .. 256
  std::string_view in = recsched::fuzz::as_text(data + 1, size - 1);
  for (int requests = 0; requests < 8 && !in.empty(); ++requests) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(1u << 20);
    parser.eager(true);
    boost::beast::error_code ec;
    size_t offered = 0;  // bytes of `in` handed to the parser so far
    size_t used = 0;     // bytes it consumed
    while (!parser.is_done()) {
      // As a flat_buffer does: the unconsumed bytes plus up to `step` new ones.
      offered = std::min(in.size(), std::max(offered, used) + step);
      const std::string_view window = in.substr(used, offered - used);
      const size_t n = parser.put(boost::asio::buffer(window.data(), window.size()), ec);
      FUZZ_CHECK(n <= window.size());
      used += n;
      if (ec == http::error::need_more) ec = {};
      if (ec) break;
      if (n == 0 && offered == in.size()) {  // the client stopped sending: end of stream
        parser.put_eof(ec);
        break;
      }
    }
    if (ec || !parser.is_done()) return 0;
    auto& msg = parser.get();
    recsched::daemon::HttpRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    for (const auto& field : msg) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      req.headers[name] = std::string(field.value());
    }
    req.body = std::move(msg.body());
    FUZZ_CHECK(req.body.size() <= (1u << 20));
    (void)msg.keep_alive();
    in.remove_prefix(used);
  }
  return 0;
}
