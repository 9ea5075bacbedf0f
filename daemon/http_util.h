// How recschedd answers in JSON, and the one mapping of Status codes to HTTP statuses.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "daemon/http_server.h"

namespace recsched::daemon {

/// `body` as the response's JSON. Strings echoed from a request (a path, an id) are escaped
/// by the JSON writer; bytes that are not UTF-8 become U+FFFD rather than failing the answer.
HttpResponse json_response(unsigned status, const nlohmann::json& body);
/// {"error": message} with `status`.
HttpResponse error_response(unsigned status, const std::string& message);
/// The HTTP status for a Status code: only daemon/ maps one to the other.
/// kOk 200, kInvalidArgument 400, kNotFound 404, kUnavailable 503, kDeadlineExceeded 504,
/// kInternal 500.
unsigned http_status(StatusCode code);

}  // namespace recsched::daemon
