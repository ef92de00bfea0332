// kovan-cli internals: command-line parsing, the shell's tokenizer and command parser, and
// the execution of one command with plain-text or JSON output. Kept apart from main() so
// that the parsers can be unit-tested without a server.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/client.hpp"

namespace kv::cli {

// Process exit codes.
enum ExitCode : int { kExitOk = 0, kExitNotFound = 1, kExitUsage = 2, kExitError = 3 };

struct Command {
  enum class Kind : std::uint8_t {
    kNone,  // an empty line, or no command on the command line (-> shell)
    kGet,
    kPut,
    kDel,
    kRange,
    kStats,
    kPing,
    kBegin,
    kCommit,
    kAbort,
    kHelp,
    kQuit,
    kCheckpoint,    // durable servers: write a checkpoint now
    kSnapshotSave,  // stream a snapshot image to the file named by `key`
    kWatch,         // one-shot only: print the events under the prefix `key` until stopped
    kLeaseGrant,
    kLeaseKeepAlive,  // `once`: one renewal; otherwise (one-shot only) until stopped
    kLeaseRevoke,
    kLeaseTtl,
  };
  Kind kind = Kind::kNone;
  std::string key;    // get/put/del; range start
  std::string value;  // put; range end
  std::uint64_t limit = 0;
  bool prefix = false;
  client::Isolation isolation = client::Isolation::kSerializable;
  std::uint64_t lease = 0;     // put --lease; the lease of lease keepalive/revoke/ttl
  std::int64_t ttl = 0;        // put --ttl; lease grant TTL
  std::uint64_t revision = 0;  // watch --rev
  bool prev_kv = false;        // watch --prev-kv
  bool once = false;           // lease keepalive --once
  bool keys = false;           // lease ttl --keys
};

// How results are printed: plain text (bytes of keys and values escaped, see
// escape_bytes), plain text with raw bytes, or one JSON object per command.
struct Format {
  bool json = false;
  bool raw = false;
};

struct Options {
  std::string addr = "127.0.0.1:7379";
  bool json = false;
  bool raw = false;
  bool stop_on_error = false;
  std::uint32_t timeout_ms = 5000;
  // TLS (--tls, or an --addr of kovans://HOST:PORT): CA file, client certificate and key,
  // and the name the server certificate must carry (default: the --addr host).
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  // Authentication (docs/SECURITY.md): the password comes from --password-file or
  // $KOVAN_PASSWORD, never from the command line.
  std::string user;
  std::string password_file;
  Command command;
};

struct ParseOutcome {
  bool exit = false;  // print `output` and exit with `code` (--help, usage errors)
  int code = kExitOk;
  std::string output;
  Options options;
};

// Parses kovan-cli's argv (CLI11). Usage errors give exit code 2.
[[nodiscard]] ParseOutcome parse_command_line(int argc, const char* const* argv);

// Splits a shell line into words: blanks separate words; single quotes take everything
// literally up to the next single quote; double quotes allow \" \\ \n \t \xHH escapes;
// outside quotes a backslash escapes the next character. False (with `error`) on an
// unterminated quote or a dangling escape.
[[nodiscard]] bool tokenize(std::string_view line, std::vector<std::string>& words,
                            std::string& error);

// Parses the words of a shell line into a command. False (with `error`) on an unknown
// command or wrong arguments. An empty `words` gives Kind::kNone.
[[nodiscard]] bool parse_shell_command(const std::vector<std::string>& words, Command& out,
                                       std::string& error);

// JSON string literal for arbitrary bytes when they are valid UTF-8 (returns false
// otherwise, leaving `out` unchanged).
[[nodiscard]] bool json_string(std::string_view bytes, std::string& out);

// The bytes of a key or value as plain output shows them: printable ASCII and UTF-8 text
// unchanged, except backslash as \\, tab as \t, newline as \n and carriage return as \r;
// every other byte (C0 controls, DEL, the UTF-8 encodings of C1 controls, bytes that are
// not part of valid UTF-8) as \xHH. No byte can then move the cursor or reach the
// terminal as a control sequence, and a line of output is one line. The shell's double
// quotes read the escapes back to the same bytes.
[[nodiscard]] std::string escape_bytes(std::string_view bytes);

// A decimal unsigned 64-bit number: digits only, no sign, no blanks, at most 2^64 - 1.
[[nodiscard]] bool parse_u64(std::string_view text, std::uint64_t& out);

// Runs one command and prints its outcome to `out`: results on `out`; errors and notes
// such as "(not found)" on `err` in plain mode; in JSON mode everything, errors included,
// is one JSON object on `out`. `txn` is the shell's transaction slot (null for one-shot
// commands, which then refuse begin/commit/abort): get/put/del/range run inside the
// transaction it holds, begin fills it, commit and abort empty it. Returns the exit code
// the command maps to.
int execute(client::Client& client, const Command& command, const Format& format,
            std::optional<client::Transaction>* txn, std::ostream& out, std::ostream& err);

struct ShellOptions {
  bool interactive = false;    // prompt, and exit 0 whatever the commands did
  bool stop_on_error = false;  // stop at the first failed command (not interactive)
  Format format;
};

// The shell over `in`, until end of input or `quit`. Interactive: returns 0. Otherwise:
// returns the exit code of the first command that failed (2 usage, 3 server or
// connection error; a key not found is not a failure) or 0; with `stop_on_error` it stops
// at that command, aborting an open transaction.
int run_shell(client::Client& client, std::istream& in, std::ostream& out, std::ostream& err,
              const ShellOptions& options);

// `snapshot save FILE`: streams the server's snapshot image into FILE.tmp-PID next to FILE,
// fsyncs it, reads it back to check its size and CRC-32C against what the server announced,
// then renames it to FILE and fsyncs the directory. On any failure FILE is left as it was
// and the temporary file is removed. `error` says why when it returns false.
[[nodiscard]] bool save_snapshot_file(client::Client& client, const std::string& path,
                                      client::SnapshotInfo& info, std::string& error,
                                      client::Code& code);

// One watch event as `watch --json` prints it (one line, no newline): {"type":"put" or
// "delete","key":...,"value":...,"revision":R,"mod_revision":...,"create_revision":...,
// "version":...,"lease":...} plus "prev_kv":{...} when it carries one. Keys and values as
// in the other --json output: a JSON string when UTF-8, else "key_base64"/"value_base64".
[[nodiscard]] std::string json_watch_event(const client::WatchEvent& event, std::uint64_t revision);

// One watch event in plain output: "R<TAB>PUT<TAB>key<TAB>value" or "R<TAB>DELETE<TAB>key",
// then "<TAB>prev=<value>" with a previous value (keys and values escaped unless raw).
[[nodiscard]] std::string plain_watch_event(const client::WatchEvent& event, std::uint64_t revision,
                                            bool raw);

// `watch PREFIX`: prints every event under the prefix (from command.revision when not 0) as
// it arrives, until `stop` turns true (checked at least every 100 ms) or the watch ends. A
// line on `err` says when the watch is in place. Returns 0 when stopped, 3 when the
// watch ended (connection lost, COMPACTED: the reason is printed, as JSON on `out` with
// --json, with compact_revision and resume_revision).
int run_watch(client::Client& client, const Command& command, const Format& format,
              std::ostream& out, std::ostream& err, const std::atomic<bool>& stop);

// `lease keepalive ID` without --once: renews the lease about every TTL/3, one line per
// renewal, until `stop` (exit 0) or the lease is lost (exit 1 for LEASE_NOT_FOUND, else 3).
int run_lease_keepalive(client::Client& client, const Command& command, const Format& format,
                        std::ostream& out, std::ostream& err, const std::atomic<bool>& stop);

// The text printed by `help` in the shell.
[[nodiscard]] std::string_view shell_help();

}  // namespace kv::cli
