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
// SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, with which
// a second server binds a port already in use and the two share its clients.
void use_exclusive_port(httplib::Server& server);

}  // namespace mmrec::serve
