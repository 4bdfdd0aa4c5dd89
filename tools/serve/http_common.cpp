#include "serve/http_common.h"

#include <sys/socket.h>

#include <exception>
#include <memory>
#include <nlohmann/json.hpp>

namespace mmrec::serve {

namespace {
const char* error_type(int status) {
  if (status == 503) return "server_busy";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}
}  // namespace

void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& param) {
  nlohmann::json e = {{"message", message}, {"type", error_type(status)}, {"code", status}};
  e["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
  res.status = status;
  res.set_content(nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

void reply_json(httplib::Response& res, const std::string& json_text) { res.set_content(json_text, "application/json"); }

void install_error_handlers(httplib::Server& server) {
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int status = res.status;
    std::string msg = "HTTP status " + std::to_string(status);
    if (status == 400) msg = "malformed HTTP request";
    if (status == 404) msg = "no such endpoint: " + req.method + " " + req.path;
    if (status == 413) msg = "the request body is larger than the server's limit";
    if (status == 414) msg = "the request URI is too long";
    reply_error(res, status, msg);
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    reply_error(res, 500, msg);
  });
}

int bind_server(httplib::Server& server, const std::string& host, int port) {
  auto fd = std::make_shared<socket_t>(INVALID_SOCKET);
  server.set_socket_options([fd](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    *fd = sock;
  });
  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  // listen() again on a listening socket sets its backlog anew.
  if (bound >= 0 && *fd != INVALID_SOCKET) ::listen(*fd, SOMAXCONN);
  return bound;
}

}  // namespace mmrec::serve
