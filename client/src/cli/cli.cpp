#include "cli.hpp"

#include "proto/crc32c.hpp"

#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <istream>
#include <limits>
#include <ostream>
#include <sstream>
#include <thread>
#include <vector>

namespace kv::cli {

namespace {

using client::Code;
using client::KeyValue;
using client::Status;

constexpr std::string_view kHelp =
    "Commands (words with blanks in quotes: put k \"a value\"):\n"
    "  get KEY                    read a key\n"
    "  put KEY VALUE [--lease ID | --ttl SECONDS]\n"
    "                             write a key (attached to a lease, or to a new\n"
    "                             lease of SECONDS)\n"
    "  del KEY                    delete a key\n"
    "  range START [END] [--limit N] [--prefix]\n"
    "                             keys in [START, END) (no END: no upper bound),\n"
    "                             or with --prefix the keys starting with START\n"
    "  begin [serializable|snapshot]\n"
    "                             start a transaction: get/put/del/range then run in it\n"
    "  commit                     commit the open transaction\n"
    "  abort                      abort the open transaction\n"
    "  stats                      server counters\n"
    "  ping                       round trip to the server\n"
    "  checkpoint                 write a checkpoint now (servers with --data-dir)\n"
    "  snapshot save FILE         save a consistent snapshot of the store into FILE\n"
    "  lease grant TTL            grant a lease of TTL seconds\n"
    "  lease keepalive ID --once  renew a lease once\n"
    "  lease revoke ID            revoke a lease (deletes its keys)\n"
    "  lease ttl ID [--keys]      a lease's remaining TTL (and its keys)\n"
    "  help                       this text\n"
    "  quit                       leave (an open transaction is aborted)\n";

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
  std::string out;
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(in[k]); };
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = byte(i) << 16;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates, and code points past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// `"name":` followed by the bytes as a JSON string, or `"name_base64":"..."` when they are
// not UTF-8.
void json_bytes_field(std::string& out, std::string_view name, std::string_view bytes) {
  std::string s;
  if (json_string(bytes, s)) {
    out += '"';
    out += name;
    out += "\":";
    out += s;
  } else {
    out += '"';
    out += name;
    out += "_base64\":\"";
    out += base64(bytes);
    out += '"';
  }
}

std::string json_kv(const KeyValue& kv, bool with_value = true) {
  std::string out = "{";
  json_bytes_field(out, "key", kv.key);
  if (with_value) {
    out += ',';
    json_bytes_field(out, "value", kv.value);
  }
  out += ",\"create_revision\":" + std::to_string(kv.create_revision);
  out += ",\"mod_revision\":" + std::to_string(kv.mod_revision);
  out += ",\"version\":" + std::to_string(kv.version);
  if (kv.lease != 0) out += ",\"lease\":" + std::to_string(kv.lease);
  out += "}";
  return out;
}

// A decimal lease TTL in seconds: 1 to 2^63 - 1.
bool parse_ttl(std::string_view text, std::int64_t& out) {
  std::uint64_t v = 0;
  if (!parse_u64(text, v) || v == 0 || v > static_cast<std::uint64_t>(INT64_MAX)) return false;
  out = static_cast<std::int64_t>(v);
  return true;
}

// A lease id: 1 to 2^64 - 1.
bool parse_lease_id(std::string_view text, std::uint64_t& out) {
  return parse_u64(text, out) && out != 0;
}

std::string json_error(const Status& s) {
  std::string msg;
  if (!json_string(s.message(), msg)) msg = "\"\"";
  return std::string("{\"ok\":false,\"error\":\"") + std::string(client::code_name(s.code())) +
         "\",\"message\":" + msg + (s.outcome_unknown() ? ",\"outcome_unknown\":true" : "") + "}";
}

int code_exit(const Status& s) {
  if (s.ok()) return kExitOk;
  if (s.is_not_found()) return kExitNotFound;
  return kExitError;
}

int lease_exit(const Status& s) {
  return s.code() == Code::kLeaseNotFound ? kExitNotFound : code_exit(s);
}

int report_error(const Status& s, bool json, std::ostream& out, std::ostream& err) {
  if (json) {
    out << json_error(s) << '\n';
  } else {
    // Server messages may quote a key (a conflict names it): escaped like keys are.
    err << "(error) " << escape_bytes(s.to_string()) << '\n';
  }
  return code_exit(s);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view shell_help() { return kHelp; }

bool save_snapshot_file(client::Client& client, const std::string& path, client::SnapshotInfo& info,
                        std::string& error, client::Code& code) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  const fs::path temp = fs::path(path + ".tmp-" + std::to_string(::getpid()));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  code = Code::kInvalidArgument;
  if (fd < 0) {
    error = "cannot create " + temp.string() + ": " + std::strerror(errno);
    return false;
  }
  std::string write_error;
  auto fail = [&](std::string why, Code c) {
    if (fd >= 0) ::close(fd);
    std::error_code ignored;
    fs::remove(temp, ignored);
    error = std::move(why);
    code = c;
    return false;
  };
  auto r = client.save_snapshot([&](std::string_view chunk) {
    while (!chunk.empty()) {
      const ssize_t n = ::write(fd, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        write_error = "cannot write " + temp.string() + ": " + std::strerror(errno);
        return false;
      }
      chunk.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  });
  if (!write_error.empty()) return fail(write_error, Code::kInvalidArgument);
  if (!r.ok()) return fail(r.status().message(), r.code());
  if (::fsync(fd) != 0) {
    return fail("cannot fsync " + temp.string() + ": " + std::strerror(errno),
                Code::kInvalidArgument);
  }
  // Read the file back: what reached the disk is what the server sent.
  {
    std::uint32_t crc = 0;
    std::uint64_t bytes = 0;
    std::vector<char> buf(1 << 20);
    const int rfd = ::open(temp.c_str(), O_RDONLY | O_CLOEXEC);
    if (rfd < 0) return fail("cannot read back " + temp.string(), Code::kInvalidArgument);
    for (;;) {
      const ssize_t n = ::read(rfd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      crc = proto::crc32c_extend(crc, std::string_view(buf.data(), static_cast<std::size_t>(n)));
      bytes += static_cast<std::uint64_t>(n);
    }
    ::close(rfd);
    if (bytes != r->bytes || crc != r->crc32c) {
      return fail("the file " + temp.string() + " does not read back as written (" +
                      std::to_string(bytes) + " bytes)",
                  Code::kInternal);
    }
  }
  if (::close(fd) != 0) {
    const int e = errno;
    std::error_code ignored;
    fs::remove(temp, ignored);
    error = "cannot close " + temp.string() + ": " + std::strerror(e);
    return false;
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    const int e = errno;
    std::error_code ignored;
    fs::remove(temp, ignored);
    error = "cannot rename " + temp.string() + " to " + path + ": " + std::strerror(e);
    return false;
  }
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  info = r.value();
  code = Code::kOk;
  return true;
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
  if (text.empty()) return false;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (v > (kMax - digit) / 10) return false;  // v * 10 + digit would pass 2^64 - 1
    v = v * 10 + digit;
  }
  out = v;
  return true;
}

std::string escape_bytes(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  auto hex = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 15];
  };
  std::size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c < 0x80) {
      switch (c) {
        case '\\':
          out += "\\\\";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        default:
          if (c < 0x20 || c == 0x7F) {
            hex(c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A multi-byte UTF-8 sequence is kept when it is valid and not a C1 control
    // (U+0080..U+009F, which some terminals obey); otherwise its first byte is escaped
    // and the bytes after it are looked at again.
    std::size_t n = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 2;
    } else if ((c & 0xF0) == 0xE0) {
      n = 3;
    } else if ((c & 0xF8) == 0xF0) {
      n = 4;
    }
    const std::string_view seq = n != 0 && i + n <= bytes.size() ? bytes.substr(i, n) : "";
    const bool c1 = seq.size() == 2 && c == 0xC2 && static_cast<unsigned char>(seq[1]) < 0xA0;
    if (!seq.empty() && !c1 && valid_utf8(seq)) {
      out += seq;
      i += n;
    } else {
      hex(c);
      ++i;
    }
  }
  return out;
}

bool json_string(std::string_view bytes, std::string& out) {
  if (!valid_utf8(bytes)) return false;
  std::string s = "\"";
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        s += "\\\"";
        break;
      case '\\':
        s += "\\\\";
        break;
      case '\n':
        s += "\\n";
        break;
      case '\r':
        s += "\\r";
        break;
      case '\t':
        s += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          s += buf;
        } else {
          s += ch;
        }
    }
  }
  s += '"';
  out = std::move(s);
  return true;
}

bool tokenize(std::string_view line, std::vector<std::string>& words, std::string& error) {
  words.clear();
  std::string word;
  bool in_word = false;
  std::size_t i = 0;
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (i < line.size()) {
    const char c = line[i];
    if (blank(c)) {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
    } else if (c == '\'') {
      in_word = true;
      const auto close = line.find('\'', i + 1);
      if (close == std::string_view::npos) {
        error = "unterminated single quote";
        return false;
      }
      word.append(line.substr(i + 1, close - i - 1));
      i = close + 1;
    } else if (c == '"') {
      in_word = true;
      ++i;
      bool closed = false;
      while (i < line.size()) {
        const char d = line[i];
        if (d == '"') {
          closed = true;
          ++i;
          break;
        }
        if (d == '\\' && i + 1 < line.size()) {
          const char e = line[i + 1];
          i += 2;
          switch (e) {
            case 'n':
              word += '\n';
              break;
            case 't':
              word += '\t';
              break;
            case 'r':
              word += '\r';
              break;
            case '0':
              word += '\0';
              break;
            case 'x': {
              const int hi = i < line.size() ? hex_digit(line[i]) : -1;
              const int lo = i + 1 < line.size() ? hex_digit(line[i + 1]) : -1;
              if (hi < 0 || lo < 0) {
                error = "\\x needs two hex digits";
                return false;
              }
              word += static_cast<char>(hi * 16 + lo);
              i += 2;
              break;
            }
            default:
              word += e;  // \" \\ and any other character stand for themselves
          }
          continue;
        }
        word += d;
        ++i;
      }
      if (!closed) {
        error = "unterminated double quote";
        return false;
      }
    } else if (c == '\\') {
      if (i + 1 >= line.size()) {
        error = "dangling backslash";
        return false;
      }
      in_word = true;
      word += line[i + 1];
      i += 2;
    } else {
      in_word = true;
      word += c;
      ++i;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return true;
}

bool parse_shell_command(const std::vector<std::string>& words, Command& out, std::string& error) {
  out = Command{};
  if (words.empty()) return true;
  const std::string& name = words[0];
  const std::size_t argc = words.size() - 1;
  auto want = [&](std::size_t n, std::string_view usage) {
    if (argc != n) {
      error = "usage: " + std::string(usage);
      return false;
    }
    return true;
  };
  using K = Command::Kind;
  if (name == "get") {
    out.kind = K::kGet;
    if (!want(1, "get KEY")) return false;
    out.key = words[1];
  } else if (name == "put" || name == "set") {
    out.kind = K::kPut;
    constexpr std::string_view kUsage = "put KEY VALUE [--lease ID | --ttl SECONDS]";
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w == "--lease" || w == "--ttl") {
        const bool ok =
            i + 1 < words.size() && (w == "--lease" ? parse_lease_id(words[i + 1], out.lease)
                                                    : parse_ttl(words[i + 1], out.ttl));
        if (!ok) {
          error = w == "--lease" ? "--lease needs a lease id (1 to 18446744073709551615)"
                                 : "--ttl needs a number of seconds (at least 1)";
          return false;
        }
        ++i;
      } else {
        positional.push_back(w);
      }
    }
    if (positional.size() != 2 || (out.lease != 0 && out.ttl != 0)) {
      error = "usage: " + std::string(kUsage);
      return false;
    }
    out.key = positional[0];
    out.value = positional[1];
  } else if (name == "lease") {
    constexpr std::string_view kUsage =
        "lease grant TTL | lease keepalive ID --once | lease revoke ID | lease ttl ID [--keys]";
    const std::string sub = argc >= 1 ? words[1] : "";
    std::vector<std::string> rest(words.begin() + (argc >= 1 ? 2 : 1), words.end());
    auto flag = [&](std::string_view f) {
      const auto it = std::find(rest.begin(), rest.end(), f);
      if (it == rest.end()) return false;
      rest.erase(it);
      return true;
    };
    bool ok = false;
    if (sub == "grant") {
      out.kind = K::kLeaseGrant;
      ok = rest.size() == 1 && parse_ttl(rest[0], out.ttl);
    } else if (sub == "keepalive") {
      out.kind = K::kLeaseKeepAlive;
      out.once = flag("--once");
      ok = out.once && rest.size() == 1 && parse_lease_id(rest[0], out.lease);
    } else if (sub == "revoke") {
      out.kind = K::kLeaseRevoke;
      ok = rest.size() == 1 && parse_lease_id(rest[0], out.lease);
    } else if (sub == "ttl" || sub == "timetolive") {
      out.kind = K::kLeaseTtl;
      out.keys = flag("--keys");
      ok = rest.size() == 1 && parse_lease_id(rest[0], out.lease);
    }
    if (!ok) {
      error = "usage: " + std::string(kUsage) +
              (sub == "keepalive" ? " (the shell renews once: kovan-cli lease keepalive ID "
                                    "renews until interrupted)"
                                  : "");
      return false;
    }
  } else if (name == "watch") {
    error = "watch runs until interrupted: use it as a command, kovan-cli watch PREFIX";
    return false;
  } else if (name == "del" || name == "delete") {
    out.kind = K::kDel;
    if (!want(1, "del KEY")) return false;
    out.key = words[1];
  } else if (name == "range" || name == "scan") {
    out.kind = K::kRange;
    std::vector<std::string> positional;
    for (std::size_t i = 1; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w == "--prefix") {
        out.prefix = true;
      } else if (w == "--limit") {
        if (i + 1 >= words.size() || !parse_u64(words[i + 1], out.limit)) {
          error = "--limit needs a number from 0 to 18446744073709551615";
          return false;
        }
        ++i;
      } else if (w.rfind("--limit=", 0) == 0) {
        if (!parse_u64(std::string_view(w).substr(8), out.limit)) {
          error = "--limit needs a number from 0 to 18446744073709551615";
          return false;
        }
      } else {
        positional.push_back(w);
      }
    }
    if (positional.empty() || positional.size() > 2 || (out.prefix && positional.size() != 1)) {
      error = "usage: range START [END] [--limit N] | range PREFIX --prefix [--limit N]";
      return false;
    }
    out.key = positional[0];
    if (positional.size() == 2) out.value = positional[1];
  } else if (name == "begin") {
    out.kind = K::kBegin;
    if (argc > 1) {
      error = "usage: begin [serializable|snapshot]";
      return false;
    }
    if (argc == 1) {
      if (words[1] == "serializable") {
        out.isolation = client::Isolation::kSerializable;
      } else if (words[1] == "snapshot") {
        out.isolation = client::Isolation::kSnapshot;
      } else {
        error = "usage: begin [serializable|snapshot]";
        return false;
      }
    }
  } else if (name == "commit") {
    out.kind = K::kCommit;
    if (!want(0, "commit")) return false;
  } else if (name == "abort" || name == "rollback") {
    out.kind = K::kAbort;
    if (!want(0, "abort")) return false;
  } else if (name == "stats") {
    out.kind = K::kStats;
    if (!want(0, "stats")) return false;
  } else if (name == "ping") {
    out.kind = K::kPing;
    if (!want(0, "ping")) return false;
  } else if (name == "checkpoint") {
    out.kind = K::kCheckpoint;
    if (!want(0, "checkpoint")) return false;
  } else if (name == "snapshot") {
    if (words.size() != 3 || words[1] != "save") {
      error = "usage: snapshot save FILE";
      return false;
    }
    out.kind = K::kSnapshotSave;
    out.key = words[2];
  } else if (name == "help" || name == "?") {
    out.kind = K::kHelp;
  } else if (name == "quit" || name == "exit") {
    out.kind = K::kQuit;
  } else {
    error = "unknown command '" + name + "' (try help)";
    return false;
  }
  return true;
}

ParseOutcome parse_command_line(int argc, const char* const* argv) {
  ParseOutcome outcome;
  Options& o = outcome.options;
  CLI::App app{
      "kovan-cli: command-line client of Kovan KV.\n"
      "With a command, runs it and exits (0 ok, 1 not found, 2 usage, 3 server or connection\n"
      "error); without one, starts a shell reading commands from stdin (type help), which,\n"
      "reading a script, exits with the code of the first command that failed."};
  app.add_option("--addr", o.addr,
                 "Server address host:port, kovan://host:port, or kovans://host:port (TLS)")
      ->capture_default_str();
  app.add_flag("--tls", o.tls, "Connect with TLS (verifies the server certificate)");
  app.add_option("--tls-ca", o.tls_ca,
                 "PEM CA file to verify the server with (default: the system trust store)")
      ->type_name("FILE");
  app.add_option("--tls-cert", o.tls_cert, "PEM client certificate (mutual TLS)")
      ->type_name("FILE");
  app.add_option("--tls-key", o.tls_key, "PEM key of --tls-cert")->type_name("FILE");
  app.add_option("--tls-server-name", o.tls_server_name,
                 "Name (or IP) the server certificate must carry (default: the --addr host)")
      ->type_name("NAME");
  auto* json = app.add_flag("--json", o.json, "Print results as JSON (one object per command)");
  app.add_flag("--raw", o.raw,
               "Print keys and values as raw bytes (default: control bytes, tab, newline and "
               "backslash escaped)")
      ->excludes(json);
  app.add_option("--user", o.user,
                 "Authenticate as this user (password from --password-file or $KOVAN_PASSWORD)")
      ->type_name("NAME");
  app.add_option("--password-file", o.password_file,
                 "File whose first line is the password of --user")
      ->type_name("FILE");
  app.add_flag("-e,--stop-on-error", o.stop_on_error,
               "Shell reading a script: stop at the first failed command");
  // Numbers are taken as text and checked here: CLI11 would wrap "-1" into an unsigned.
  std::string timeout_text = std::to_string(o.timeout_ms);
  app.add_option("--timeout", timeout_text, "Connect and request timeout in milliseconds")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            std::uint64_t n = 0;
            if (!parse_u64(v, n) || n > std::numeric_limits<std::uint32_t>::max()) {
              return "--timeout needs a number of milliseconds from 0 to 4294967295";
            }
            return {};
          },
          ""))
      ->type_name("MS");
  app.require_subcommand(0, 1);

  Command& c = o.command;
  auto* get = app.add_subcommand("get", "Read a key");
  get->add_option("key", c.key, "Key")->required();
  auto* put = app.add_subcommand("put", "Write a key");
  put->add_option("key", c.key, "Key")->required();
  put->add_option("value", c.value, "Value")->required();
  // Numbers as text, checked here (CLI11 would wrap "-1" into an unsigned).
  auto number_check = [](bool (*parse)(std::string_view, std::string&), const char* what) {
    return CLI::Validator(
        [parse, what](std::string& v) -> std::string {
          std::string ignored;
          return parse(v, ignored) ? std::string() : std::string(what);
        },
        "");
  };
  auto lease_text_ok = [](std::string_view v, std::string&) {
    std::uint64_t n = 0;
    return parse_lease_id(v, n);
  };
  auto ttl_text_ok = [](std::string_view v, std::string&) {
    std::int64_t n = 0;
    return parse_ttl(v, n);
  };
  constexpr const char* kLeaseIdError = "a lease id is a number from 1 to 18446744073709551615";
  constexpr const char* kTtlError = "a TTL is a number of seconds from 1 to 9223372036854775807";
  std::string put_lease;
  std::string put_ttl;
  auto* put_lease_opt = put->add_option("--lease", put_lease, "Attach the key to this lease")
                            ->check(number_check(lease_text_ok, kLeaseIdError))
                            ->type_name("ID");
  put->add_option("--ttl", put_ttl, "Attach the key to a new lease of SECONDS")
      ->check(number_check(ttl_text_ok, kTtlError))
      ->type_name("SECONDS")
      ->excludes(put_lease_opt);
  auto* del = app.add_subcommand("del", "Delete a key (exit 1 when it did not exist)");
  del->add_option("key", c.key, "Key")->required();
  auto* range = app.add_subcommand("range", "List keys in [START, END), or with a prefix");
  range->add_option("start", c.key, "First key (the prefix with --prefix)")->required();
  range->add_option("end", c.value, "End key, exclusive (omit: no upper bound)");
  std::string limit_text = "0";
  range->add_option("--limit", limit_text, "At most N keys (0: all; at most 18446744073709551615)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            std::uint64_t n = 0;
            return parse_u64(v, n) ? std::string()
                                   : "--limit needs a number from 0 to 18446744073709551615";
          },
          ""))
      ->type_name("N");
  range->add_flag("--prefix", c.prefix, "Keys starting with START");
  auto* stats = app.add_subcommand("stats", "Server counters");
  auto* checkpoint =
      app.add_subcommand("checkpoint", "Durable servers: write a checkpoint now (admin)");
  auto* snapshot = app.add_subcommand("snapshot", "Backups (admin)");
  snapshot->require_subcommand(1);
  auto* snapshot_save = snapshot->add_subcommand(
      "save", "Stream a consistent snapshot of the store into FILE (for kovan-server --restore)");
  snapshot_save->add_option("file", c.key, "Output file (written whole, or not at all)")
      ->required()
      ->type_name("FILE");
  auto* ping = app.add_subcommand("ping", "Round trip to the server");
  auto* watch = app.add_subcommand(
      "watch", "Print every change under PREFIX as it happens, until interrupted (Ctrl-C)");
  watch->add_option("prefix", c.key, "Key prefix (\"\" for every key)")->required();
  std::string watch_rev;
  watch->add_option("--rev", watch_rev, "Start at this revision (default: changes from now on)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            std::uint64_t n = 0;
            return parse_u64(v, n) ? std::string()
                                   : "--rev needs a number from 0 to 18446744073709551615";
          },
          ""))
      ->type_name("N");
  watch->add_flag("--prev-kv", c.prev_kv, "Show the value each change replaced");
  watch->fallthrough();  // `watch PREFIX --json`: the global options may follow
  auto* lease = app.add_subcommand("lease", "Leases: keys that vanish with their lease");
  lease->require_subcommand(1);
  lease->fallthrough();
  std::string lease_ttl;
  std::string lease_id;
  auto* lease_grant = lease->add_subcommand("grant", "Grant a lease of TTL seconds");
  lease_grant->add_option("ttl", lease_ttl, "TTL in seconds")
      ->required()
      ->check(number_check(ttl_text_ok, kTtlError));
  auto* lease_keepalive = lease->add_subcommand(
      "keepalive", "Renew a lease about every TTL/3 until interrupted (or once with --once)");
  lease_keepalive->add_option("id", lease_id, "Lease id")
      ->required()
      ->check(number_check(lease_text_ok, kLeaseIdError));
  lease_keepalive->add_flag("--once", c.once, "Renew once and exit");
  auto* lease_revoke =
      lease->add_subcommand("revoke", "Revoke a lease: its keys are deleted (one revision)");
  lease_revoke->add_option("id", lease_id, "Lease id")
      ->required()
      ->check(number_check(lease_text_ok, kLeaseIdError));
  auto* lease_ttl_cmd = lease->add_subcommand("ttl", "A lease's remaining and granted TTL");
  lease_ttl_cmd->add_option("id", lease_id, "Lease id")
      ->required()
      ->check(number_check(lease_text_ok, kLeaseIdError));
  lease_ttl_cmd->add_flag("--keys", c.keys, "List the keys attached to it");
  for (auto* sub : {lease_grant, lease_keepalive, lease_revoke, lease_ttl_cmd}) sub->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out;
    std::ostringstream err;
    const int rc = app.exit(e, out, err);
    outcome.exit = true;
    outcome.code = rc == 0 ? kExitOk : kExitUsage;
    outcome.output = out.str() + err.str();
    return outcome;
  }
  // Both passed their checks above.
  std::uint64_t timeout = 0;
  (void)parse_u64(timeout_text, timeout);
  o.timeout_ms = static_cast<std::uint32_t>(timeout);
  (void)parse_u64(limit_text, c.limit);
  using K = Command::Kind;
  if (get->parsed()) c.kind = K::kGet;
  if (put->parsed()) c.kind = K::kPut;
  if (del->parsed()) c.kind = K::kDel;
  if (range->parsed()) c.kind = K::kRange;
  if (stats->parsed()) c.kind = K::kStats;
  if (ping->parsed()) c.kind = K::kPing;
  if (checkpoint->parsed()) c.kind = K::kCheckpoint;
  if (snapshot_save->parsed()) c.kind = K::kSnapshotSave;
  if (watch->parsed()) c.kind = K::kWatch;
  if (lease_grant->parsed()) c.kind = K::kLeaseGrant;
  if (lease_keepalive->parsed()) c.kind = K::kLeaseKeepAlive;
  if (lease_revoke->parsed()) c.kind = K::kLeaseRevoke;
  if (lease_ttl_cmd->parsed()) c.kind = K::kLeaseTtl;
  // Each passed its check above.
  if (!put_lease.empty()) (void)parse_lease_id(put_lease, c.lease);
  if (!put_ttl.empty()) (void)parse_ttl(put_ttl, c.ttl);
  if (!lease_ttl.empty()) (void)parse_ttl(lease_ttl, c.ttl);
  if (!lease_id.empty()) (void)parse_lease_id(lease_id, c.lease);
  if (!watch_rev.empty()) (void)parse_u64(watch_rev, c.revision);
  if (c.kind == K::kRange && c.prefix && !c.value.empty()) {
    outcome.exit = true;
    outcome.code = kExitUsage;
    outcome.output = "range --prefix takes one key (the prefix), not an end\n";
  }
  return outcome;
}

int execute(client::Client& client, const Command& command, const Format& format,
            std::optional<client::Transaction>* txn, std::ostream& out, std::ostream& err) {
  using K = Command::Kind;
  const bool json = format.json;
  // Keys and values in plain output: escaped unless --raw.
  auto shown = [&](const std::string& bytes) { return format.raw ? bytes : escape_bytes(bytes); };
  client::Transaction* t = (txn != nullptr && txn->has_value()) ? &txn->value() : nullptr;
  // A transaction the server has finished (expired, connection lost) leaves the slot.
  auto settle = [&] {
    if (t != nullptr && !t->open()) {
      txn->reset();
      if (!json) err << "(transaction ended)\n";
    }
  };
  switch (command.kind) {
    case K::kNone:
    case K::kQuit:
      return kExitOk;
    case K::kHelp:
      out << kHelp;
      return kExitOk;
    case K::kGet: {
      auto r = t != nullptr ? t->get(command.key) : client.get(command.key);
      settle();
      if (!r.ok()) {
        if (r.status().is_not_found()) {
          if (json) {
            out << "{\"ok\":false,\"error\":\"NOT_FOUND\",\"found\":false}\n";
          } else {
            err << "(not found)\n";
          }
          return kExitNotFound;
        }
        return report_error(r.status(), json, out, err);
      }
      if (json) {
        out << "{\"ok\":true,\"found\":true,\"kv\":" << json_kv(r.value()) << "}\n";
      } else {
        out << shown(r->value) << '\n';
      }
      return kExitOk;
    }
    case K::kPut: {
      if (t != nullptr) {
        Status s = t->put(command.key, command.value);
        settle();
        if (!s.ok()) return report_error(s, json, out, err);
        out << (json ? "{\"ok\":true}" : "OK") << '\n';
        return kExitOk;
      }
      if (command.lease != 0 || command.ttl != 0) {
        auto r = client.put(command.key, command.value,
                            client::PutOptions{.lease = command.lease, .ttl_seconds = command.ttl});
        if (!r.ok()) {
          report_error(r.status(), json, out, err);
          return lease_exit(r.status());
        }
        const std::uint64_t lease_id = command.ttl != 0 ? r->lease : command.lease;
        if (json) {
          out << "{\"ok\":true,\"revision\":" << r->revision << ",\"lease\":" << lease_id << "}\n";
        } else {
          out << "OK (revision " << r->revision << ", lease " << lease_id << ")\n";
        }
        return kExitOk;
      }
      auto r = client.put(command.key, command.value);
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"revision\":" << r->revision << "}\n";
      } else {
        out << "OK (revision " << r->revision << ")\n";
      }
      return kExitOk;
    }
    case K::kDel: {
      if (t != nullptr) {
        Status s = t->del(command.key);
        settle();
        if (!s.ok()) return report_error(s, json, out, err);
        out << (json ? "{\"ok\":true}" : "OK") << '\n';
        return kExitOk;
      }
      auto r = client.del(command.key);
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"deleted\":" << r->deleted << ",\"revision\":" << r->revision
            << "}\n";
      } else {
        (r->deleted != 0 ? out : err) << (r->deleted != 0 ? "deleted\n" : "(not found)\n");
      }
      return r->deleted != 0 ? kExitOk : kExitNotFound;
    }
    case K::kRange: {
      const client::Range range = command.prefix
                                      ? client::Range::with_prefix(command.key)
                                      : client::Range::between(command.key, command.value);
      client::ScanOptions opts;
      opts.limit = command.limit;
      auto r = t != nullptr ? t->scan(range, opts) : client.scan(range, opts);
      settle();
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"revision\":" << r->revision << ",\"count\":" << r->count
            << ",\"more\":" << (r->more ? "true" : "false") << ",\"kvs\":[";
        for (std::size_t i = 0; i < r->kvs.size(); ++i) {
          out << (i == 0 ? "" : ",") << json_kv(r->kvs[i]);
        }
        out << "]}\n";
      } else {
        for (const KeyValue& kv : r->kvs) out << shown(kv.key) << '\t' << shown(kv.value) << '\n';
        if (r->more) err << "(" << r->kvs.size() << " of " << r->count << " keys shown)\n";
      }
      return kExitOk;
    }
    case K::kStats: {
      auto r = client.stats();
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true";
        for (const auto& [name, v] : r->counters) out << ",\"" << name << "\":" << v;
        out << "}\n";
        for (const auto& [name, text] : r->texts) {
          std::string quoted;
          if (!json_string(text, quoted)) quoted = "\"\"";
          out << ",\"" << name << "\":" << quoted;
        }
      } else {
        for (const auto& [name, v] : r->counters) out << name << ' ' << v << '\n';
        for (const auto& [name, text] : r->texts) out << name << ' ' << escape_bytes(text) << '\n';
      }
      return kExitOk;
    }
    case K::kCheckpoint: {
      auto r = client.checkpoint();
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"revision\":" << r.value() << "}\n";
      } else {
        out << "CHECKPOINT (revision " << r.value() << ")\n";
      }
      return kExitOk;
    }
    case K::kSnapshotSave: {
      client::SnapshotInfo info;
      std::string error;
      Code code = Code::kOk;
      if (!save_snapshot_file(client, command.key, info, error, code)) {
        return report_error(Status(code, error), json, out, err);
      }
      if (json) {
        std::string file;
        if (!json_string(command.key, file)) file = "\"\"";
        out << "{\"ok\":true,\"file\":" << file << ",\"revision\":" << info.revision
            << ",\"bytes\":" << info.bytes << ",\"crc32c\":" << info.crc32c << "}\n";
      } else {
        out << "SAVED " << escape_bytes(command.key) << " (revision " << info.revision << ", "
            << info.bytes << " bytes, crc32c " << info.crc32c << ")\n";
      }
      return kExitOk;
    }
    case K::kPing: {
      const auto start = std::chrono::steady_clock::now();
      auto r = client.ping("kovan-cli");
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"latency_us\":" << us << "}\n";
      } else {
        out << "PONG (" << us << " us)\n";
      }
      return kExitOk;
    }
    case K::kWatch:
      return report_error(
          Status(Code::kInvalidArgument, "watch runs until interrupted: kovan-cli watch PREFIX"),
          json, out, err);
    case K::kLeaseGrant: {
      auto r = client.lease_grant(command.ttl);
      if (!r.ok()) return report_error(r.status(), json, out, err);
      if (json) {
        out << "{\"ok\":true,\"id\":" << r->id << ",\"ttl_seconds\":" << r->ttl_seconds << "}\n";
      } else {
        out << "lease " << r->id << " granted with TTL " << r->ttl_seconds << "s\n";
      }
      return kExitOk;
    }
    case K::kLeaseKeepAlive: {
      if (!command.once) {
        return report_error(Status(Code::kInvalidArgument,
                                   "lease keepalive without --once runs until interrupted: "
                                   "kovan-cli lease keepalive ID"),
                            json, out, err);
      }
      auto r = client.lease_keepalive(command.lease);
      if (!r.ok()) {
        report_error(r.status(), json, out, err);
        return lease_exit(r.status());
      }
      if (json) {
        out << "{\"ok\":true,\"id\":" << r->id << ",\"ttl_seconds\":" << r->ttl_seconds << "}\n";
      } else {
        out << "lease " << r->id << " kept alive with TTL " << r->ttl_seconds << "s\n";
      }
      return kExitOk;
    }
    case K::kLeaseRevoke: {
      auto r = client.lease_revoke(command.lease);
      if (!r.ok()) {
        report_error(r.status(), json, out, err);
        return lease_exit(r.status());
      }
      if (json) {
        out << "{\"ok\":true,\"deleted\":" << r->deleted << ",\"revision\":" << r->revision
            << "}\n";
      } else {
        out << "lease " << command.lease << " revoked (" << r->deleted << " keys deleted, revision "
            << r->revision << ")\n";
      }
      return kExitOk;
    }
    case K::kLeaseTtl: {
      auto r = client.lease_time_to_live(command.lease, command.keys);
      if (!r.ok()) {
        report_error(r.status(), json, out, err);
        return lease_exit(r.status());
      }
      if (json) {
        out << "{\"ok\":true,\"id\":" << r->id << ",\"ttl_seconds\":" << r->ttl_seconds
            << ",\"granted_ttl_seconds\":" << r->granted_ttl_seconds;
        if (command.keys) {
          // Keys as JSON strings when every one is UTF-8, else all in base64.
          bool utf8 = true;
          std::vector<std::string> quoted;
          for (const auto& k : r->keys) {
            std::string q;
            utf8 = utf8 && json_string(k, q);
            quoted.push_back(std::move(q));
          }
          out << (utf8 ? ",\"keys\":[" : ",\"keys_base64\":[");
          for (std::size_t i = 0; i < r->keys.size(); ++i) {
            out << (i == 0 ? "" : ",") << (utf8 ? quoted[i] : "\"" + base64(r->keys[i]) + "\"");
          }
          out << "]";
        }
        out << "}\n";
      } else {
        out << "lease " << r->id << ": " << r->ttl_seconds << "s left of " << r->granted_ttl_seconds
            << "s\n";
        if (command.keys) {
          for (const auto& k : r->keys) out << shown(k) << '\n';
        }
      }
      return kExitOk;
    }
    case K::kBegin: {
      if (txn == nullptr)
        return report_error(Status(Code::kInvalidArgument, "begin is a shell command"), json, out,
                            err);
      if (t != nullptr) {
        return report_error(
            Status(Code::kInvalidArgument, "a transaction is already open (commit or abort it)"),
            json, out, err);
      }
      auto r = client.begin(command.isolation);
      if (!r.ok()) return report_error(r.status(), json, out, err);
      txn->emplace(std::move(r).value());
      const client::Transaction& nt = txn->value();
      const char* iso =
          nt.isolation() == client::Isolation::kSnapshot ? "snapshot" : "serializable";
      if (json) {
        out << "{\"ok\":true,\"txn_id\":" << nt.id()
            << ",\"snapshot_revision\":" << nt.snapshot_revision() << ",\"isolation\":\"" << iso
            << "\"}\n";
      } else {
        out << "BEGIN " << iso << " (txn " << nt.id() << ", snapshot revision "
            << nt.snapshot_revision() << ")\n";
      }
      return kExitOk;
    }
    case K::kCommit:
    case K::kAbort: {
      if (t == nullptr) {
        return report_error(Status(Code::kInvalidArgument, "no open transaction (begin first)"),
                            json, out, err);
      }
      if (command.kind == K::kCommit) {
        auto r = t->commit();
        txn->reset();
        if (!r.ok()) return report_error(r.status(), json, out, err);
        if (json) {
          out << "{\"ok\":true,\"revision\":" << r.value() << "}\n";
        } else {
          out << "COMMITTED (revision " << r.value() << ")\n";
        }
        return kExitOk;
      }
      Status s = t->abort();
      txn->reset();
      if (!s.ok()) return report_error(s, json, out, err);
      out << (json ? "{\"ok\":true}" : "ABORTED") << '\n';
      return kExitOk;
    }
  }
  return kExitOk;
}

std::string json_watch_event(const client::WatchEvent& event, std::uint64_t revision) {
  const bool put = event.type == client::WatchEvent::Type::kPut;
  std::string o = put ? "{\"type\":\"put\"," : "{\"type\":\"delete\",";
  json_bytes_field(o, "key", event.kv.key);
  o += ',';
  json_bytes_field(o, "value", event.kv.value);
  o += ",\"revision\":" + std::to_string(revision);
  o += ",\"mod_revision\":" + std::to_string(event.kv.mod_revision);
  o += ",\"create_revision\":" + std::to_string(event.kv.create_revision);
  o += ",\"version\":" + std::to_string(event.kv.version);
  o += ",\"lease\":" + std::to_string(event.kv.lease);
  if (event.prev) o += ",\"prev_kv\":" + json_kv(*event.prev);
  o += '}';
  return o;
}

std::string plain_watch_event(const client::WatchEvent& event, std::uint64_t revision, bool raw) {
  auto shown = [raw](const std::string& b) { return raw ? b : escape_bytes(b); };
  std::string o = std::to_string(revision);
  if (event.type == client::WatchEvent::Type::kPut) {
    o += "\tPUT\t" + shown(event.kv.key) + '\t' + shown(event.kv.value);
  } else {
    o += "\tDELETE\t" + shown(event.kv.key);
  }
  if (event.prev) o += "\tprev=" + shown(event.prev->value);
  return o;
}

int run_watch(client::Client& client, const Command& command, const Format& format,
              std::ostream& out, std::ostream& err, const std::atomic<bool>& stop) {
  client::WatchOptions options;
  options.start_revision = command.revision;
  options.prev_kv = command.prev_kv;
  auto w = client.watch_stream(client::WatchKeys::with_prefix(command.key), options);
  if (!w.ok()) {
    if (format.json && w.code() == Code::kCompacted) {
      out << "{\"ok\":false,\"error\":\"COMPACTED\",\"compact_revision\":"
          << w.status().compact_revision() << "}\n";
      err << "(error) " << escape_bytes(w.status().to_string()) << '\n';
      return kExitError;
    }
    return report_error(w.status(), format.json, out, err);
  }
  client::WatchStream& stream = *w.value();
  err << "(watching prefix '" << escape_bytes(command.key) << "' from revision "
      << stream.start_revision() << ")" << std::endl;
  while (!stop.load(std::memory_order_relaxed)) {
    auto batch = stream.next(std::chrono::milliseconds(100));
    if (!batch) continue;
    for (const auto& e : batch->events) {
      out << (format.json ? json_watch_event(e, batch->revision)
                          : plain_watch_event(e, batch->revision, format.raw))
          << '\n';
    }
    out << std::flush;
    if (batch->canceled) {
      const Status& s = batch->status;
      if (format.json) {
        std::string msg;
        if (!json_string(s.message(), msg)) msg = "\"\"";
        out << "{\"ok\":false,\"error\":\"" << client::code_name(s.code())
            << "\",\"message\":" << msg << ",\"compact_revision\":" << batch->compact_revision
            << ",\"resume_revision\":" << batch->resume_revision << "}" << std::endl;
      }
      err << "(watch ended) " << escape_bytes(s.to_string()) << " (resume from revision "
          << batch->resume_revision;
      if (batch->compact_revision != 0) err << ", oldest available " << batch->compact_revision;
      err << ")" << std::endl;
      return kExitError;
    }
  }
  (void)stream.cancel();
  return kExitOk;
}

int run_lease_keepalive(client::Client& client, const Command& command, const Format& format,
                        std::ostream& out, std::ostream& err, const std::atomic<bool>& stop) {
  for (;;) {
    auto r = client.lease_keepalive(command.lease);
    if (!r.ok()) {
      report_error(r.status(), format.json, out, err);
      return lease_exit(r.status());
    }
    if (format.json) {
      out << "{\"ok\":true,\"id\":" << r->id << ",\"ttl_seconds\":" << r->ttl_seconds << "}"
          << std::endl;
    } else {
      out << "lease " << r->id << " kept alive with TTL " << r->ttl_seconds << "s" << std::endl;
    }
    if (command.once) return kExitOk;
    // The next renewal after a third of the TTL; `stop` is looked at every 100 ms.
    const auto next =
        std::chrono::steady_clock::now() +
        std::chrono::milliseconds(std::max<std::int64_t>(r->ttl_seconds, 1) * 1000 / 3);
    while (std::chrono::steady_clock::now() < next) {
      if (stop.load(std::memory_order_relaxed)) return kExitOk;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stop.load(std::memory_order_relaxed)) return kExitOk;
  }
}

int run_shell(client::Client& client, std::istream& in, std::ostream& out, std::ostream& err,
              const ShellOptions& options) {
  const bool json = options.format.json;
  std::optional<client::Transaction> txn;
  std::string line;
  int status = kExitOk;  // the exit code of the first failed command
  auto failed = [&](int code) {
    if (code == kExitOk || code == kExitNotFound) return false;
    if (status == kExitOk) status = code;
    return !options.interactive && options.stop_on_error;
  };
  for (;;) {
    if (options.interactive) {
      out << (txn ? "kovan(txn " + std::to_string(txn->id()) + ")> " : std::string("kovan> "))
          << std::flush;
    }
    if (!std::getline(in, line)) break;
    std::vector<std::string> words;
    std::string error;
    Command command;
    if (!tokenize(line, words, error) || !parse_shell_command(words, command, error)) {
      if (json) {
        std::string msg;
        if (!json_string(error, msg)) msg = "\"\"";
        out << "{\"ok\":false,\"error\":\"USAGE\",\"message\":" << msg << "}\n";
      } else {
        err << "(error) " << error << '\n';
      }
      out << std::flush;
      if (failed(kExitUsage)) break;
      continue;
    }
    if (command.kind == Command::Kind::kQuit) break;
    const int code = execute(client, command, options.format, &txn, out, err);
    out << std::flush;
    if (failed(code)) break;
  }
  if (txn && txn->open()) {
    err << "(open transaction aborted)\n";
    (void)txn->abort();
  }
  return options.interactive ? kExitOk : status;
}

}  // namespace kv::cli
