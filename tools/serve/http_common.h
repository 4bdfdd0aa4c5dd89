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
// Binds host:port (0: any free port) and returns the port, or -1. The socket
// gets SO_REUSEADDR only (cpp-httplib's default also sets SO_REUSEPORT, with
// which a second server binds a port already in use and the two share its
// clients) and a listen backlog of SOMAXCONN: Debian's compiled cpp-httplib
// listens with 5, and more clients connecting at once than that had their
// connections dropped.
int bind_server(httplib::Server& server, const std::string& host, int port);

}  // namespace mmrec::serve
