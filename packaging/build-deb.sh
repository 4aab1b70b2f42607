#!/usr/bin/env bash
# Builds target/debian/gpures_<version>_<arch>.deb: both binaries, the systemd
# units, sysusers and tmpfiles fragments, the example config (a conffile),
# man pages and shell completions. Needs cargo-deb (`cargo install cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Only the shipped crates: the dev-only testkit (hyper's server, the fake
# Google) must not unify its features into the binaries.
cargo build --release -p gpures-daemon -p gpures-tui
rm -rf target/assets
mkdir -p target/assets/man target/assets/completions
target/release/gpures-daemon man target/assets/man
target/release/gpures man target/assets/man
gzip -9n target/assets/man/*.1
target/release/gpures completions bash > target/assets/completions/gpures.bash
target/release/gpures completions zsh > target/assets/completions/_gpures
target/release/gpures completions fish > target/assets/completions/gpures.fish
target/release/gpures-daemon completions bash > target/assets/completions/gpures-daemon.bash
cargo deb -p gpures-daemon --no-build "$@"
ls -1 target/debian/*.deb
