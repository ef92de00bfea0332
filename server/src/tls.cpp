#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>

namespace kv::server::detail {

namespace {

// The reason of the last OpenSSL error on this thread (and clears the queue).
std::string openssl_reason() {
  std::string text;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    text = buf;  // keep the last, most specific
  }
  return text.empty() ? std::string("unknown error") : text;
}

}  // namespace

std::optional<asio::ssl::context> make_server_tls_context(const std::string& cert,
                                                          const std::string& key,
                                                          const std::string& ca,
                                                          bool require_client_cert,
                                                          const char* what, std::string& error) {
  asio::ssl::context ctx(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx.native_handle();
  ERR_clear_error();
  // TLS 1.2 is the floor: the options below and the minimum version both say so, so a
  // library whose default policy allows older versions still refuses them.
  ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                  asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                  asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(
      native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    error = std::string("TLS cipher list rejected: ") + openssl_reason();
    return std::nullopt;
  }
  if (SSL_CTX_use_certificate_chain_file(native, cert.c_str()) != 1) {
    error = std::string("cannot load --") + what + "-cert " + cert + ": " + openssl_reason();
    return std::nullopt;
  }
  if (SSL_CTX_use_PrivateKey_file(native, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = std::string("cannot load --") + what + "-key " + key + ": " + openssl_reason();
    return std::nullopt;
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    error = std::string("--") + what + "-key " + key + " does not match --" + what + "-cert " +
            cert + ": " + openssl_reason();
    return std::nullopt;
  }
  if (!ca.empty()) {
    if (SSL_CTX_load_verify_locations(native, ca.c_str(), nullptr) != 1) {
      error = std::string("cannot load --") + what + "-ca " + ca + ": " + openssl_reason();
      return std::nullopt;
    }
    // Tell clients which CAs we accept, so that they pick the right certificate.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(native, names);
    int mode = SSL_VERIFY_PEER;
    if (require_client_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(native, mode, nullptr);
    // Session resumption with client verification needs a context id.
    static constexpr unsigned char kSessionContext[] = "kovan-kv";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  } else {
    SSL_CTX_set_verify(native, SSL_VERIFY_NONE, nullptr);
  }
  return std::optional<asio::ssl::context>(std::move(ctx));
}

std::string verified_peer_common_name(SSL* ssl) {
  std::unique_ptr<X509, decltype(&X509_free)> cert(SSL_get1_peer_certificate(ssl), X509_free);
  if (!cert || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return {};
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  // A CN with an embedded NUL could name a different user than it displays as: refuse it.
  if (cn.find('\0') != std::string::npos) return {};
  return cn;
}

std::string describe_tls_session(SSL* ssl) {
  return std::string(SSL_get_version(ssl)) + " " + SSL_get_cipher_name(ssl);
}

}  // namespace kv::server::detail
