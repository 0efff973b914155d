#!/usr/bin/env bash
# C# checks that run without the .NET SDK:
#  1. every .cs file under client/ parses with tree-sitter's C# grammar
#     (tests/csharp/parse_all.py; PyPI packages in tests/csharp/requirements.txt);
#  2. the portable wire codec (client/Protocol.*.cs) and its test program are
#     compiled with Debian's mono compiler (C# 7.2) and run on the golden vectors;
#  3. the functional core and shell with fakes (tests/csharp/ServiceTests.cs, QualityTests.cs,
#     RegionTests.cs, MoveTests.cs, PathShellTests.cs: the vectors' `paths` cases through
#     the shell), and the
#     C# replay of docs/client-vectors.json against the pure core
#     (tests/csharp/ClientVectorsTests.cs: every section that names csharp);
#  4. the .NET-only adapters (client/Adapters/) against the declared surface of
#     SIPSorcery 10.0.16 and System.Net.Quic (tests/csharp/surface/check.sh);
#  5. the SignalR-shaped layer (tests/csharp/SignalRShapeTests.cs) and the SignalR-style
#     app (tests/csharp/signalr-app/, compiled here, run twice by live.sh).
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
python3 "$root/tests/csharp/parse_all.py" "$root/tests/csharp"

# -langversion:7.2 keeps the codec honest about the C# level it promises;
# -warnaserror catches sloppiness mcs would otherwise only mention.
mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -out:"$out/codec-tests.exe" \
    "$root"/client/Protocol.*.cs "$root/tests/csharp/TestKit.cs" "$root/tests/csharp/CodecTests.cs"
mono "$out/codec-tests.exe" "$vectors" | tee "$out/codec.out" | tail -n 1 >&2

# 3. The client's functional core and its shell, with fake transports, links and clock.
mapfile -t mono_src < <(cd "$root" && ls client/*.cs)
(cd "$root" && mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$out/service-tests.exe" "${mono_src[@]}" tests/csharp/TestKit.cs tests/csharp/ServiceTests.cs tests/csharp/QualityTests.cs tests/csharp/RegionTests.cs tests/csharp/MoveTests.cs tests/csharp/PathShellTests.cs)
mono "$out/service-tests.exe" "$root/docs/client-vectors.json" > "$out/service.out" || { cat "$out/service.out"; exit 1; }
grep -v '^ok' "$out/service.out" >&2 || true
(cd "$root" && mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$out/client-vectors-tests.exe" "${mono_src[@]}" tests/csharp/TestKit.cs tests/csharp/ClientVectorsTests.cs)
mono "$out/client-vectors-tests.exe" "$root/docs/client-vectors.json" > "$out/vectors.out" || { cat "$out/vectors.out"; exit 1; }
grep -v '^ok' "$out/vectors.out" >&2 || true

# 4. The .NET-only adapters, compiled by mono against the declared SIPSorcery/QUIC surface,
#    and the checks that this compile and the no-wholesale-using rule can fail.
bash "$root/tests/csharp/surface/check.sh" "$root" "$out" 2>"$out/surface.out" || { cat "$out/surface.out" >&2; exit 1; }
cat "$out/surface.out" >&2
surface_ok=$(grep -c '^ok' "$out/surface.out" || true)

# 5. The SignalR-shaped layer: HubSurface.cs is what its generator writes; its pure
#    decisions (URL rule, access token, retry policy, hub audiences, builder); the
#    SignalR-style app (tests/csharp/signalr-app/, run by live.sh) compiles, and its
#    client code and hub name nothing SignalR lacks (the check is shown to fail on a probe).
python3 "$root/tests/csharp/gen_hub_surface.py" --check
(cd "$root" && mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$out/signalr-shape-tests.exe" "${mono_src[@]}" tests/csharp/TestKit.cs tests/csharp/SignalRShapeTests.cs)
mono "$out/signalr-shape-tests.exe" > "$out/shape.out" || { cat "$out/shape.out"; exit 1; }
grep -v '^ok' "$out/shape.out" >&2 || true
(cd "$root" && mcs -nologo -langversion:7.2 -warnaserror -optimize+ \
    -r:System.dll -r:System.Core.dll -r:System.Runtime.Serialization.dll \
    -out:"$out/signalr-app.exe" "${mono_src[@]}" tests/csharp/TestKit.cs tests/csharp/signalr-app/*.cs)
python3 "$root/tests/csharp/signalr-app/check_swap.py"
sed 's/^\( *\)_connection.HandshakeTimeout = \(.*\)$/\1_connection.HandshakeTimeout = \2 _connection.MapHub<ChatHub>();/' \
    "$root/tests/csharp/signalr-app/ChatClient.cs" >"$out/SwapProbe.cs"
if python3 "$root/tests/csharp/signalr-app/check_swap.py" "$out/SwapProbe.cs" 2>/dev/null; then
    echo "FAIL check_swap.py passes a ChatClient that calls MapHub: it cannot catch a non-SignalR call" >&2
    exit 1
fi
echo "ok   signalr-app compiles (mono, C# 7.2); its client and hub name only SignalR's API (and the check sees a probe that does not)" >&2
swap_ok=1

# Line shares: mono builds all of it; the adapters against the declared surface.
count() { cat "$@" 2>/dev/null | grep -cv '^[[:space:]]*$' || true; }
core=$(cd "$root" && count client/*.cs)
tests=$(cd "$root" && count tests/csharp/*.cs)
adapters=$(cd "$root" && count client/Adapters/*.cs)
total=$((core + tests + adapters))
echo "C# lines (non-blank), all compiled by mono: core+shell $core, tests $tests, adapters $adapters (against the declared surface), of $total" >&2
c_line=$(tail -n 1 "$out/codec.out"); s_line=$(tail -n 1 "$out/service.out"); r_line=$(tail -n 1 "$out/shape.out")
v_line=$(tail -n 1 "$out/vectors.out")
p=$(( $(cut -d' ' -f1 <<<"$c_line") + $(cut -d' ' -f1 <<<"$s_line") + $(cut -d' ' -f1 <<<"$r_line") + $(cut -d' ' -f1 <<<"$v_line") + surface_ok + swap_ok ))
f=$(( $(cut -d' ' -f3 <<<"$c_line") + $(cut -d' ' -f3 <<<"$s_line") + $(cut -d' ' -f3 <<<"$r_line") + $(cut -d' ' -f3 <<<"$v_line") ))
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
