// kovan-cli internals: command-line parsing, the shell's tokenizer and command parser, and
// the execution of one command with plain-text or JSON output. Kept apart from main() so
// that the parsers can be unit-tested without a server.
#pragma once

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
  };
  Kind kind = Kind::kNone;
  std::string key;    // get/put/del; range start
  std::string value;  // put; range end
  std::uint64_t limit = 0;
  bool prefix = false;
  client::Isolation isolation = client::Isolation::kSerializable;
};

struct Options {
  std::string addr = "127.0.0.1:7379";
  bool json = false;
  std::uint32_t timeout_ms = 5000;
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

// Runs one command and prints its outcome to `out` (errors to `err` in plain mode; in JSON
// mode everything, errors included, is one JSON object on `out`). `txn` is the shell's
// transaction slot (null for one-shot commands, which then refuse begin/commit/abort):
// get/put/del/range run inside the transaction it holds, begin fills it, commit and abort
// empty it. Returns the exit code the command maps to.
int execute(client::Client& client, const Command& command, bool json,
            std::optional<client::Transaction>* txn, std::ostream& out, std::ostream& err);

// The interactive shell over `in`. Prompts only when `interactive`. Returns 0 at end of
// input or `quit`.
int run_shell(client::Client& client, std::istream& in, std::ostream& out, std::ostream& err,
              bool interactive, bool json);

// The text printed by `help` in the shell.
[[nodiscard]] std::string_view shell_help();

}  // namespace kv::cli
