// What every mmrec-serve endpoint shares: JSON error bodies in the OpenAI
// shape ({"error": {"message", "type", "param", "code"}}), a JSON body for
// the statuses cpp-httplib answers itself (404, 413, ...), and a 500 with a
// message for an exception in a handler.
#pragma once
#include <string>

#include <httplib.h>

namespace mmrec::serve {

void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& param = "");
void reply_json(httplib::Response& res, const std::string& json_text);
void install_error_handlers(httplib::Server& server);

}  // namespace mmrec::serve
