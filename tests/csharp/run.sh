#!/usr/bin/env bash
# Compile the portable C# wire codec (client/Protocol.cs) and its test program
# with Debian's mono compiler (C# 7.2), then run it on the golden vectors.
# Installs nothing: needs `mcs` and `mono` (Debian package mono-devel).
# Exit status is the test program's: non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
vectors="${1:-$root/docs/vectors.txt}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for tool in mcs mono; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tests/csharp/run.sh: '$tool' not found (apt-get install -y mono-devel)" >&2
        exit 2
    fi
done

# -langversion:7.2 keeps Protocol.cs honest about the C# level it promises;
# -warnaserror catches sloppiness mcs would otherwise only mention.
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -out:"$out/codec-tests.exe" \
    "$root/client/Protocol.cs" "$root/client/tests/CodecTests.cs"

mono "$out/codec-tests.exe" "$vectors"
