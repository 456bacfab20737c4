#!/bin/sh
# Load figures for docs/performance.md: builds `punktfunk`
# and the load generator (bench/loadgen, not a workspace member, its own
# target dir) in release mode, then runs one measurement pass against a
# real `punktfunk serve` and its same-run baselines and prints a markdown
# table. Needs `openssl` (s_server, s_time) on PATH. Not part of the tests.
#
#   bench/load.sh [--duration S] [--concurrency N] [--pairings N]
#                 [--devices N] [--startups N]
set -eu
cd "$(dirname "$0")/.."
cargo build --release --bin punktfunk
cargo build --release --manifest-path bench/loadgen/Cargo.toml
exec bench/loadgen/target/release/loadgen --punktfunk target/release/punktfunk "$@"
