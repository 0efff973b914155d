#!/usr/bin/env bash
# C# checks that run without the .NET SDK:
#  1. every .cs file under client/ parses with tree-sitter's C# grammar
#     (tests/csharp/parse_all.py; PyPI packages in tests/csharp/requirements.txt);
#  2. the portable wire codec (client/Protocol.cs) and its test program are
#     compiled with Debian's mono compiler (C# 7.2) and run on the golden vectors.
# Installs nothing: needs python3 with tree_sitter + tree_sitter_c_sharp, and
# `mcs` and `mono` (Debian package mono-devel). Non-zero exit on any failure;
# the last line is the codec tests' `N passed, N failed`.
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

python3 "$root/tests/csharp/parse_all.py" "$root/client"

# -langversion:7.2 keeps Protocol.cs honest about the C# level it promises;
# -warnaserror catches sloppiness mcs would otherwise only mention.
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -out:"$out/codec-tests.exe" \
    "$root/client/Protocol.cs" "$root/client/tests/CodecTests.cs"

mono "$out/codec-tests.exe" "$vectors"
