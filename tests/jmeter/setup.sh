#!/usr/bin/env bash
# Makes Debian's JMeter 2.13 able to load test plans, in a private JMeter home, for the tests.
# (Debian 12 pairs it with XStream 1.4.20, whose allow-list refuses every JMeter class; see
# src/…/SaveService$XStreamWrapper.java. Production images carry JMeter 5.6 and need none of it.)
#
#   tests/jmeter/setup.sh DIR    → prints DIR/bin/jmeter-herd, the executable for HERD_JMETER
#
# Needs: apt-get install jmeter default-jdk-headless
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${1:?usage: setup.sh DIR}"
src=/usr/share/jmeter
[ -f "$src/bin/ApacheJMeter.jar" ] || { echo "JMeter not found in $src (apt-get install jmeter)" >&2; exit 1; }
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
# The dependency jars are listed in ApacheJMeter.jar's manifest Class-Path.
cp_jars=$(unzip -p "$src/bin/ApacheJMeter.jar" META-INF/MANIFEST.MF | tr -d '\r' \
  | awk '/^Class-Path:/{f=1; sub(/^Class-Path: /,""); printf "%s", $0; next} f && /^ /{sub(/^ /,""); printf "%s", $0; next} {f=0}' \
  | tr ' ' ':')
javac -nowarn -source 8 -target 8 -d "$build" \
  -cp "$cp_jars:$src/lib/ext/ApacheJMeter_core.jar:$src/lib/jorphan.jar" \
  "$here"/src/org/apache/jmeter/save/*.java "$here"/stub/org/apache/jmeter/save/*.java 2>/dev/null
rm -f "$build/org/apache/jmeter/save/SaveService\$1.class"   # the real one is JMeter's
rm -rf "$home"
mkdir -p "$home/bin" "$home/lib"
# JMeter takes its home from the real path of ApacheJMeter.jar: a real copy; the rest links.
cp "$src/bin/ApacheJMeter.jar" "$home/bin/"
for f in "$src"/bin/*; do [ "$(basename "$f")" = ApacheJMeter.jar ] || ln -s "$f" "$home/bin/"; done
for f in "$src"/lib/*; do ln -s "$f" "$home/lib/"; done
(cd "$build" && jar cf "$home/lib/herd-xstream-allow.jar" org)
cat > "$home/bin/jmeter-herd" <<'SH'
#!/bin/sh
H=$(cd "$(dirname "$0")/.." && pwd)
exec java -Djmeter.home="$H" -cp "$H/bin/ApacheJMeter.jar" org.apache.jmeter.NewDriver "$@"
SH
chmod +x "$home/bin/jmeter-herd"
echo "$home/bin/jmeter-herd"
