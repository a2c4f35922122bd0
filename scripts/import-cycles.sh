#!/usr/bin/env bash
# Lists the crate's top-level modules (src/X.rs or src/X/) with the other top-level modules each
# names through `crate::...` (imports and paths alike, tests included; comments are skipped), then
# every pair that names each other. Exits 1 when there is such a pair. With a module as argument (e.g. `domain`), the
# same one level down: its child modules and their `crate::domain::child` / `super::child` paths
# (a child using its own parent's items, `super::ITEM`, is the tree, not a peer import).
# Usage: scripts/import-cycles.sh [MODULE]
set -euo pipefail
cd "$(dirname "$0")/../src"
parent="${1:-}"
base="."
prefix="crate::"
if [ -n "$parent" ]; then
    base="$parent"
    prefix="crate::$parent::"
fi
mods=$(find "$base" -mindepth 1 -maxdepth 1 \( -name '*.rs' -o -type d \) ! -name mod.rs ! -name lib.rs ! -name main.rs ! -name templates ! -name assets \
    | sed -E 's#^.*/##; s#\.rs$##' | sort -u)
declare -A uses
for m in $mods; do
    if [ -d "$base/$m" ]; then files=$(find "$base/$m" -name '*.rs'); else files="$base/$m.rs"; fi
    # shellcheck disable=SC2086
    named=$( { grep -hv '^\s*//' $files | grep -oE "${prefix}[a-z_]+" | sed "s#^${prefix}##"
               [ -n "$parent" ] && [ ! -d "$base/$m" ] && grep -hv '^\s*//' $files | grep -oE 'super::[a-z_]+' | sed 's#^super::##'
               true; } | sort -u | grep -vx "$m" | grep -xF "$mods" || true)
    uses[$m]=$(echo $named)
    printf '%-10s -> %s\n' "$m" "${uses[$m]}"
done
status=0
for a in $mods; do
    for b in ${uses[$a]}; do
        if [[ "$a" < "$b" ]] && [[ " ${uses[$b]} " == *" $a "* ]]; then
            echo "cycle: $a <-> $b"
            status=1
        fi
    done
done
[ $status -eq 0 ] && echo "no module imports a module that imports it back"
exit $status
