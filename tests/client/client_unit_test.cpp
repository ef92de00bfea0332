// Client pieces that need no server: request encoding (checked against the worked example
// of docs/PROTOCOL.md byte by byte), response decoding, address parsing, and kovan-cli's
// command-line parser, shell tokenizer and shell command parser.
#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include <sstream>

#include "cli.hpp"
#include "connection.hpp"
#include "convert.hpp"
#include "proto/codec.hpp"

namespace kv::client {
namespace {

namespace pb = detail::pb;

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    if (!out.empty()) out += ' ';
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string framed(const pb::Request& r) {
  std::string out;
  proto::append_message(out, r);
  return out;
}

TEST(Encode, MatchesTheProtocolDocumentsWorkedExample) {
  pb::Request put;
  put.set_id(1);
  detail::encode_put(put, "k", "v", false, 0);
  EXPECT_EQ(hex(framed(put)), "00 00 00 0a 08 01 62 06 0a 01 6b 12 01 76");

  pb::Request get;
  get.set_id(2);
  detail::encode_get(get, "k", 0);
  EXPECT_EQ(hex(framed(get)), "00 00 00 07 08 02 5a 03 0a 01 6b");
}

TEST(Encode, TransactionalOpsCarryTheTxnId) {
  pb::Request r;
  detail::encode_scan(r, Range::with_prefix("p"), ScanOptions{.limit = 7, .reverse = true}, 42);
  ASSERT_TRUE(r.has_scan());
  EXPECT_EQ(r.scan().start(), "p");
  EXPECT_TRUE(r.scan().prefix());
  EXPECT_TRUE(r.scan().end().empty());
  EXPECT_EQ(r.scan().limit(), 7u);
  EXPECT_TRUE(r.scan().reverse());
  EXPECT_EQ(r.scan().txn_id(), 42u);

  pb::Request b;
  detail::encode_begin(b, Isolation::kSnapshot);
  EXPECT_EQ(b.begin().isolation(), pb::SNAPSHOT);
  pb::Request c;
  detail::encode_commit(c, 9);
  EXPECT_EQ(c.commit().txn_id(), 9u);
}

TEST(Encode, ConditionalTransaction) {
  TxnRequest t;
  t.compare = {Compare::missing("a"), Compare::value_of("b", Compare::Op::kGreater, "x"),
               Compare::mod_revision("c", Compare::Op::kLess, 5)};
  t.success = {TxnOp::put("a", "1"), TxnOp::delete_range(Range::between("m", "n"))};
  t.failure = {TxnOp::get("a"), TxnOp::scan_range(Range::all(), ScanOptions{.count_only = true})};
  pb::Request r;
  detail::encode_txn(r, t);
  const pb::TxnRequest& m = r.txn();
  ASSERT_EQ(m.compare_size(), 3);
  EXPECT_EQ(m.compare(0).target_case(), pb::Compare::kVersion);
  EXPECT_EQ(m.compare(0).version(), 0u);
  EXPECT_EQ(m.compare(1).op(), pb::Compare::GREATER);
  EXPECT_EQ(m.compare(1).value(), "x");
  EXPECT_EQ(m.compare(2).mod_revision(), 5u);
  ASSERT_EQ(m.success_size(), 2);
  EXPECT_EQ(m.success(0).put().value(), "1");
  EXPECT_EQ(m.success(1).delete_range().end(), "n");
  ASSERT_EQ(m.failure_size(), 2);
  EXPECT_EQ(m.failure(0).get().key(), "a");
  EXPECT_TRUE(m.failure(1).scan().count_only());
  EXPECT_TRUE(proto::validate_request(r, proto::RequestLimits{}).ok());
}

TEST(Decode, GetFoundAndNotFound) {
  pb::Response r;
  r.set_id(2);
  r.mutable_header()->set_revision(2);
  auto* kv = r.mutable_get()->mutable_kv();
  kv->set_key("k");
  kv->set_value("v");
  kv->set_create_revision(2);
  kv->set_mod_revision(2);
  kv->set_version(1);
  auto got = detail::decode_get(r);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value(), (KeyValue{"k", "v", 2, 2, 1}));

  pb::Response nf;
  nf.mutable_status()->set_code(pb::Status::NOT_FOUND);
  nf.mutable_get();
  EXPECT_EQ(detail::decode_get(nf).code(), Code::kNotFound);
}

TEST(Decode, ErrorsKeepCodeAndMessage) {
  pb::Response r;
  r.mutable_status()->set_code(pb::Status::CONFLICT);
  r.mutable_status()->set_message("lost the race");
  auto c = detail::decode_commit(r);
  EXPECT_EQ(c.code(), Code::kConflict);
  EXPECT_EQ(c.status().message(), "lost the race");
  EXPECT_TRUE(c.status().is_retryable_txn());
  EXPECT_EQ(c.status().to_string(), "CONFLICT: lost the race");

  pb::Response unknown;
  unknown.mutable_status()->set_code(static_cast<pb::Status::Code>(42));
  EXPECT_EQ(detail::status_of(unknown).code(), Code::kInternal);  // PROTOCOL.md section 4
}

TEST(Decode, AuthenticationCodesAreMapped) {
  pb::Response r;
  r.mutable_status()->set_code(pb::Status::UNAUTHENTICATED);
  r.mutable_status()->set_message("authentication required");
  EXPECT_EQ(detail::status_of(r).code(), Code::kUnauthenticated);
  EXPECT_EQ(detail::status_of(r).to_string(), "UNAUTHENTICATED: authentication required");
  r.mutable_status()->set_code(pb::Status::PERMISSION_DENIED);
  EXPECT_EQ(detail::decode_get(r).code(), Code::kPermissionDenied);
  EXPECT_EQ(code_name(Code::kPermissionDenied), "PERMISSION_DENIED");
  r.mutable_status()->set_code(pb::Status::STORAGE_FAILED);
  EXPECT_EQ(detail::status_of(r).code(), Code::kStorageFailed);
  r.mutable_status()->set_code(static_cast<pb::Status::Code>(14));  // not known to this client
  EXPECT_EQ(detail::status_of(r).code(), Code::kInternal);
}

TEST(Decode, WatchAndLeaseCodesAreMapped) {
  pb::Response r;
  r.mutable_status()->set_code(pb::Status::COMPACTED);
  r.mutable_status()->set_message("start revision 3 is compacted");
  r.mutable_status()->set_compact_revision(17);
  auto w = detail::decode_watch(r);
  EXPECT_EQ(w.code(), Code::kCompacted);
  EXPECT_EQ(w.status().compact_revision(), 17u);
  EXPECT_EQ(code_name(Code::kCompacted), "COMPACTED");
  r.mutable_status()->set_code(pb::Status::LEASE_NOT_FOUND);
  EXPECT_EQ(detail::decode_lease_keepalive(r).code(), Code::kLeaseNotFound);
  EXPECT_EQ(code_name(Code::kLeaseNotFound), "LEASE_NOT_FOUND");
}

TEST(Encode, PutWithLeaseOrTtlAndTxnPutWithLease) {
  pb::Request r;
  detail::encode_put(r, "k", "v", PutOptions{.prev_kv = true, .lease = 42});
  EXPECT_EQ(r.put().lease(), 42u);
  EXPECT_TRUE(r.put().prev_kv());
  EXPECT_EQ(r.put().ttl_seconds(), 0);
  pb::Request t;
  detail::encode_put(t, "k", "v", PutOptions{.ttl_seconds = 5});
  EXPECT_EQ(t.put().ttl_seconds(), 5);
  EXPECT_EQ(t.put().lease(), 0u);
  TxnRequest txn;
  txn.success = {TxnOp::put("a", "1", 9)};
  pb::Request x;
  detail::encode_txn(x, txn);
  EXPECT_EQ(x.txn().success(0).put().lease(), 9u);
}

TEST(Encode, WatchSelections) {
  pb::Request r;
  detail::encode_watch(r, WatchKeys::with_prefix("p/"),
                       WatchOptions{.start_revision = 4, .prev_kv = true, .no_delete = true});
  EXPECT_EQ(r.watch().key(), "p/");
  EXPECT_TRUE(r.watch().prefix());
  EXPECT_TRUE(r.watch().range_end().empty());
  EXPECT_EQ(r.watch().start_revision(), 4u);
  EXPECT_TRUE(r.watch().prev_kv());
  EXPECT_TRUE(r.watch().no_delete());
  EXPECT_FALSE(r.watch().no_put());
  pb::Request single;
  detail::encode_watch(single, WatchKeys::single("k"), {});
  EXPECT_FALSE(single.watch().prefix());
  EXPECT_TRUE(single.watch().range_end().empty());
  pb::Request open;
  detail::encode_watch(open, WatchKeys::between("m"), {});
  EXPECT_EQ(open.watch().range_end(), std::string(1, '\0'));  // every key >= "m"
  pb::Request closed;
  detail::encode_watch(closed, WatchKeys::between("m", "n"), {});
  EXPECT_EQ(closed.watch().range_end(), "n");
}

TEST(Decode, LeaseResultsAndKeyValueLease) {
  pb::Response g;
  g.mutable_lease_grant()->set_id(5);
  g.mutable_lease_grant()->set_ttl_seconds(10);
  auto grant = detail::decode_lease_grant(g);
  ASSERT_TRUE(grant.ok());
  EXPECT_EQ(grant->id, 5u);
  EXPECT_EQ(grant->ttl_seconds, 10);
  pb::Response zero;
  zero.mutable_lease_grant();
  EXPECT_EQ(detail::decode_lease_grant(zero).code(), Code::kInternal);
  pb::Response t;
  t.mutable_lease_time_to_live()->set_id(5);
  t.mutable_lease_time_to_live()->set_ttl_seconds(3);
  t.mutable_lease_time_to_live()->set_granted_ttl_seconds(10);
  t.mutable_lease_time_to_live()->add_keys("a");
  t.mutable_lease_time_to_live()->add_keys("b");
  auto info = detail::decode_lease_time_to_live(t);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->granted_ttl_seconds, 10);
  EXPECT_EQ(info->keys, (std::vector<std::string>{"a", "b"}));
  pb::Response v;
  v.mutable_header()->set_revision(8);
  v.mutable_lease_revoke()->set_deleted(2);
  auto rv = detail::decode_lease_revoke(v);
  ASSERT_TRUE(rv.ok());
  EXPECT_EQ(rv->deleted, 2u);
  EXPECT_EQ(rv->revision, 8u);
  pb::Response get;
  get.mutable_get()->mutable_kv()->set_key("k");
  get.mutable_get()->mutable_kv()->set_lease(5);
  EXPECT_EQ(detail::decode_get(get)->lease, 5u);
  pb::Response put;
  put.mutable_put()->set_lease(6);
  EXPECT_EQ(detail::decode_put(put)->lease, 6u);
}

TEST(Decode, MismatchedResultIsAProtocolError) {
  pb::Response r;
  r.mutable_put();
  EXPECT_EQ(detail::decode_get(r).code(), Code::kInternal);
}

TEST(Decode, TxnResults) {
  pb::Response r;
  r.mutable_header()->set_revision(9);
  auto* t = r.mutable_txn();
  t->set_succeeded(true);
  auto* g = t->add_results();
  g->set_code(pb::Status::NOT_FOUND);
  g->mutable_get();
  auto* s = t->add_results();
  s->mutable_scan()->set_count(3);
  s->mutable_scan()->add_kvs()->set_key("a");
  auto* d = t->add_results();
  d->mutable_del()->set_deleted(1);
  auto out = detail::decode_txn(r);
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(out->succeeded);
  EXPECT_EQ(out->revision, 9u);
  ASSERT_EQ(out->results.size(), 3u);
  EXPECT_FALSE(out->results[0].found);
  EXPECT_EQ(out->results[1].kind, TxnOp::Kind::kScan);
  EXPECT_EQ(out->results[1].count, 3u);
  EXPECT_EQ(out->results[1].kvs.at(0).key, "a");
  EXPECT_EQ(out->results[2].deleted, 1u);
}

TEST(Decode, StatsByFieldName) {
  pb::Response r;
  r.mutable_stats()->set_keys(5);
  r.mutable_stats()->set_commits(7);
  auto s = detail::decode_stats(r);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->get("keys"), 5u);
  EXPECT_EQ(s->get("commits"), 7u);
  EXPECT_EQ(s->get("revision"), 0u);  // zero-valued counters are listed too
  // Every number and flag is listed; text fields only when set.
  std::size_t numbers = 0;
  const auto* d = pb::StatsResponse::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    numbers += d->field(i)->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_STRING;
  }
  EXPECT_EQ(s->counters.size(), numbers);
  EXPECT_TRUE(s->texts.empty());
  r.mutable_stats()->set_storage_failed(true);
  r.mutable_stats()->set_storage_error("fsync failed");
  s = detail::decode_stats(r);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->get("storage_failed"), 1u);
  ASSERT_EQ(s->texts.size(), 1u);
  EXPECT_EQ(s->texts[0], std::make_pair(std::string("storage_error"), std::string("fsync failed")));
}

TEST(Decode, StorageFailedKeepsItsCode) {
  pb::Response r;
  r.mutable_status()->set_code(pb::Status::STORAGE_FAILED);
  r.mutable_status()->set_message("fsync of wal-1.log failed");
  auto s = detail::decode_put(r);
  EXPECT_EQ(s.code(), Code::kStorageFailed);
  EXPECT_EQ(s.status().to_string(), "STORAGE_FAILED: fsync of wal-1.log failed");
}

TEST(Address, Parsing) {
  auto a = detail::parse_address("localhost:7379");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "localhost");
  EXPECT_EQ(a->port, "7379");
  auto v6 = detail::parse_address("[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad : {"", "host", ":80", "host:", "host:65536", "host:8x", "[::1]80"}) {
    EXPECT_EQ(detail::parse_address(bad).code(), Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace kv::client

namespace kv::cli {
namespace {

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::string error;
  EXPECT_TRUE(tokenize(line, out, error)) << error;
  return out;
}

TEST(Tokenize, QuotesAndEscapes) {
  EXPECT_EQ(words("  put  k   v "), (std::vector<std::string>{"put", "k", "v"}));
  EXPECT_EQ(words("put k \"a value\""), (std::vector<std::string>{"put", "k", "a value"}));
  EXPECT_EQ(words("put k 'it''s'"), (std::vector<std::string>{"put", "k", "its"}));
  EXPECT_EQ(words(R"(put "k \"q\"" "a\tb\x41")"),
            (std::vector<std::string>{"put", "k \"q\"", "a\tbA"}));
  EXPECT_EQ(words(R"(put a\ b '')"), (std::vector<std::string>{"put", "a b", ""}));
  EXPECT_TRUE(words("").empty());

  std::vector<std::string> out;
  std::string error;
  EXPECT_FALSE(tokenize("put k \"open", out, error));
  EXPECT_FALSE(tokenize("put k 'open", out, error));
  EXPECT_FALSE(tokenize("put k \\", out, error));
  EXPECT_FALSE(tokenize(R"(put k "\x4")", out, error));
}

TEST(ShellCommand, ParsesEveryCommand) {
  Command c;
  std::string error;
  ASSERT_TRUE(parse_shell_command(words("put k 'v w'"), c, error)) << error;
  EXPECT_EQ(c.kind, Command::Kind::kPut);
  EXPECT_EQ(c.value, "v w");
  ASSERT_TRUE(parse_shell_command(words("range a z --limit 3"), c, error));
  EXPECT_EQ(c.kind, Command::Kind::kRange);
  EXPECT_EQ(c.key, "a");
  EXPECT_EQ(c.value, "z");
  EXPECT_EQ(c.limit, 3u);
  ASSERT_TRUE(parse_shell_command(words("range user/ --prefix"), c, error));
  EXPECT_TRUE(c.prefix);
  ASSERT_TRUE(parse_shell_command(words("begin snapshot"), c, error));
  EXPECT_EQ(c.kind, Command::Kind::kBegin);
  EXPECT_EQ(c.isolation, client::Isolation::kSnapshot);
  ASSERT_TRUE(parse_shell_command(words("begin"), c, error));
  EXPECT_EQ(c.isolation, client::Isolation::kSerializable);
  for (const char* ok : {"get k", "del k", "commit", "abort", "stats", "ping", "help", "quit"}) {
    EXPECT_TRUE(parse_shell_command(words(ok), c, error)) << ok << ": " << error;
  }
  for (const char* bad : {"get", "get a b", "put k", "range", "range a b --prefix",
                          "range a --limit x", "begin repeatable", "commit now", "frobnicate"}) {
    EXPECT_FALSE(parse_shell_command(words(bad), c, error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TEST(ShellCommand, DurabilityCommands) {
  Command c;
  std::string error;
  ASSERT_TRUE(parse_shell_command(words("checkpoint"), c, error)) << error;
  EXPECT_EQ(c.kind, Command::Kind::kCheckpoint);
  ASSERT_TRUE(parse_shell_command(words("snapshot save '/tmp/a b.kvs'"), c, error)) << error;
  EXPECT_EQ(c.kind, Command::Kind::kSnapshotSave);
  EXPECT_EQ(c.key, "/tmp/a b.kvs");
  for (const char* bad :
       {"checkpoint now", "snapshot", "snapshot save", "snapshot load f", "snapshot save a b"}) {
    EXPECT_FALSE(parse_shell_command(words(bad), c, error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

ParseOutcome parse(const std::vector<std::string>& args);

TEST(CommandLine, DurabilityCommands) {
  auto p = parse({"checkpoint"});
  ASSERT_FALSE(p.exit) << p.output;
  EXPECT_EQ(p.options.command.kind, Command::Kind::kCheckpoint);
  p = parse({"snapshot", "save", "backup.kvs"});
  ASSERT_FALSE(p.exit) << p.output;
  EXPECT_EQ(p.options.command.kind, Command::Kind::kSnapshotSave);
  EXPECT_EQ(p.options.command.key, "backup.kvs");
  EXPECT_TRUE(parse({"snapshot", "save"}).exit);
  EXPECT_TRUE(parse({"snapshot"}).exit);
}

ParseOutcome parse(const std::vector<std::string>& args) {
  std::vector<std::string> all{"kovan-cli"};
  for (const auto& a : args) all.push_back(a);
  std::vector<const char*> argv;
  for (const auto& a : all) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST(CommandLine, OneShotCommandsAndOptions) {
  auto p = parse({"--addr", "10.0.0.1:9", "--json", "put", "k", "v"});
  ASSERT_FALSE(p.exit) << p.output;
  EXPECT_EQ(p.options.addr, "10.0.0.1:9");
  EXPECT_TRUE(p.options.json);
  EXPECT_EQ(p.options.command.kind, Command::Kind::kPut);
  EXPECT_EQ(p.options.command.value, "v");

  auto r = parse({"range", "a", "--limit", "5", "--prefix"});
  ASSERT_FALSE(r.exit) << r.output;
  EXPECT_EQ(r.options.command.kind, Command::Kind::kRange);
  EXPECT_EQ(r.options.command.limit, 5u);
  EXPECT_TRUE(r.options.command.prefix);
  EXPECT_EQ(r.options.addr, "127.0.0.1:7379");

  auto shell = parse({});
  EXPECT_FALSE(shell.exit);
  EXPECT_EQ(shell.options.command.kind, Command::Kind::kNone);
}

TEST(CommandLine, UsageErrorsExitWithTwo) {
  for (const auto& args : std::vector<std::vector<std::string>>{{"get"},
                                                                {"put", "k"},
                                                                {"bogus"},
                                                                {"get", "a", "b"},
                                                                {"--nope"},
                                                                {"range", "a", "b", "--prefix"},
                                                                {"range", "a", "--limit", "x"}}) {
    auto p = parse(args);
    EXPECT_TRUE(p.exit);
    EXPECT_EQ(p.code, kExitUsage) << p.output;
  }
  auto help = parse({"--help"});
  EXPECT_TRUE(help.exit);
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_NE(help.output.find("range"), std::string::npos);
}

TEST(CommandLine, LimitMustBeAnUnsigned64BitNumber) {
  for (const char* bad : {"-1", "18446744073709551616", "184467440737095516150", "+5", " 5", "5x",
                          "1e3", "0x10", ""}) {
    auto p = parse({"range", "a", "--limit", bad});
    EXPECT_TRUE(p.exit) << bad;
    EXPECT_EQ(p.code, kExitUsage) << bad << ": " << p.output;
    Command c;
    std::string error;
    EXPECT_FALSE(parse_shell_command({"range", "a", "--limit", bad}, c, error)) << bad;
    EXPECT_FALSE(parse_shell_command({"range", "a", std::string("--limit=") + bad}, c, error))
        << bad;
  }
  auto max = parse({"range", "a", "--limit", "18446744073709551615"});
  ASSERT_FALSE(max.exit) << max.output;
  EXPECT_EQ(max.options.command.limit, UINT64_MAX);
  Command c;
  std::string error;
  ASSERT_TRUE(parse_shell_command({"range", "a", "--limit", "18446744073709551615"}, c, error))
      << error;
  EXPECT_EQ(c.limit, UINT64_MAX);
  for (const char* bad : {"-1", "4294967296", "x"}) {
    auto p = parse({"--timeout", bad, "ping"});
    EXPECT_TRUE(p.exit) << bad;
    EXPECT_EQ(p.code, kExitUsage) << bad;
  }
}

TEST(Escape, ControlBytesTabNewlineBackslashAndInvalidUtf8) {
  EXPECT_EQ(escape_bytes("plain text/ok~"), "plain text/ok~");
  EXPECT_EQ(escape_bytes("\x1b]0;t\x07"), "\\x1b]0;t\\x07");
  EXPECT_EQ(escape_bytes("a\tb\nc\rd\\e"), "a\\tb\\nc\\rd\\\\e");
  EXPECT_EQ(escape_bytes(std::string_view("\0\x7f", 2)), "\\x00\\x7f");
  EXPECT_EQ(escape_bytes("h\xc3\xa9 \xe2\x82\xac"), "h\xc3\xa9 \xe2\x82\xac");  // UTF-8 text
  EXPECT_EQ(escape_bytes("\xc2\x9b"), "\\xc2\\x9b");                            // C1 control
  EXPECT_EQ(escape_bytes("\xff\xc3"), "\\xff\\xc3");  // not UTF-8, truncated sequence
  EXPECT_EQ(escape_bytes("a\xc2"), "a\\xc2");         // a sequence cut off by the end
  EXPECT_EQ(escape_bytes("\xc0\xaf"), "\\xc0\\xaf");  // overlong
  // The escaped form read back through the shell's double quotes gives the bytes again.
  const std::string original("\x1b[2J\t\n\\\xff\xc3\xa9\x01z");
  std::vector<std::string> back;
  std::string error;
  std::string quoted(1, '"');
  quoted.append(escape_bytes(original)).push_back('"');
  ASSERT_TRUE(tokenize(quoted, back, error)) << error;
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], original);
}

TEST(Json, Strings) {
  std::string out;
  ASSERT_TRUE(json_string("a\"b\\c\n\x01", out));
  EXPECT_EQ(out, R"("a\"b\\c\n\u0001")");
  ASSERT_TRUE(json_string("h\xc3\xa9", out));  // UTF-8 passes through
  EXPECT_EQ(out, "\"h\xc3\xa9\"");
  EXPECT_FALSE(json_string("\xff", out));
  EXPECT_FALSE(json_string("\xc3", out));      // truncated sequence
  EXPECT_FALSE(json_string("\xc0\xaf", out));  // overlong
}

TEST(CommandLine, WatchAndLeaseCommands) {
  auto w = parse({"watch", "cfg/", "--rev", "12", "--prev-kv", "--json"});
  ASSERT_FALSE(w.exit) << w.output;
  EXPECT_EQ(w.options.command.kind, Command::Kind::kWatch);
  EXPECT_EQ(w.options.command.key, "cfg/");
  EXPECT_EQ(w.options.command.revision, 12u);
  EXPECT_TRUE(w.options.command.prev_kv);
  EXPECT_TRUE(w.options.json);  // a global option after the watch's own

  auto g = parse({"lease", "grant", "10"});
  ASSERT_FALSE(g.exit) << g.output;
  EXPECT_EQ(g.options.command.kind, Command::Kind::kLeaseGrant);
  EXPECT_EQ(g.options.command.ttl, 10);
  auto k = parse({"lease", "keepalive", "7", "--once"});
  ASSERT_FALSE(k.exit) << k.output;
  EXPECT_EQ(k.options.command.kind, Command::Kind::kLeaseKeepAlive);
  EXPECT_EQ(k.options.command.lease, 7u);
  EXPECT_TRUE(k.options.command.once);
  auto r = parse({"lease", "revoke", "18446744073709551615"});
  ASSERT_FALSE(r.exit) << r.output;
  EXPECT_EQ(r.options.command.lease, 18446744073709551615ull);
  auto t = parse({"lease", "ttl", "3", "--keys"});
  ASSERT_FALSE(t.exit) << t.output;
  EXPECT_EQ(t.options.command.kind, Command::Kind::kLeaseTtl);
  EXPECT_TRUE(t.options.command.keys);
  auto pl = parse({"put", "k", "v", "--lease", "9"});
  ASSERT_FALSE(pl.exit) << pl.output;
  EXPECT_EQ(pl.options.command.lease, 9u);
  auto pt = parse({"put", "k", "v", "--ttl", "30"});
  ASSERT_FALSE(pt.exit) << pt.output;
  EXPECT_EQ(pt.options.command.ttl, 30);

  for (const std::vector<std::string>& bad : {std::vector<std::string>{"watch"},
                                              {"watch", "p", "--rev", "-1"},
                                              {"lease", "grant", "0"},
                                              {"lease", "grant", "-5"},
                                              {"lease", "revoke", "0"},
                                              {"lease", "keepalive"},
                                              {"lease"},
                                              {"lease", "frob", "1"},
                                              {"put", "k", "v", "--lease", "1", "--ttl", "2"},
                                              {"put", "k", "v", "--ttl", "x"}}) {
    auto p = parse(bad);
    EXPECT_TRUE(p.exit) << bad[0];
    EXPECT_EQ(p.code, kExitUsage) << bad[0];
  }
}

TEST(ShellCommand, LeaseCommandsAndPutWithLease) {
  Command c;
  std::string error;
  ASSERT_TRUE(parse_shell_command(words("put k v --lease 4"), c, error)) << error;
  EXPECT_EQ(c.kind, Command::Kind::kPut);
  EXPECT_EQ(c.lease, 4u);
  EXPECT_EQ(c.value, "v");
  ASSERT_TRUE(parse_shell_command(words("put k v --ttl 2"), c, error)) << error;
  EXPECT_EQ(c.ttl, 2);
  ASSERT_TRUE(parse_shell_command(words("lease grant 5"), c, error)) << error;
  EXPECT_EQ(c.kind, Command::Kind::kLeaseGrant);
  ASSERT_TRUE(parse_shell_command(words("lease keepalive 5 --once"), c, error)) << error;
  EXPECT_TRUE(c.once);
  ASSERT_TRUE(parse_shell_command(words("lease ttl 5 --keys"), c, error)) << error;
  EXPECT_TRUE(c.keys);
  for (const char* bad :
       {"put k v --lease", "put k v --lease 0", "put k v --ttl 1 --lease 2", "lease", "lease grant",
        "lease keepalive 5", "lease revoke x", "watch p"}) {
    EXPECT_FALSE(parse_shell_command(words(bad), c, error)) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TEST(Json, WatchEvents) {
  client::WatchEvent put;
  put.type = client::WatchEvent::Type::kPut;
  put.kv = client::KeyValue{"k", "v\n", 3, 5, 2, 9};
  put.prev = client::KeyValue{"k", "old", 3, 4, 1, 0};
  EXPECT_EQ(json_watch_event(put, 5),
            "{\"type\":\"put\",\"key\":\"k\",\"value\":\"v\\n\",\"revision\":5,\"mod_revision\":5,"
            "\"create_revision\":3,\"version\":2,\"lease\":9,\"prev_kv\":{\"key\":\"k\","
            "\"value\":\"old\",\"create_revision\":3,\"mod_revision\":4,\"version\":1}}");
  client::WatchEvent del;
  del.type = client::WatchEvent::Type::kDelete;
  del.kv.key = std::string("\xff\x01", 2);
  del.kv.mod_revision = 6;
  EXPECT_EQ(json_watch_event(del, 6),
            "{\"type\":\"delete\",\"key_base64\":\"/wE=\",\"value\":\"\",\"revision\":6,"
            "\"mod_revision\":6,\"create_revision\":0,\"version\":0,\"lease\":0}");
  EXPECT_EQ(plain_watch_event(put, 5, false), "5\tPUT\tk\tv\\n\tprev=old");
  EXPECT_EQ(plain_watch_event(del, 6, false), "6\tDELETE\t\\xff\\x01");
}

}  // namespace
}  // namespace kv::cli
