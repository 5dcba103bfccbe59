#!/bin/sh
# Fails if a C source or header under the repository includes a project
# header by bare name or through "..": every quoted include is a path from
# the repository root ("storage/storage.h"), so the staging include
# directories of the build decide what each folder may see.
set -eu
root=$1
bad=$(cd "$root" && find . -path ./build -prune -o -path './build-*' -prune -o \
	\( -name '*.c' -o -name '*.h' \) -print |
	xargs grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^/"]*|[^"]*\.\./[^"]*)"' || true)
if [ -n "$bad" ]; then
	echo "includes that do not name their folder from the repository root:"
	echo "$bad"
	exit 1
fi
echo "every quoted include names its folder from the repository root"
