// TLS for the client and metrics listeners (docs/SECURITY.md, "TLS"): building the OpenSSL
// context from the PEM files given on the command line, and reading the verified client
// certificate's common name.
//
// Thread safety: a context is configured once, before the listeners start, and is then
// only read (OpenSSL makes SSL_new on a shared SSL_CTX safe from any thread).
#pragma once

#include <asio/ssl.hpp>

#include <optional>
#include <string>

namespace kv::server::detail {

// TLS 1.2 cipher suites allowed: ECDHE key exchange (forward secrecy) with AEAD ciphers
// only (AES-GCM, ChaCha20-Poly1305). TLS 1.3 uses OpenSSL's default suites, all of which
// are AEAD with ephemeral key exchange. TLS 1.0/1.1, SSLv3, RSA key exchange, CBC, RC4 and
// 3DES are never negotiated.
inline constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// A server context for `cert` / `key` (PEM), TLS 1.2 or later. With `ca`, a client
// certificate is asked for and, when one is presented, verified against `ca`; with
// `require_client_cert` too, a client without one fails the handshake. On failure, empty
// and `error` says which file and why (OpenSSL's reason).
[[nodiscard]] std::optional<asio::ssl::context> make_server_tls_context(
    const std::string& cert, const std::string& key, const std::string& ca,
    bool require_client_cert, const char* what, std::string& error);

// The subject common name of the peer's certificate when it presented one and it was
// verified; empty otherwise.
[[nodiscard]] std::string verified_peer_common_name(SSL* ssl);

// "TLSv1.3 TLS_AES_256_GCM_SHA384" for the log.
[[nodiscard]] std::string describe_tls_session(SSL* ssl);

}  // namespace kv::server::detail
