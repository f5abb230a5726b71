#!/usr/bin/env bash
# Rewrites the help screens pinned in Fixtures/help/ and the man page docs/nvfp4.1 from the tool
# (after a change to the option table or a command's spec); review the diff before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
NVFP4_UPDATE_GOLDENS=1 swift test --filter CLIHelpTests
