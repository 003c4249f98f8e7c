#!/usr/bin/env bash
# The whole test run: install what the tests need, then the style gates, then every test
# (unit, integration, property, doc tests, and the benches once each in test mode).
# This is what `.ci/run` calls; a newcomer runs it as is.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

# A clean CI checkout gains nothing from incremental artifacts (they doubled target/), and CI
# disks can be small: report the space so a shortage shows up before the build fails on it.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi
echo "== disk free where target/ is built"
df -h . | tail -1

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo doc --no-deps (warnings are errors: broken or private links)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked

echo "== cargo test (all targets)"
cargo test --all-targets --locked

echo "== cargo test --doc"
cargo test --doc --locked

echo "all tests passed"
