// Unit tests of the durability flags (--data-dir, --fsync, --checkpoint-every,
// --wal-recovery, --restore; docs/OPERATIONS.md, "Durability").
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "parse_args.hpp"
#include "server/config.hpp"

namespace kv::server {
namespace {

using namespace std::chrono_literals;

using test::parse;

TEST(DurableConfig, OffByDefault) {
  ParseOutcome o = parse({});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_FALSE(o.config.durable());
  EXPECT_TRUE(o.config.engine_options().durability.data_dir.empty());
  EXPECT_NE(o.config.describe().find("data-dir=off"), std::string::npos);
}

TEST(DurableConfig, DataDirDefaultsToFsyncAlwaysAndStrictRecovery) {
  ParseOutcome o = parse({"--data-dir", "/tmp/x"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_TRUE(o.config.durable());
  const storage::Options e = o.config.engine_options();
  EXPECT_EQ(e.durability.data_dir, "/tmp/x");
  EXPECT_EQ(e.durability.fsync, storage::FsyncMode::kAlways);
  EXPECT_EQ(e.durability.recovery, storage::WalRecovery::kStrict);
  EXPECT_EQ(e.durability.checkpoint_every_bytes, 0u);
  EXPECT_EQ(e.durability.checkpoint_every, 0ms);
  EXPECT_NE(o.config.describe().find("fsync=always"), std::string::npos);
}

TEST(DurableConfig, FlagsReachTheEngineOptions) {
  ParseOutcome o = parse({"--data-dir", "/tmp/x", "--fsync", "everysec", "--checkpoint-every",
                          "64MiB,10min", "--wal-recovery", "truncate", "--restore", "/tmp/s.kvs"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  const storage::Options e = o.config.engine_options();
  EXPECT_EQ(e.durability.fsync, storage::FsyncMode::kEverySec);
  EXPECT_EQ(e.durability.checkpoint_every_bytes, std::uint64_t{64} << 20);
  EXPECT_EQ(e.durability.checkpoint_every, 10min);
  EXPECT_EQ(e.durability.recovery, storage::WalRecovery::kTruncate);
  EXPECT_EQ(e.durability.restore_from, "/tmp/s.kvs");
  EXPECT_EQ(parse({"--data-dir", "d", "--fsync", "no"}).config.fsync, storage::FsyncMode::kNo);
}

TEST(DurableConfig, CheckpointEveryAcceptsSizesDurationsAndBoth) {
  std::uint64_t bytes = 0;
  std::chrono::milliseconds every{0};
  ASSERT_TRUE(parse_checkpoint_every("64MiB", bytes, every));
  EXPECT_EQ(bytes, 64u << 20);
  EXPECT_EQ(every, 0ms);
  ASSERT_TRUE(parse_checkpoint_every("1g", bytes, every));
  EXPECT_EQ(bytes, 1u << 30);
  ASSERT_TRUE(parse_checkpoint_every("100000", bytes, every));  // a bare number is bytes
  EXPECT_EQ(bytes, 100000u);
  ASSERT_TRUE(parse_checkpoint_every("30s", bytes, every));
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(every, 30s);
  ASSERT_TRUE(parse_checkpoint_every("10m", bytes, every));  // m is minutes; MB/MiB megabytes
  EXPECT_EQ(every, 10min);
  ASSERT_TRUE(parse_checkpoint_every("5min, 256MB", bytes, every));
  EXPECT_EQ(bytes, 256u << 20);
  EXPECT_EQ(every, 5min);
  ASSERT_TRUE(parse_checkpoint_every("off", bytes, every));
  EXPECT_EQ(bytes, 0u);
  EXPECT_EQ(every, 0ms);
  for (const char* bad :
       {"", "soon", "64MiB,", ",5s", "1MiB,2MiB", "5s,6s", "0s", "-1", "64XB", "99999999999TiB"}) {
    EXPECT_FALSE(parse_checkpoint_every(bad, bytes, every)) << bad;
  }
}

TEST(DurableConfig, BadValuesAndFlagsWithoutDataDirAreRefused) {
  for (auto args :
       std::vector<std::vector<const char*>>{{"--data-dir", "d", "--fsync", "sometimes"},
                                             {"--data-dir", "d", "--wal-recovery", "lenient"},
                                             {"--data-dir", "d", "--checkpoint-every", "often"},
                                             {"--fsync", "always"},
                                             {"--checkpoint-every", "64MiB"},
                                             {"--wal-recovery", "truncate"},
                                             {"--restore", "/tmp/s.kvs"},
                                             {"--test-storage-faults"}}) {
    ParseOutcome bad = parse(args);
    EXPECT_EQ(bad.action, ParseOutcome::Action::kExit) << args[0] << " " << args.back();
    EXPECT_EQ(bad.exit_code, 2) << args[0];
    EXPECT_NE(bad.output.find("kovan-server: "), std::string::npos) << bad.output;
  }
  EXPECT_NE(parse({"--restore", "f"}).output.find("needs --data-dir"), std::string::npos);
}

TEST(DurableConfig, ConfigFileKeys) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("kovan-durable-config-" + std::to_string(::getpid()));
  {
    std::ofstream out(path);
    out << "data-dir = \"/var/lib/kovan\"\nfsync = \"everysec\"\ncheckpoint-every = \"128MiB\"\n"
           "wal-recovery = \"truncate\"\n";
  }
  ParseOutcome o = parse({"--config", path.c_str()});
  std::filesystem::remove(path);
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  EXPECT_EQ(o.config.data_dir, "/var/lib/kovan");
  EXPECT_EQ(o.config.fsync, storage::FsyncMode::kEverySec);
  EXPECT_EQ(o.config.checkpoint_every_bytes, 128u << 20);
  EXPECT_EQ(o.config.wal_recovery, storage::WalRecovery::kTruncate);
}

TEST(DurableConfig, TestFlagIsHiddenFromHelp) {
  ParseOutcome o = parse({"--help"});
  EXPECT_NE(o.output.find("--data-dir"), std::string::npos);
  EXPECT_NE(o.output.find("--fsync"), std::string::npos);
  EXPECT_EQ(o.output.find("--test-storage-faults"), std::string::npos);
}

}  // namespace
}  // namespace kv::server
