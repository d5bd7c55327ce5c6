#!/usr/bin/env bash
# Compress a disk image with xz, with a progress line every 30 s: xz draws its progress only on a
# terminal, and a build log is not one (sent SIGUSR1, it prints a line anywhere).
# Usage: compress.sh IMAGE.img OUTPUT.img.xz [XZ OPTION...]   (e.g. -T0 -6)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
. "${here}/lib.sh"

[ "$#" -ge 2 ] || die "usage: $0 IMAGE.img OUTPUT.img.xz [XZ OPTION...]"
image="$1" output="$2"
shift 2
# Between progress lines: a few per minute is enough to see that a slow compression still moves.
progress_s=30

need_tools xz
step "xz $* ${image}: $(du -h --apparent-size "${image}" | cut -f1), $(du -h "${image}" | cut -f1) of it data (a few minutes)"
# xz starts and ends its progress lines with carriage returns, which a log does not want; sed -u
# passes each line on at once (tr would hold them in its buffer until xz ends).
xz "$@" --verbose --stdout "${image}" >"${output}.tmp" 2> >(sed -u -e 's/\r//g' -e '/^ *$/d' >&2) &
pid=$!
# tail --pid returns when xz ends, so the loop does not wait out a period after the last one.
while ! timeout "${progress_s}" tail --pid="${pid}" -f /dev/null; do
    kill -USR1 "${pid}" 2>/dev/null || break
done
wait "${pid}" || die "xz failed on ${image}"
mv "${output}.tmp" "${output}"
step "${output}: $(du -h "${output}" | cut -f1)"
phase_took "compress (xz)"
